"""Training building blocks without Ray: the InfoNCE formula, its gradients across 2 gloo processes (DDP and FSDP2),
training-side pooling == inference pooling, truncation before wrapping, merge_back, data order, shipped configs."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from tara_batch.models.profile import get_profile
from tara_batch.train.data import Schedule
from tara_batch.train.loss import info_nce

ROOT = Path(__file__).resolve().parents[3]


def _numpy_info_nce(a: np.ndarray, p: np.ndarray, n: np.ndarray, tau: float) -> float:
    """tara-method.md section 4, written out: -1/N sum_i log(exp(s_ii/tau) / sum_j (exp(s(a_i,p_j)/tau) + exp(s(a_i,n_j)/tau)))."""
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    a, p, n = unit(a), unit(p), unit(n)
    total = 0.0
    for i in range(len(a)):
        num = np.exp(a[i] @ p[i] / tau)
        den = sum(np.exp(a[i] @ p[j] / tau) + np.exp(a[i] @ n[j] / tau) for j in range(len(a)))
        total += -np.log(num / den)
    return total / len(a)


def _batch(n=8, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=g, dtype=torch.float64) for _ in range(3)]


@pytest.mark.parametrize("tau", [0.05, 0.5])
def test_info_nce_matches_the_formula(tau):
    a, p, n = _batch()
    got = info_nce(a, p, n, tau=tau).item()
    want = _numpy_info_nce(a.numpy(), p.numpy(), n.numpy(), tau)
    assert abs(got - want) < 1e-10
    # float32 inputs (what bf16/fp32 models give after .float()) agree to float32 precision
    got32 = info_nce(a.float(), p.float(), n.float(), tau=tau).item()
    assert abs(got32 - want) < 1e-4 * max(1.0, abs(want))


def test_info_nce_rewards_positive_over_hard_negative():
    a = _batch(d=64)[0]
    noise = _batch(d=64, seed=1)[0] * 0.01
    good = info_nce(a, a + noise, -a, tau=0.05).item()  # positives ~ anchors, negatives opposite
    bad = info_nce(a, -a, a + noise, tau=0.05).item()  # swapped
    assert good < 0.01 < 10 < bad


# --------------------------------------------------------------------------------------------------------------------
# 2 processes, gloo: loss and gradients equal the single-process computation on the concatenated batch
# --------------------------------------------------------------------------------------------------------------------

WORLD, N_LOCAL, D_IN, D = 2, 4, 6, 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _global_inputs():
    g = torch.Generator().manual_seed(7)
    x = [torch.randn(WORLD * N_LOCAL * 2, D_IN, generator=g, dtype=torch.float64) for _ in range(3)]  # 2 micro-steps
    torch.manual_seed(3)
    layer = torch.nn.Linear(D_IN, D).double()
    return x, layer.state_dict()


def _worker(rank: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist

    from tara_batch.train.worker import no_sync

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        (xa, xp, xn), state = _global_inputs()
        micro = [slice(m * WORLD * N_LOCAL + rank * N_LOCAL, m * WORLD * N_LOCAL + (rank + 1) * N_LOCAL)
                 for m in range(2)]
        result = {}
        # (1) raw embeddings: loss and d loss / d local embeddings
        a, p, n = (x[micro[0]].clone().requires_grad_(True) for x in (xa, xp, xn))
        loss = info_nce(a, p, n, tau=0.05)
        loss.backward()
        result["loss"] = loss.detach()
        result["grads"] = [t.grad for t in (a, p, n)]
        # (2) a linear layer under DDP and under FSDP2, 2 accumulation micro-steps (no gradient sync on the first)
        from torch.distributed.fsdp import fully_shard
        from torch.nn.parallel import DistributedDataParallel

        for kind in ("ddp", "fsdp"):
            layer = torch.nn.Linear(D_IN, D).double()
            layer.load_state_dict(state)
            model = DistributedDataParallel(layer) if kind == "ddp" else fully_shard(layer)
            for m, sl in enumerate(micro):
                with no_sync(model, enabled=m == 0):
                    h = model(torch.cat([xa[sl], xp[sl], xn[sl]]))
                    (info_nce(h[:N_LOCAL], h[N_LOCAL:2 * N_LOCAL], h[2 * N_LOCAL:], tau=0.05) / 2).backward()
            grads = {k: (v.grad.full_tensor() if hasattr(v.grad, "full_tensor") else v.grad).clone()
                     for k, v in model.named_parameters()}
            result[kind] = {k.removeprefix("module."): g for k, g in grads.items()}
        torch.save(result, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_process_gradients_equal_single_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]
    (xa, xp, xn), state = _global_inputs()

    # single process, concatenated batch of the first micro-step (both ranks' shards in rank order)
    first = slice(0, WORLD * N_LOCAL)
    a, p, n = (x[first].clone().requires_grad_(True) for x in (xa, xp, xn))
    loss = info_nce(a, p, n, tau=0.05)
    loss.backward()
    # the global loss is the mean of the per-rank losses (equal shards)
    assert abs(loss.item() - float(sum(r["loss"] for r in ranks) / WORLD)) < 1e-12
    # gather backward gives each rank sum_r' dL_r'/de_r = W x the single-process gradient; DDP's averaging
    # over W ranks then makes parameter gradients exact (checked next)
    for r, res in enumerate(ranks):
        rows = slice(r * N_LOCAL, (r + 1) * N_LOCAL)
        for got, ref in zip(res["grads"], (a.grad, p.grad, n.grad), strict=True):
            torch.testing.assert_close(got / WORLD, ref[rows], atol=1e-6, rtol=0)

    # single process linear layer, same two micro-steps accumulated
    layer = torch.nn.Linear(D_IN, D).double()
    layer.load_state_dict(state)
    for m in range(2):
        sl = slice(m * WORLD * N_LOCAL, (m + 1) * WORLD * N_LOCAL)
        h = layer(torch.cat([xa[sl], xp[sl], xn[sl]]))
        k = WORLD * N_LOCAL
        (info_nce(h[:k], h[k:2 * k], h[2 * k:], tau=0.05) / 2).backward()
    for kind in ("ddp", "fsdp"):
        for r in range(WORLD):
            for name, param in layer.named_parameters():
                torch.testing.assert_close(ranks[r][kind][name], param.grad, atol=1e-6, rtol=0)


class _Stack(torch.nn.Module):
    """Two layers under `.layers`, like a decoder: wrap_model's FSDP path shards each, then the root."""

    def __init__(self) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(D_IN, 8), torch.nn.Linear(8, D)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


