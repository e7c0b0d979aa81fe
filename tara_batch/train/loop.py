"""The driver of the TARA fine-tune on Ray Train: read and mix the triplets once, fit, merge the trained LLM into a
complete checkpoint.

    from tara_batch.config import load_config
    from tara_batch.train.config import TrainConfig
    from tara_batch.train.loop import run_training

    result = run_training(load_config(TrainConfig, "ray_jobs/train_tiny.yaml", ["output.dir=./tara-ft"]))
    print(result.render())

`run_training`: read + mix the triplets once with Ray Data (data.py), put them in the object store, build a
`TorchTrainer` (Ray Train V2, the default in Ray 2.60) with `ScalingConfig`, `RunConfig(storage_path, name,
CheckpointConfig, FailureConfig(max_failures))`, fit (the workers run `worker.train_loop_per_worker`), then merge
the final (or best) LLM weights into a complete checkpoint at `output.dir` (model.merge_back) with
`tara_batch_train.json` beside it. A rerun with the same config resumes from the latest checkpoint.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tara_batch.cluster import init_ray
from tara_batch.errors import ConfigError
from tara_batch.train.caption import WEIGHTS as CAPTION_WEIGHTS
from tara_batch.train.config import TrainConfig
from tara_batch.train.contrastive import LLM_WEIGHTS
from tara_batch.train.data import Schedule
from tara_batch.train.worker import SCORE, train_loop_per_worker

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced; `render()` is the human summary the CLI prints."""

    output_dir: str | None
    run_name: str
    run_path: str
    checkpoint_path: str | None
    step: int
    total_steps: int
    before: dict[str, dict[str, float]] | None
    after: dict[str, dict[str, float]] | None
    steps_per_s: float
    tokens_per_s: float
    peak_rss_mb: list[float]
    elapsed_s: float
    data_info: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.step >= self.total_steps

    def render(self) -> str:
        lines = [f"run {self.run_name}: step {self.step}/{self.total_steps} in {self.elapsed_s:.1f} s "
                 f"({self.steps_per_s:.2f} steps/s, {self.tokens_per_s:.0f} tokens/s while training)",
                 f"  checkpoints: {self.run_path}",
                 "  peak RSS per worker (MB): " + ", ".join(f"{v:.0f}" for v in self.peak_rss_mb)]
        if self.before:
            # contrastive: triplet accuracy / mean margin; caption: answer exact match / answer cross-entropy
            second = next((k for k in next(iter(self.before.values())) if k not in ("n", "accuracy")), "margin")
            lines.append(f"  held-out accuracy / {second} per source (before -> after):")
            for s, b in self.before.items():
                a = (self.after or {}).get(s)
                tail = f" -> {a['accuracy']:.3f} / {a[second]:+.3f}" if a else ""
                lines.append(f"    {s:<16} n={b['n']:<6} {b['accuracy']:.3f} / {b[second]:+.3f}{tail}")
        if self.output_dir:
            lines.append(f"  fine-tuned checkpoint: {self.output_dir}  (tara-batch embed --model {self.output_dir})")
        else:
            lines.append("  stopped before the last step (run.stop_after_step): rerun the same command to continue")
        return "\n".join(lines)


def _storage(cfg: TrainConfig) -> tuple[str | None, Any]:
    """(storage_path, storage_filesystem) for RunConfig: s3:// goes through our S3 settings (endpoint, creds)."""
    from tara_batch.io.uris import is_s3, split_s3

    path = cfg.run.storage_path
    if path and is_s3(path):
        bucket, key = split_s3(path)
        return f"{bucket}/{key}".rstrip("/"), cfg.s3.options().pyarrow_filesystem()
    return (str(Path(path).expanduser().resolve()) if path else None), None


