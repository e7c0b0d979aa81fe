"""The contrastive objective (`objective: contrastive`, the default): TARA's text-only fine-tune of the LLM.

Each micro-step is ONE forward of [anchors; positives; negatives] (3 x micro_batch sentences, truncated to
`train.max_tokens`, wrapped in the text EOL prompt, left-padded), pooled at the last position like inference, and the
one-directional InfoNCE of `loss.info_nce` over the batch gathered across workers. Only the LLM is loaded
(`model.load_text_model`): the vision tower cannot change, and the driver merges the trained LLM back.
"""

from __future__ import annotations

from pathlib import Path

from tara_batch.models.profile import ModelProfile
from tara_batch.train.data import Triplets
from tara_batch.train.dist import sharded_validation

LLM_WEIGHTS = "llm.safetensors"  # the trained LLM inside a Ray Train checkpoint (what the driver merges)


def forward_triplets(model, tokenizer, profile, rows: Triplets, max_tokens: int, device, autocast_bf16: bool):
    """ONE forward of [anchors; positives; negatives] -> three [n, dim] pooled tensors, and the real-token count."""
    import torch

    from tara_batch.train.model import pool, tokenize

    n = len(rows)
    batch = tokenize(tokenizer, profile, rows.anchor + rows.positive + rows.negative, max_tokens)
    ids, mask = batch["input_ids"].to(device), batch["attention_mask"].to(device)
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=autocast_bf16):
        h = pool(model, ids, mask)  # [3n, dim]
    return h[:n], h[n:2 * n], h[2 * n:], int(mask.sum())


def evaluate(model, tokenizer, profile, val: Triplets, source_names: list[str], *, rank: int, world: int,
             batch_size: int, max_tokens: int, device, autocast_bf16: bool) -> dict[str, dict[str, float]]:
    """Held-out triplet accuracy (cos(a,p) > cos(a,n)) and mean margin per source, over all ranks' shards.

    Every rank runs the same number of forwards (FSDP needs all ranks in each forward); short shards repeat a row
    whose result is discarded.
    """
    from tara_batch.train.loss import triplet_scores

    def score(sub: Triplets):
        a, p, n, _ = forward_triplets(model, tokenizer, profile, sub, max_tokens, device, autocast_bf16)
        return triplet_scores(a, p, n)

    return sharded_validation(model, val, source_names, rank=rank, world=world, batch_size=batch_size, score=score,
                              metrics=("accuracy", "margin"))


class ContrastiveObjective:
    name = "contrastive"
    weights_file = LLM_WEIGHTS

    def __init__(self, model_dir: str | Path, profile: ModelProfile, max_tokens: int, tau: float) -> None:
        from tara_batch.train.model import load_tokenizer

        self.model_dir = Path(model_dir)
        self.profile = profile
        self.max_tokens = max_tokens
        self.tau = tau
        self.tokenizer = load_tokenizer(model_dir)

    def load(self, dtype, device, gradient_checkpointing: bool):
        import torch

        from tara_batch.train.model import load_text_model

        # Read in the checkpoint's dtype (bf16 for 7B: ~15 GB of host RAM per worker, not 30), then float32 master
        # weights directly on the worker's device.
        model = load_text_model(self.model_dir, dtype=dtype, device="cpu",
                                gradient_checkpointing=gradient_checkpointing)
        return model.to(device=device, dtype=torch.float32)

    @staticmethod
    def fsdp_layers(model):
        return list(model.layers)

    def micro_step(self, model, rows: Triplets, device, autocast_bf16: bool):
        from tara_batch.train.loss import info_nce

        a, p, n, ntok = forward_triplets(model, self.tokenizer, self.profile, rows, self.max_tokens, device,
                                         autocast_bf16)
        return info_nce(a, p, n, tau=self.tau), ntok

    def evaluate(self, model, val: Triplets, source_names: list[str], *, rank: int, world: int, batch_size: int,
                 device, autocast_bf16: bool) -> dict[str, dict[str, float]]:
        return evaluate(model, self.tokenizer, self.profile, val, source_names, rank=rank, world=world,
                        batch_size=batch_size, max_tokens=self.max_tokens, device=device, autocast_bf16=autocast_bf16)