def _resume_worker(rank: int, port: int, out_dir: str) -> None:
    """2 steps, checkpoint, 2 more steps; then a fresh model restored from the checkpoint does the same 2 steps."""
    import shutil

    import torch.distributed as dist

    from tara_batch.train.worker import linear_schedule, load_train_state, save_train_state, wrap_model

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        (xa, xp, xn), _ = _global_inputs()

        def build(seed):
            torch.manual_seed(seed)
            return _Stack().double()

        def step(model, opt, sched, k):
            sl = slice((k % 2) * WORLD * N_LOCAL + rank * N_LOCAL, (k % 2) * WORLD * N_LOCAL + (rank + 1) * N_LOCAL)
            h = model(torch.cat([xa[sl], xp[sl], xn[sl]]))
            info_nce(h[:N_LOCAL], h[N_LOCAL:2 * N_LOCAL], h[2 * N_LOCAL:], tau=0.05).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()

        def params(model):
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))

        for kind in ("ddp", "fsdp"):
            root = Path(out_dir) / kind
            results = {}
            for attempt in ("first", "resumed"):
                raw = build(seed=0 if attempt == "first" else 99)  # a resumed model must not depend on its init
                model = wrap_model(raw, kind, WORLD, bf16=False, reshard_after_forward=True, device=torch.device("cpu"))
                opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
                sched = torch.optim.lr_scheduler.LambdaLR(opt, linear_schedule(1, 6))
                if attempt == "first":
                    for k in range(2):
                        step(model, opt, sched, k)
                    save_train_state(root / f"rank{rank}", model, opt, sched, {"step": 2}, rank)
                    dist.barrier()
                    if rank == 0:  # what Ray does with the directories reported by every worker
                        for r in range(WORLD):
                            shutil.copytree(root / f"rank{r}", root / "merged", dirs_exist_ok=True)
                    dist.barrier()
                else:
                    assert load_train_state(root / "merged", model, opt, sched, rank)["step"] == 2
                for k in range(2, 4):
                    step(model, opt, sched, k)
                results[attempt] = (params(model), sched.get_last_lr())
            torch.save(results, root / f"result{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("kind", ["ddp", "fsdp"])
def test_checkpoint_resume_is_exact_under_ddp_and_fsdp(kind, tmp_path_factory):
    out = tmp_path_factory.getbasetemp() / "resume-2proc"
    if not (out / "fsdp" / "result1.pt").exists():  # one spawn serves both parametrisations
        mp.spawn(_resume_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    for r in range(WORLD):
        res = torch.load(out / kind / f"result{r}.pt", weights_only=False)
        first, resumed = res["first"], res["resumed"]
        assert first[1] == resumed[1]  # learning rate schedule continued
        assert first[0].keys() == resumed[0].keys()
        for k in first[0]:
            torch.testing.assert_close(first[0][k], resumed[0][k], atol=0, rtol=0)


# --------------------------------------------------------------------------------------------------------------------
# the model side
# --------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def text_model(tiny_model_dir):
    from tara_batch.train.model import load_text_model, load_tokenizer

    return load_text_model(tiny_model_dir), load_tokenizer(tiny_model_dir)


TEXTS = ["cut", "someone is folding a paper", "a person opens the door and walks in, then closes it behind them"]


def test_training_pooling_equals_inference_embedder(tiny_model_dir, text_model):
    from tara_batch.models.backend import TransformersEmbedder
    from tara_batch.train.model import embed_texts

    model, tok = text_model
    profile = get_profile()
    ours = embed_texts(model, tok, profile, TEXTS, max_tokens=32)
    ref = TransformersEmbedder(tiny_model_dir, profile, threads=1).embed_texts(TEXTS)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    assert np.abs(ours - ref).max() < 1e-5


def test_vision_tower_is_not_loaded(text_model):
    model, _ = text_model
    names = [n for n, _ in model.named_parameters()]
    assert names and not any("visual" in n or "lm_head" in n for n in names)
    assert type(model).__name__ == "Qwen2VLTextModel"


def test_positions_and_mask_match_inference(text_model):
    from tara_batch.models.backend import mrope_positions
    from tara_batch.train.model import text_positions, tokenize

    _, tok = text_model
    batch = tokenize(tok, get_profile(), TEXTS, 32)
    assert batch["attention_mask"][:, -1].all() and not batch["attention_mask"][:, 0].all()  # left padding
    want = mrope_positions(batch["input_ids"], batch["attention_mask"], None, video_token_id=7, merge=2)
    assert torch.equal(text_positions(batch["attention_mask"]), want)


def test_padding_does_not_change_embeddings_or_gradients(text_model):
    """Real mask: a row's embedding is the same alone and next to a longer row (no attention to padding)."""
    from tara_batch.train.model import embed_texts

    model, tok = text_model
    profile = get_profile()
    alone = embed_texts(model, tok, profile, [TEXTS[0]])
    padded = embed_texts(model, tok, profile, [TEXTS[0], TEXTS[2]])[:1]
    assert np.abs(alone - padded).max() < 1e-6


def test_gradient_checkpointing_gives_the_same_gradients(tiny_model_dir):
    from tara_batch.train.model import load_text_model, load_tokenizer, pool, tokenize

    tok = load_tokenizer(tiny_model_dir)
    batch = tokenize(tok, get_profile(), TEXTS * 2, 32)
    grads = []
    for ckpt in (False, True):
        model = load_text_model(tiny_model_dir, gradient_checkpointing=ckpt).train()
        h = pool(model, batch["input_ids"], batch["attention_mask"])
        info_nce(h[:2], h[2:4], h[4:], tau=0.05).backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        torch.testing.assert_close(grads[1][name], g, atol=1e-6, rtol=1e-5)


def test_truncation_happens_before_wrapping(text_model):
    from tara_batch.models.profile import render_text
    from tara_batch.train.model import tokenize, truncate_sentence

    _, tok = text_model
    profile = get_profile()
    long = "the dog runs into the room and then " * 12
    assert len(tok(long, add_special_tokens=False)["input_ids"]) > 64
    cut = truncate_sentence(tok, long, 32)
    assert long.startswith(cut) and len(tok(cut, add_special_tokens=False)["input_ids"]) == 32
    ids = tokenize(tok, profile, [long], 32)["input_ids"][0].tolist()
    # the rendered sequence ends with the full EOL prompt + assistant header, whatever the sentence length
    suffix = render_text(profile, "\x00").split("\x00", 1)[1]
    assert tok.decode(ids).endswith(suffix)
    assert ids == tok(render_text(profile, cut), add_special_tokens=False)["input_ids"]
    assert len(ids) < len(tok(render_text(profile, long), add_special_tokens=False)["input_ids"])
    # short sentences are untouched: same ids as inference
    assert truncate_sentence(tok, TEXTS[1], 32) == TEXTS[1]


# --------------------------------------------------------------------------------------------------------------------
# merge_back
# --------------------------------------------------------------------------------------------------------------------

def _tensor_bytes(root: Path) -> dict[str, bytes]:
    from tara_batch.train.model import read_header, weight_files

    out = {}
    for f in weight_files(root):
        header = read_header(root / f)
        raw = (root / f).read_bytes()
        start = 8 + int.from_bytes(raw[:8], "little")
        for k, meta in header.items():
            b, e = meta["data_offsets"]
            out[k] = raw[start + b:start + e]
    return out


@pytest.fixture(scope="module")
def sharded_tiny(tiny_model_dir, tmp_path_factory):
    """The tiny model saved in several shards with an index (the layout of a real 7B checkpoint)."""
    import shutil

    from transformers import Qwen2VLForConditionalGeneration

    out = tmp_path_factory.mktemp("sharded")
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(tiny_model_dir))
    model.save_pretrained(out, max_shard_size="300KB")
    for p in tiny_model_dir.iterdir():
        if not p.name.startswith(("model", "config")):
            shutil.copy2(p, out / p.name)
    assert (out / "model.safetensors.index.json").exists()
    return out


@pytest.mark.parametrize("which", ["single", "sharded"])
def test_merge_back_replaces_only_the_llm(which, tiny_model_dir, sharded_tiny, tmp_path):
    from tara_batch.models.backend import TransformersEmbedder
    from tara_batch.train.model import embed_texts, load_text_model, load_tokenizer, merge_back, weight_files

    src = tiny_model_dir if which == "single" else sharded_tiny
    model = load_text_model(src)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    out = merge_back(src, model.state_dict(), tmp_path / "merged", record={"hello": 1})
    assert weight_files(out) == weight_files(src)
    before, after = _tensor_bytes(src), _tensor_bytes(out)
    assert before.keys() == after.keys()
    vision = [k for k in before if k.startswith(("visual.", "model.visual."))]
    llm = [k for k in before if k not in vision and not k.startswith("lm_head")]
    assert vision and all(before[k] == after[k] for k in vision)
    assert before["lm_head.weight"] == after["lm_head.weight"]
    assert all(before[k] != after[k] for k in llm)
    assert json.loads((out / "tara_batch_train.json").read_text()) == {"hello": 1}
    # loads for inference, and embeds like the training side with the same weights
    ref = TransformersEmbedder(out, get_profile(), threads=1).embed_texts(TEXTS)
    ours = embed_texts(model, load_tokenizer(out), get_profile(), TEXTS)
    assert np.abs(ours - ref).max() < 1e-5
    with pytest.raises(Exception, match="not empty"):
        merge_back(src, model.state_dict(), out)


# --------------------------------------------------------------------------------------------------------------------
# data order and configs
# --------------------------------------------------------------------------------------------------------------------

def test_schedule_shards_are_disjoint_and_reproducible():
    s = Schedule(n_train=100, micro_batch=4, world_size=3, grad_accum=2, epochs=2)
    assert (s.micro_per_epoch, s.steps_per_epoch, s.total_steps) == (8, 4, 8)
    for step in range(s.total_steps):
        per_rank = [np.concatenate(s.step_rows(seed=1, step=step, rank=r)) for r in range(3)]
        flat = np.concatenate(per_rank)
        assert len(flat) == len(set(flat.tolist())) == 3 * 4 * 2  # disjoint, equal sizes
    # an epoch covers distinct rows; the two epochs are ordered differently; same seed -> same order
    epoch0 = np.concatenate([np.concatenate(s.step_rows(1, st, r)) for st in range(4) for r in range(3)])
    epoch1 = np.concatenate([np.concatenate(s.step_rows(1, st, r)) for st in range(4, 8) for r in range(3)])
    assert len(set(epoch0.tolist())) == 96 and not np.array_equal(epoch0, epoch1)
    assert all(np.array_equal(a, b) for a, b in zip(s.step_rows(1, 5, 2), s.step_rows(1, 5, 2), strict=True))


def test_linear_schedule_matches_transformers():
    from transformers import get_linear_schedule_with_warmup

    from tara_batch.train.worker import linear_schedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    ref = get_linear_schedule_with_warmup(opt, 6, 52)
    ours = linear_schedule(6, 52)
    for step in range(53):
        assert abs(ref.lr_lambdas[0](step) - ours(step)) < 1e-12


@pytest.mark.parametrize("name", ["train.yaml", "train_tiny.yaml"])
def test_shipped_train_configs_load(name):
    from tara_batch.config import load_config
    from tara_batch.train.config import TrainConfig

    path = ROOT / "ray_jobs" / name
    assert path.read_text().startswith("# ") and "ray job submit" in path.read_text().splitlines()[1]
    cfg = load_config(TrainConfig, path, ["model.path=/x", "output.dir=/y"])
    if name == "train.yaml":  # the paper's recipe
        t = cfg.train
        assert (t.micro_batch, cfg.scaling.num_workers, t.grad_accum) == (32, 8, 3)
        assert (t.epochs, t.lr, t.warmup_ratio, t.weight_decay, t.grad_clip, t.tau, t.max_tokens) == \
            (2, 2e-5, 0.1, 0.0, 1.0, 0.05, 32)
        assert cfg.model.gradient_checkpointing and cfg.scaling.use_gpu and cfg.scaling.strategy == "fsdp"


def test_config_errors_name_the_field():
    from tara_batch.config import load_config
    from tara_batch.errors import ConfigError
    from tara_batch.train.config import TrainConfig

    base = ["model.path=/m", "output.dir=/o", "data.sources=[{path: a.csv}]"]
    load_config(TrainConfig, None, base)
    for bad, field in [(["data.sources=[{path: a.csv, count: 3, ratio: 0.5}]"], "data.sources.count"),
                       (["data.sources=[{path: a.csv, ratio: 0.5}]"], "data.total"),
                       (["scaling.strategy=zero"], "scaling.strategy"),
                       (["validation.path=v.csv", "validation.fraction=0.1"], "validation.fraction"),
                       (["train.warmup_ratio=1.5"], "train.warmup_ratio")]:
        with pytest.raises(ConfigError) as exc:
            load_config(TrainConfig, None, base + bad)
        assert exc.value.field == field