def build_trainer(cfg: TrainConfig, data_ref, run_name: str, source_dtype: str):
    """The TorchTrainer for this config (Ray Train V2 API)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    sc = cfg.scaling
    resources: dict[str, float] = {"CPU": sc.cpus_per_worker}
    if sc.use_gpu:
        resources["GPU"] = sc.gpus_per_worker or 1
    storage_path, storage_fs = _storage(cfg)
    best = cfg.run.merge_from == "best"
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg, "data": data_ref, "source_dtype": source_dtype},
        scaling_config=ScalingConfig(num_workers=sc.num_workers, use_gpu=sc.use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=run_name,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            checkpoint_config=CheckpointConfig(num_to_keep=cfg.run.num_to_keep,
                                               checkpoint_score_attribute=SCORE if best else None,
                                               checkpoint_score_order="max"),
            failure_config=FailureConfig(max_failures=cfg.run.max_failures),
        ),
    )


def absolute_paths(cfg: TrainConfig) -> TrainConfig:
    """The config with every local path made absolute against the driver's working directory (s3:// untouched)."""
    from dataclasses import replace

    from tara_batch.io.uris import canonical_uri

    def fix(p: str | None) -> str | None:
        return canonical_uri(p) if p else p

    return replace(
        cfg,
        model=replace(cfg.model, path=fix(cfg.model.path)),
        data=replace(cfg.data, sources=tuple(replace(src, path=fix(src.path)) for src in cfg.data.sources)),
        validation=replace(cfg.validation, path=fix(cfg.validation.path)),
        output=replace(cfg.output, dir=fix(cfg.output.dir)),
        run=replace(cfg.run, storage_path=fix(cfg.run.storage_path)),
    )


