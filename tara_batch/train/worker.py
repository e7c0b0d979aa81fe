"""The Ray Train worker side of the fine-tune: one function per worker process, plus what it needs (wrapping,
gradient sync, the triplet forward, held-out evaluation, sharded checkpoints).

`train_loop_per_worker`, in numbered steps:
 1. load only the LLM (model.load_text_model) in the checkpoint's dtype, keep float32 master weights on the
    worker's device; wrap it: DDP (built as Ray's `prepare_model` does), or
    FSDP2 `fully_shard` per decoder layer + root (Ray's prepare_model refuses FSDP without CUDA; FSDP2 itself runs
    on CPU/gloo, which is how it is tested). The wrapped module is the one called in every forward.
 2. AdamW (wd 0) + linear warmup/decay (LambdaLR), resumed from `ray.train.get_checkpoint()` when there is one:
    model + optimizer through torch.distributed.checkpoint (sharded under FSDP), scheduler, step, RNG, history.
 3. evaluate the held-out triplets at step 0 (accuracy and mean margin per source).
 4. each optimizer step = grad_accum micro-steps; a micro-step is ONE forward of [anchors; positives; negatives]
    (3 x micro_batch rows, left-padded), InfoNCE over the all-gathered pool, backward without gradient sync except
    on the last micro-step (DDP `no_sync` / FSDP `set_requires_gradient_sync(False)`); clip, step, schedule.
 5. every `eval_every` steps and at checkpoints: evaluate; every `checkpoint_every` steps and at the end:
    `ray.train.report(metrics, checkpoint)` (only checkpoints are reported: a V2 report is a barrier through the
    controller, ~1.7 s here; per-step metrics are logged and returned as `Result.return_value`). The checkpoint
    also holds the full LLM weights (`llm.safetensors`, source dtype) so the driver can merge any kept checkpoint
    without loading the optimizer.
Rank 0's return value (history, evaluations before/after, steps/s, tokens/s, peak RSS of every worker) reaches the
driver as `Result.return_value`. Data order is a pure function of (data, seed, step, world size) (data.Schedule), so
a resumed run continues exactly where the checkpoint left off.

Precision: `auto` = bf16 on GPU (autocast over float32 master weights under DDP; FSDP2 MixedPrecisionPolicy with
bf16 params and float32 gradient reduction), float32 on CPU. For Tarsier2-7B use FSDP: DDP replicates float32
weights + gradients + Adam state (~112 GB per GPU); FSDP with reshard_after_forward=False is ZeRO-2-like
(gradients and optimizer sharded, parameters gathered once per step), True is ZeRO-3-like.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from tara_batch.errors import ConfigError
from tara_batch.train.config import TrainConfig
from tara_batch.train.contrastive import LLM_WEIGHTS, ContrastiveObjective
from tara_batch.train.data import Schedule
from tara_batch.train.dist import all_gather_floats, all_reduce_sum, process_group

log = logging.getLogger(__name__)


PROGRESS = "progress.json"

STATE_DIR = "state"

SCHEDULER = "scheduler.pt"

SCORE = "val_accuracy"


def linear_schedule(warmup_steps: int, total_steps: int):
    """LR multiplier: 0 -> 1 over warmup_steps, then linearly to 0 at total_steps (transformers' linear schedule)."""
    def fn(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return fn


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def wrap_model(model, strategy: str, world: int, *, bf16: bool, reshard_after_forward: bool, device,
               layers=None):
    """DDP, or FSDP2 per decoder layer (`layers`, default `model.layers`) + root; the model moved to `device` on one worker.

    DDP is built directly, as `ray.train.torch.prepare_model(parallel_strategy="ddp")` does, so this runs (and is
    tested) outside Ray Train too; Ray's helper would also refuse FSDP without CUDA.
    """
    import torch

    if device.type == "cuda":
        torch.cuda.set_device(device)
    model.to(device)
    if world == 1 or process_group() is None:
        return model
    if strategy == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        kwargs = {"device_ids": [device], "output_device": device} if device.type == "cuda" else {}
        return DistributedDataParallel(model, **kwargs)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 else MixedPrecisionPolicy()
    for layer in (model.layers if layers is None else layers):
        fully_shard(layer, mp_policy=mp, reshard_after_forward=reshard_after_forward)
    fully_shard(model, mp_policy=mp, reshard_after_forward=reshard_after_forward)
    return model


def no_sync(model, enabled: bool):
    """Context skipping the gradient all-reduce (accumulation micro-steps)."""
    from torch.nn.parallel import DistributedDataParallel

    if not enabled:
        return contextlib.nullcontext()
    if isinstance(model, DistributedDataParallel):
        return model.no_sync()
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        @contextlib.contextmanager
        def ctx():
            model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                model.set_requires_gradient_sync(True)
        return ctx()
    return contextlib.nullcontext()


def _flat_eval(ev: dict[str, dict[str, float]]) -> dict[str, float]:
    flat = {}
    for s, m in ev.items():
        flat.update({f"val/{s}/{k}": v for k, v in m.items() if k != "n"})
    if "all" in ev:
        flat[SCORE] = ev["all"]["accuracy"]
    return flat


def save_train_state(directory: str | Path, model, optimizer, scheduler, progress: dict[str, Any], rank: int,
                     llm_dtype: str = "float32", weights_file: str = LLM_WEIGHTS) -> None:
    """Write this rank's part of a checkpoint into `directory` (every rank must call it: it is a collective).

    state/      model + optimizer via torch.distributed.checkpoint (each rank writes its shards; replicated DDP
                tensors are written once) - the directories of all ranks together form the checkpoint
    rng-<r>.pt  this rank's torch RNG state
    rank 0 only: scheduler.pt, progress.json (step, history, data fingerprint, world size), `weights_file` (the
                trained tensors in the source checkpoint's dtype, what the driver merges: the LLM, or the whole model)
    """
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict, get_state_dict

    from tara_batch.train.model import save_text_weights

    d = Path(directory)
    msd, osd = get_state_dict(model, optimizer)
    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(d / STATE_DIR))
    torch.save({"torch": torch.get_rng_state()}, d / f"rng-{rank}.pt")
    if rank == 0:
        torch.save(scheduler.state_dict(), d / SCHEDULER)
        (d / PROGRESS).write_text(json.dumps(progress, default=float) + "\n")
        save_text_weights(full, d / weights_file, llm_dtype)


def load_train_state(directory: str | Path, model, optimizer, scheduler, rank: int) -> dict[str, Any]:
    """Restore what `save_train_state` wrote (any strategy, same world size); returns the saved progress."""
    import torch
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    d = Path(directory)
    msd, osd = get_state_dict(model, optimizer)
    state = {"model": msd, "optim": osd}
    dcp.load(state, checkpoint_id=str(d / STATE_DIR))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    scheduler.load_state_dict(torch.load(d / SCHEDULER, weights_only=True))
    rng = d / f"rng-{rank}.pt"
    if rng.exists():
        torch.set_rng_state(torch.load(rng, weights_only=True)["torch"])
    return json.loads((d / PROGRESS).read_text())


def make_objective(cfg: TrainConfig, data, model_dir):
    """The objective a worker trains: what it loads, how a micro-batch becomes a loss, how it is scored."""
    if cfg.objective == "caption":
        from tara_batch.train.caption import CaptionObjective

        return CaptionObjective(model_dir, cfg.profile, data.frames)
    return ContrastiveObjective(model_dir, cfg.profile, cfg.train.max_tokens, cfg.train.tau)


def train_loop_per_worker(config: dict[str, Any]) -> dict[str, Any]:
    """Ray Train worker function. config = {"cfg": TrainConfig, "data": ObjectRef[TripletData | TaskData],
    "source_dtype": str}.

    Returns (rank 0's is `Result.return_value`) the run summary: history, before/after evaluations, throughput,
    peak RSS per worker.
    """
    import ray
    import ray.train
    import ray.train.torch
    import torch

    from tara_batch.models.checkpoint import resolve_checkpoint

    t_start = time.perf_counter()
    cfg: TrainConfig = config["cfg"]
    data = ray.get(config["data"]) if isinstance(config["data"], ray.ObjectRef) else config["data"]
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.scaling.torch_threads)
    torch.manual_seed(cfg.train.seed)
    device = ray.train.torch.get_device()
    on_gpu = device.type == "cuda"
    bf16 = cfg.model.precision == "bf16" or (cfg.model.precision == "auto" and on_gpu)
    fsdp = cfg.scaling.strategy == "fsdp" and world > 1
    autocast_bf16 = bf16 and not fsdp  # FSDP2 casts parameters itself (MixedPrecisionPolicy)
    opt = cfg.train

    # 1. model (the LLM only, or the whole model for the caption objective) + wrapping
    model_dir = resolve_checkpoint(cfg.model.path, cfg.s3.options())
    objective = make_objective(cfg, data, model_dir)
    model = objective.load(getattr(torch, config.get("source_dtype", "float32")), device,
                           cfg.model.gradient_checkpointing)
    model.train()
    wrapped = wrap_model(model, cfg.scaling.strategy, world, bf16=bf16,
                         reshard_after_forward=cfg.scaling.fsdp_reshard_after_forward, device=device,
                         layers=objective.fsdp_layers(model))

    # 2. optimizer, schedule, resume
    sched = Schedule(len(data.train), opt.micro_batch, world, opt.grad_accum, opt.epochs)
    sched.check()
    total = sched.total_steps
    warmup = math.ceil(opt.warmup_ratio * total)
    optimizer = torch.optim.AdamW(wrapped.parameters(), lr=opt.lr, betas=(opt.adam_beta1, opt.adam_beta2),
                                  eps=opt.adam_eps, weight_decay=opt.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(warmup, total))
    fingerprint = data.fingerprint()
    source_names = sorted(set(data.val.source))
    progress: dict[str, Any] = {"step": 0, "history": [], "before": None, "last_eval": None, "train_time_s": 0.0,
                                "tokens": 0, "steps_timed": 0, "world_size": world, "data_fingerprint": fingerprint,
                                "total_steps": total}
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as d:
            saved = json.loads((Path(d) / PROGRESS).read_text())
            if saved["data_fingerprint"] != fingerprint:
                raise ConfigError("data.sources", "the checkpoint being resumed was trained on different triplets "
                                                  "(data fingerprint differs); use a new run.name to start over")
            if saved["world_size"] != world:
                raise ConfigError("scaling.num_workers", f"the checkpoint was written by {saved['world_size']} "
                                                         f"workers; the data order needs the same number ({world})")
            progress = load_train_state(d, wrapped, optimizer, scheduler, rank)
        log.info("rank %d resumed at step %d of %d", rank, progress["step"], total)

    def run_eval(step: int) -> dict[str, dict[str, float]]:
        ev = objective.evaluate(wrapped, data.val, source_names, rank=rank, world=world,
                                batch_size=cfg.validation.batch_size, device=device, autocast_bf16=autocast_bf16)
        progress["last_eval"] = {"step": step, **({"eval": ev} if ev else {})}
        return ev

    def save_and_report(metrics: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory(prefix="tara-ckpt-") as tmp:
            save_train_state(tmp, wrapped, optimizer, scheduler, progress, rank, config.get("source_dtype", "float32"),
                             weights_file=objective.weights_file)
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))

    # 3. held-out evaluation before any update
    if progress["step"] == 0 and progress["before"] is None:
        progress["before"] = run_eval(0)
    if rank == 0:
        log.info("worker ready in %.1f s (load, wrap, resume, first evaluation); %d steps of %d to go",
                 time.perf_counter() - t_start, total - progress["step"], total)

    # 4. steps
    stop = min(total, cfg.run.stop_after_step or total)
    window_t, window_tokens, window_steps = 0.0, 0, 0
    while progress["step"] < stop:
        step = progress["step"]
        t0 = time.perf_counter()
        micro = sched.step_rows(opt.seed, step, rank)
        loss_sum, tokens = 0.0, 0
        for k, rows in enumerate(micro):
            sub = data.train.take(rows)
            last = k == len(micro) - 1
            with no_sync(wrapped, enabled=not last):
                loss, ntok = objective.micro_step(wrapped, sub, device, autocast_bf16)
                loss = loss / opt.grad_accum
                loss.backward()
            loss_sum += float(loss.detach())
            tokens += ntok
        grad_norm = torch.nn.utils.clip_grad_norm_(wrapped.parameters(), opt.grad_clip if opt.grad_clip > 0 else
                                                   float("inf"))
        if hasattr(grad_norm, "full_tensor"):  # FSDP2: a replicated DTensor
            grad_norm = grad_norm.full_tensor()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        stats = all_reduce_sum(torch.tensor([loss_sum, float(tokens)], dtype=torch.float64))
        dt = time.perf_counter() - t0
        progress["step"] = step = step + 1
        progress["epoch"] = step / sched.steps_per_epoch
        progress["train_time_s"] += dt
        progress["tokens"] += int(stats[1])
        progress["steps_timed"] += 1
        window_t, window_tokens, window_steps = window_t + dt, window_tokens + int(stats[1]), window_steps + 1
        metrics: dict[str, Any] = {
            "step": step, "epoch": progress["epoch"], "loss": float(stats[0]) / world,
            "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
        }
        is_ckpt = step % cfg.run.checkpoint_every == 0 or step == stop
        if len(data.val) and (step % cfg.run.eval_every == 0 or step == total or is_ckpt):
            metrics.update(_flat_eval(run_eval(step)))
        elif progress["last_eval"] and progress["last_eval"].get("eval"):
            metrics[SCORE] = progress["last_eval"]["eval"]["all"]["accuracy"]  # for checkpoint scoring
        rss = all_gather_floats([_peak_rss_mb()], world)
        metrics.update({f"peak_rss_mb/rank{r}": v[0] for r, v in enumerate(rss)})
        if window_steps:
            metrics["steps_per_s"] = window_steps / window_t
            metrics["tokens_per_s"] = window_tokens / window_t
        progress["history"].append(metrics)
        if is_ckpt:
            # Only checkpoints are reported: in Ray Train V2 every report is a barrier through the controller
            # (~1.7 s each on our 2-core machine, 20x a tiny-model step); the per-step metrics are logged and
            # returned in the run history instead.
            save_and_report(metrics)
            window_t, window_tokens, window_steps = 0.0, 0, 0
        if rank == 0 and step % cfg.run.log_every == 0:
            log.info("step %d/%d loss %.4f lr %.2e%s", step, total, metrics["loss"], metrics["lr"],
                     f" {SCORE} {metrics[SCORE]:.3f}" if SCORE in metrics else "")

    rss = all_gather_floats([_peak_rss_mb()], world)
    after = (progress["last_eval"] or {}).get("eval") if progress["step"] == total else None
    return {
        "step": progress["step"],
        "total_steps": total,
        "steps_per_epoch": sched.steps_per_epoch,
        "warmup_steps": warmup,
        "before": progress["before"],
        "after": after,
        "history": progress["history"],
        "steps_per_s": progress["steps_timed"] / progress["train_time_s"] if progress["train_time_s"] else 0.0,
        "tokens_per_s": progress["tokens"] / progress["train_time_s"] if progress["train_time_s"] else 0.0,
        "peak_rss_mb": [v[0] for v in rss],
        "world_size": world,
    }
