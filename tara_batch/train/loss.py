"""TARA's contrastive loss: one-directional InfoNCE, anchor -> [all positives ; all hard negatives] of the batch.

    L = -1/N sum_i log( exp(s(a_i, p_i)/tau) / sum_j ( exp(s(a_i, p_j)/tau) + exp(s(a_i, n_j)/tau) ) )

with s = cosine similarity, tau = 0.05 and j running over the *all-gathered* batch of every rank
(tara-method.md section 4). The loss owns the cross-rank gather, as in open_clip.

Gradients through the gather. The gather is differentiable (`_GatherWithGrad`): its backward sums, into each rank's
local shard, the gradient that *every* rank's loss sends to that shard. Each rank's loss is the mean
over its own anchors (N_local); DDP and FSDP then average parameter gradients over the W ranks. Together:

    grad_r = sum_r' dL_r'/de_r            (gather backward: all ranks' losses -> my shard)
    DDP    = 1/W sum_r sum_r' dL_r'/dθ|e_r = d/dθ [ 1/W sum_r' L_r' ] = d/dθ [ 1/(W N_local) sum_i l_i ]

which is exactly the gradient of the single-process loss on the concatenated batch (equal shard sizes, which the
data sharding guarantees). tests/unit/train/test_loss.py checks this with 2 gloo processes to 1e-6.
No extra scaling is needed; scaling by W would be needed only with a non-differentiable gather that re-inserts the
local shard and computes the loss over *all* anchors on every rank (open_clip's `local_loss=False`).

With world size 1 or no process group, nothing is gathered (no torch.distributed needed).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _distributed() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient w.r.t. the gathered tensor and keeps this rank's slice.

    (torch.distributed.nn.functional.all_gather does the same but is deprecated in torch 2.14; an all_reduce of a
    [W*n, d] embedding gradient costs a few MB even at the paper's pool of 256 x 3584.)
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        grad = grad.contiguous().clone()
        dist.all_reduce(grad)  # sum over ranks: every rank's loss depends on every shard
        return grad[ctx.rank * ctx.n:(ctx.rank + 1) * ctx.n]


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `x` [n, d] from every rank in rank order -> [W*n, d]; differentiable. Identity without a group."""
    if not _distributed():
        return x
    return _GatherWithGrad.apply(x)


def local_offset(n_local: int) -> int:
    """Global index of this rank's first row in the gathered batch (shards have equal size)."""
    if not _distributed():
        return 0
    import torch.distributed as dist

    return dist.get_rank() * n_local


def info_nce(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor, tau: float = 0.05,
             gather: bool = True) -> torch.Tensor:
    """Mean InfoNCE over this rank's anchors against the gathered [positives ; negatives] pool.

    anchors, positives, negatives: [n_local, d] embeddings of this rank's triplets (row i of each is one triplet),
    any scale: they are L2-normalised here (in float32, or float64 if given) so similarities are cosines.
    Returns a scalar; its gradient, averaged over ranks by DDP/FSDP, equals the single-process gradient.
    """
    if not (anchors.shape == positives.shape == negatives.shape) or anchors.ndim != 2:
        raise ValueError(f"expected three [n, d] tensors of one shape, got {tuple(anchors.shape)}, "
                         f"{tuple(positives.shape)}, {tuple(negatives.shape)}")
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    a = F.normalize(_at_least_f32(anchors), dim=-1)  # [n, d]
    p = F.normalize(_at_least_f32(positives), dim=-1)
    n = F.normalize(_at_least_f32(negatives), dim=-1)
    if gather:
        p_all, n_all = gather_with_grad(p), gather_with_grad(n)  # [W*n, d] each
        offset = local_offset(a.shape[0])
    else:
        p_all, n_all, offset = p, n, 0
    pool = torch.cat([p_all, n_all], dim=0)  # [2*W*n, d]: all positives first, then all hard negatives
    logits = a @ pool.T / tau  # [n, 2*W*n]
    labels = torch.arange(a.shape[0], device=a.device) + offset  # global index of each anchor's own positive
    return F.cross_entropy(logits, labels)


def _at_least_f32(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()  # bf16 activations -> float32 similarities


def triplet_scores(anchors: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor):
    """Per-triplet (correct, margin): anchor closer to its positive than to its hard negative, cos(a,p) - cos(a,n)."""
    a = F.normalize(anchors.float(), dim=-1)
    sp = (a * F.normalize(positives.float(), dim=-1)).sum(-1)
    sn = (a * F.normalize(negatives.float(), dim=-1)).sum(-1)
    return sp > sn, sp - sn