def run_training(cfg: TrainConfig) -> TrainResult:
    """Train, then merge the trained LLM (or, for `objective: caption`, the whole model) into a complete checkpoint at
    `cfg.output.dir`.

    Resumable: a rerun with the same config (same run name and storage) continues from the latest checkpoint.
    """
    import ray

    from tara_batch.io.uris import is_s3
    from tara_batch.models.checkpoint import resolve_checkpoint
    from tara_batch.train.data import file_hashes, load_triplet_data
    from tara_batch.train.model import LazySafetensors, source_dtype

    t0 = time.perf_counter()
    cfg = absolute_paths(cfg)  # Ray Train workers run in their own working directory: relative paths would break
    s3 = cfg.s3.options()
    if not is_s3(cfg.output.dir):
        out = Path(cfg.output.dir).expanduser()
        if out.exists() and any(out.iterdir()) and not cfg.output.overwrite:
            raise ConfigError("output.dir", f"{out} exists and is not empty; choose a new directory or set "
                                            "output.overwrite=true")
    # 1. the source checkpoint (driver copy: merged at the end; checked before Ray starts) and the data, read once
    src = resolve_checkpoint(cfg.model.path, s3)
    dtype = source_dtype(src)
    init_ray(cfg.ray)
    if cfg.objective == "caption":
        from tara_batch.train.caption import load_task_data

        data = load_task_data(cfg.data, cfg.validation, cfg.train.seed, cfg.profile, s3, progress=True)
    else:
        data = load_triplet_data(cfg.data, cfg.validation, cfg.train.seed, s3)
    if cfg.run.merge_from == "best" and not len(data.val):
        raise ConfigError("run.merge_from", "`best` is chosen by held-out accuracy, but there are no held-out rows: "
                                            "set validation.path or validation.fraction > 0, or merge_from=final")
    Schedule(len(data.train), cfg.train.micro_batch, cfg.scaling.num_workers, cfg.train.grad_accum,
             cfg.train.epochs).check()
    hashes = file_hashes([s.path for s in cfg.data.sources] + ([cfg.validation.path] if cfg.validation.path else []),
                         s3)
    fingerprint = data.fingerprint()
    name = cfg.run_name(fingerprint)
    log.info("training run %s: %d train / %d held-out rows, %s", name, len(data.train), len(data.val),
             data.info["train_per_source"])
    # 2. fit (data travels through the object store once: workers get a reference)
    trainer = build_trainer(cfg, ray.put(data), name, dtype)
    t_fit = time.perf_counter()
    result = trainer.fit()
    log.info("data + setup %.1f s, fit %.1f s", t_fit - t0, time.perf_counter() - t_fit)
    summary = result.return_value or {}
    # 3. merge the chosen checkpoint's LLM into a complete checkpoint
    checkpoint, chosen_metrics = result.checkpoint, result.metrics
    if cfg.run.merge_from == "best" and result.best_checkpoints:
        checkpoint, chosen_metrics = max(result.best_checkpoints, key=lambda cm: cm[1].get(SCORE, -1.0))
    done = summary.get("step", 0) >= summary.get("total_steps", 1)
    output_dir = None
    if done and checkpoint is not None:
        record = {
            "config": _redacted(cfg),
            "run_name": name,
            "run_path": result.path,
            "checkpoint": checkpoint.path,
            "source_checkpoint": cfg.model.path,
            "data_files_sha256": hashes,
            "data_fingerprint": fingerprint,
            "data": data.info,
            "before": summary.get("before"),
            "after": summary.get("after"),
            "steps": summary.get("step"),
            "merged_from": cfg.run.merge_from,
            "merged_checkpoint_metrics": chosen_metrics,
            "world_size": summary.get("world_size"),
            "steps_per_s": summary.get("steps_per_s"),
            "tokens_per_s": summary.get("tokens_per_s"),
            "peak_rss_mb": summary.get("peak_rss_mb"),
        }
        with checkpoint.as_directory() as d:
            trained = LazySafetensors([Path(d) / (CAPTION_WEIGHTS if cfg.objective == "caption" else LLM_WEIGHTS)])
            output_dir = _write_output(src, trained, cfg, record, s3)
    return TrainResult(
        output_dir=output_dir, run_name=name, run_path=result.path,
        checkpoint_path=checkpoint.path if checkpoint is not None else None,
        step=summary.get("step", 0), total_steps=summary.get("total_steps", 0),
        before=summary.get("before"), after=summary.get("after"),
        steps_per_s=summary.get("steps_per_s", 0.0), tokens_per_s=summary.get("tokens_per_s", 0.0),
        peak_rss_mb=summary.get("peak_rss_mb", []), elapsed_s=time.perf_counter() - t0,
        data_info=data.info, history=summary.get("history", []),
    )


def _write_output(src: Path, trained, cfg: TrainConfig, record: dict[str, Any], s3) -> str:
    from tara_batch.io.uris import is_s3, split_s3
    from tara_batch.train.model import merge_back, merge_full

    # contrastive: the LLM into the source (vision untouched); caption: every tensor, the source's layout kept
    merge = merge_full if cfg.objective == "caption" else merge_back
    if not is_s3(cfg.output.dir):
        return str(merge(src, trained, cfg.output.dir, record=record, overwrite=cfg.output.overwrite))
    # s3://: merge locally, then upload file by file (config last, so a reader never sees a config without weights)
    with tempfile.TemporaryDirectory(prefix="tara-merge-") as tmp:
        local = merge(src, trained, Path(tmp) / "out", record=record)
        bucket, prefix = split_s3(cfg.output.dir.rstrip("/") + "/")
        client = s3.boto3_client()
        files = sorted(local.iterdir(), key=lambda p: p.name == "config.json")
        for p in files:
            client.upload_file(str(p), bucket, prefix + p.name)
        shutil.rmtree(local, ignore_errors=True)
    return cfg.output.dir


def _redacted(cfg: TrainConfig) -> dict[str, Any]:
    from tara_batch.config import to_dict

    data = to_dict(cfg)
    return json.loads(json.dumps(data, default=str))


__all__ = ["TrainResult", "build_trainer", "run_training", "train_loop_per_worker"]
