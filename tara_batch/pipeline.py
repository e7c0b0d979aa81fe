"""The embed job on Ray Data: listing -> decode (CPU actor pool) -> embed (GPU/CPU actor pool) -> LanceDB.

This is the only module that wires Ray. Stages come from `stages.py`, resources from the job config. The driver
lists the source, skips videos already embedded by this model version, streams the rest through the actor pools
and commits rows to LanceDB as they arrive (merge-insert on video_id: no duplicates even if a batch is retried).
Embeddings are tiny next to video bytes (14 KB per 3584-d vector), so writing from the driver costs nothing
measurable while making every commit visible and the run summary exact.

    tara-batch embed --input ./videos --model ./tiny-tara --table ./index.lancedb/videos
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

from tara_batch import __version__, storage
from tara_batch import schema as S
from tara_batch.config import EmbedJobConfig, to_dict
from tara_batch.models.checkpoint import model_id as make_model_id
from tara_batch.models.loader import EmbedderSpec, checkpoint_fingerprint, embedding_dim
from tara_batch.stages import DecodeStage, EmbedStage
from tara_batch.store import TableRef, VideoTableWriter, maintain_index

log = logging.getLogger(__name__)

MAX_BLOCK_ROWS = 256  # rows per input block (upper bound): keeps the driver's block count small on huge archives


@dataclass
class RunSummary:
    run_id: str
    table: str
    model_id: str
    videos_listed: int = 0
    videos_skipped: int = 0  # already embedded by this model version (unchanged objects)
    videos_in: int = 0
    embedded: int = 0
    failed: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    decode_seconds: float = 0.0  # summed over videos (CPU time across actors)
    embed_seconds: float = 0.0  # summed over videos (actor time)
    write_seconds: float = 0.0  # driver time spent committing to LanceDB
    list_seconds: float = 0.0
    wall_seconds: float = 0.0
    videos_per_second: float = 0.0
    table_rows: int = 0
    index: str = ""

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)

    def render(self) -> str:
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.failures_by_kind.items())) or "none"
        return "\n".join([
            f"run {self.run_id} -> {self.table} (model {self.model_id})",
            f"  listed {self.videos_listed}, already embedded {self.videos_skipped}, processed {self.videos_in}",
            f"  embedded {self.embedded}, failed {self.failed} ({kinds})",
            f"  time: list {self.list_seconds:.1f}s, decode {self.decode_seconds:.1f}s (sum), "
            f"embed {self.embed_seconds:.1f}s (sum), write {self.write_seconds:.1f}s, wall {self.wall_seconds:.1f}s",
            f"  throughput: {self.videos_per_second:.2f} videos/s; table now has {self.table_rows} rows"
            + (f"; index: {self.index}" if self.index else ""),
        ])


def list_inputs(cfg: EmbedJobConfig) -> pa.Table:
    s3 = cfg.s3.options()
    if cfg.input.manifest:
        table = storage.read_manifest(cfg.input.manifest, s3=s3, column=cfg.input.manifest_column)
    else:
        table = storage.list_videos(cfg.input.source, s3=s3, extensions=cfg.input.extensions, glob=cfg.input.glob)
    if cfg.input.limit is not None:
        table = table.slice(0, cfg.input.limit)
    return table


def table_metadata(cfg: EmbedJobConfig, checkpoint_hash: str, model_id: str, dim: int) -> dict[str, Any]:
    return {
        "model_id": model_id,
        "checkpoint": {"path": cfg.model.path, "sha256": checkpoint_hash},
        "profile": cfg.profile.settings(),
        "dim": dim,
        "decode_backend": cfg.decode.backend,
        "tara_batch_version": __version__,
    }


def init_ray(cfg: EmbedJobConfig) -> None:
    import ray

    if ray.is_initialized():
        return
    address = cfg.ray.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=cfg.ray.num_cpus, num_gpus=cfg.ray.num_gpus, include_dashboard=False)


@dataclass(frozen=True)
class Plan:
    decode_actors: int
    embed_actors: int
    embed_gpus: float


def plan_resources(cfg: EmbedJobConfig, cluster: dict[str, float], n_videos: int) -> Plan:
    """Fixed-size pools from the cluster's resources (no autoscaling pool that could starve the model stage)."""
    gpus = float(cluster.get("GPU", 0))
    cpus = float(cluster.get("CPU", 1))
    embed_gpus = cfg.embed.num_gpus if cfg.embed.num_gpus is not None else (1.0 if gpus >= 1 else 0.0)
    if cfg.embed.concurrency:
        embed_actors = cfg.embed.concurrency
    elif embed_gpus > 0:
        embed_actors = max(1, int(gpus // embed_gpus))
    else:
        embed_actors = 1
    if cfg.decode.concurrency:
        decode_actors = cfg.decode.concurrency
    else:
        spare = cpus - (cfg.embed.num_cpus * embed_actors if embed_gpus == 0 else 0.0)
        decode_actors = max(1, int(spare // cfg.decode.num_cpus))
    blocks = max(1, math.ceil(n_videos / cfg.decode.batch_size))
    return Plan(min(decode_actors, blocks), min(embed_actors, blocks), embed_gpus)


def build_dataset(cfg: EmbedJobConfig, todo: pa.Table, plan: Plan):
    import ray

    ctx = ray.data.DataContext.get_current()
    # Our own bar counts videos end to end; Ray's per-operator bars (or, without a TTY, its periodic progress log)
    # would interleave with it.
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False

    # Enough blocks that every decode actor gets several (small archives), few enough that a million-video listing
    # is not a million objects in the driver's object store.
    rows = min(MAX_BLOCK_ROWS, max(cfg.decode.batch_size, math.ceil(todo.num_rows / (4 * plan.decode_actors))))
    blocks = [todo.slice(i, rows) for i in range(0, todo.num_rows, rows)]
    ds = ray.data.from_arrow(blocks)
    s3 = cfg.s3.options()
    ds = ds.map_batches(
        DecodeStage,
        fn_constructor_kwargs=dict(backend=cfg.decode.backend, num_frames=cfg.profile.num_frames,
                                   max_pixels=cfg.profile.max_pixels, threads=cfg.decode.threads, s3=s3,
                                   max_bytes=cfg.input.max_bytes),
        batch_size=cfg.decode.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=plan.decode_actors),
        num_cpus=cfg.decode.num_cpus,
    )
    spec = EmbedderSpec(model_uri=cfg.model.path, profile=cfg.profile, backend=cfg.model.backend,
                        device=cfg.model.device, threads=cfg.embed.torch_threads, s3=s3)
    ds = ds.map_batches(
        EmbedStage,
        fn_constructor_kwargs=dict(embedder_factory=spec),
        batch_size=cfg.embed.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=plan.embed_actors),
        num_cpus=cfg.embed.num_cpus,
        num_gpus=plan.embed_gpus,
    )
    return ds


def _rows_tables(batch: dict[str, np.ndarray], model_id: str, dim: int) -> tuple[pa.Table, pa.Table]:
    """Split an embed-stage batch into (rows to write, failure records)."""
    now = datetime.now(timezone.utc)
    status = np.asarray(batch[S.STATUS], dtype=object)
    ok = status == S.STATUS_OK
    bad = ~ok

    def col(name: str, mask: np.ndarray) -> list:
        return np.asarray(batch[name], dtype=object)[mask].tolist()

    emb = np.asarray(batch[S.EMBEDDING], np.float32)[ok]  # [n_ok, dim]
    rows = pa.table({
        S.VIDEO_ID: pa.array(col(S.VIDEO_ID, ok), pa.string()),
        S.URI: pa.array(col(S.URI, ok), pa.string()),
        S.SIZE: pa.array(np.asarray(batch[S.SIZE])[ok], pa.int64()),
        S.ETAG: pa.array(col(S.ETAG, ok), pa.string()),
        S.DURATION: pa.array(np.asarray(batch[S.DURATION], np.float64)[ok]),
        S.FPS: pa.array(np.asarray(batch[S.FPS], np.float64)[ok]),
        S.NUM_FRAMES: pa.array(np.asarray(batch[S.NUM_FRAMES], np.int32)[ok]),
        S.MODEL_ID: pa.array([model_id] * int(ok.sum()), pa.string()),
        S.EMBEDDING: pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim),
        S.CREATED_AT: pa.array([now] * int(ok.sum()), pa.timestamp("us", tz="UTC")),
    })
    failures = pa.table({
        S.VIDEO_ID: pa.array(col(S.VIDEO_ID, bad), pa.string()),
        S.URI: pa.array(col(S.URI, bad), pa.string()),
        S.SIZE: pa.array(np.asarray(batch[S.SIZE])[bad], pa.int64()),
        S.ETAG: pa.array(col(S.ETAG, bad), pa.string()),
        S.MODEL_ID: pa.array([model_id] * int(bad.sum()), pa.string()),
        S.ERROR_STAGE: pa.array(col(S.ERROR_STAGE, bad), pa.string()),
        S.ERROR_KIND: pa.array(col(S.ERROR_KIND, bad), pa.string()),
        S.ERROR_MESSAGE: pa.array(col(S.ERROR_MESSAGE, bad), pa.string()),
        S.CREATED_AT: pa.array([now] * int(bad.sum()), pa.timestamp("us", tz="UTC")),
    })
    return rows, failures


def run_embed(cfg: EmbedJobConfig, *, overwrite: bool = False, progress: bool = True) -> RunSummary:
    """Run the embed job described by `cfg`; returns (and saves beside the table) the run summary."""
    from tqdm import tqdm

    t_start = time.perf_counter()
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    log.info("resolved config:\n%s", json.dumps(to_dict(cfg), indent=2, default=str))

    # 0. Ray first: its processes are forked before LanceDB's runtime threads exist in this process.
    import ray

    init_ray(cfg)

    # 1. Model version: weights hash + profile settings (no weights are loaded on the driver).
    ref = TableRef.parse(cfg.output.table)
    s3 = cfg.s3.options()
    ckpt_hash, model_config = checkpoint_fingerprint(cfg.model.path, s3)
    dim = embedding_dim(model_config)
    model_id = make_model_id(ckpt_hash, cfg.profile.settings_json())
    summary = RunSummary(run_id=run_id, table=ref.uri, model_id=model_id)

    # 2. What to do: the listing minus what this model version already embedded (same object, same ETag/mtime).
    t0 = time.perf_counter()
    listing = list_inputs(cfg)
    summary.list_seconds = time.perf_counter() - t0
    summary.videos_listed = listing.num_rows
    writer = VideoTableWriter(ref, dim=dim, metadata=table_metadata(cfg, ckpt_hash, model_id, dim), s3=s3,
                              overwrite=overwrite)
    done = writer.done_ids()
    keep = [done.get(v) != e for v, e in zip(listing.column(S.VIDEO_ID).to_pylist(),
                                             listing.column(S.ETAG).to_pylist(), strict=True)]
    todo = listing.filter(pa.array(keep, pa.bool_()))
    summary.videos_skipped = listing.num_rows - todo.num_rows
    summary.videos_in = todo.num_rows
    log.info("%d videos listed, %d already embedded, %d to process", listing.num_rows, summary.videos_skipped,
             todo.num_rows)

    # 3. Stream through Ray, committing as rows arrive.
    if todo.num_rows:
        plan = plan_resources(cfg, ray.cluster_resources(), todo.num_rows)
        log.info("pools: %d decode actors, %d embed actors (%.2f GPU each)", plan.decode_actors, plan.embed_actors,
                 plan.embed_gpus)
        ds = build_dataset(cfg, todo, plan)
        pending: list[pa.Table] = []
        pending_rows = 0
        embedded_ids: list[str] = []

        def commit() -> None:
            nonlocal pending, pending_rows
            if pending:
                t = time.perf_counter()
                writer.write_rows(pa.concat_tables(pending))
                summary.write_seconds += time.perf_counter() - t
                pending, pending_rows = [], 0

        bar = tqdm(total=todo.num_rows, unit="video", desc="embed", disable=not progress)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
            rows, failures = _rows_tables(batch, model_id, dim)
            summary.decode_seconds += float(np.sum(batch[S.DECODE_SECONDS]))
            summary.embed_seconds += float(np.sum(batch[S.EMBED_SECONDS]))
            if failures.num_rows:
                t = time.perf_counter()
                writer.write_failures(failures)
                summary.write_seconds += time.perf_counter() - t
                for kind in failures.column(S.ERROR_KIND).to_pylist():
                    summary.failures_by_kind[kind] = summary.failures_by_kind.get(kind, 0) + 1
            summary.failed += failures.num_rows
            summary.embedded += rows.num_rows
            embedded_ids += rows.column(S.VIDEO_ID).to_pylist()
            pending.append(rows)
            pending_rows += rows.num_rows
            if pending_rows >= cfg.output.commit_rows:
                commit()
            bar.update(len(batch[S.VIDEO_ID]))
            bar.set_postfix(ok=summary.embedded, failed=summary.failed)
        commit()
        bar.close()
        writer.clear_failures(embedded_ids)

    # 4. Index, summary.
    summary.table_rows = writer.count()
    summary.index = maintain_index(writer.table, mode=cfg.output.index, threshold=cfg.output.index_threshold,
                                   changed=summary.embedded > 0)
    summary.wall_seconds = time.perf_counter() - t_start
    summary.videos_per_second = summary.videos_in / summary.wall_seconds if summary.wall_seconds else 0.0
    save_run_record(ref, summary, cfg, s3)
    return summary


def save_run_record(ref: TableRef, summary: RunSummary, cfg: EmbedJobConfig, s3: storage.S3Options) -> str:
    """Write `<db>/_runs/<table>/<run_id>.json` (summary + resolved config, secrets masked) beside the table."""
    record = json.dumps({"summary": summary.__dict__, "config": to_dict(cfg)}, indent=2, sort_keys=True, default=str)
    uri = f"{ref.db_uri}/_runs/{ref.name}/{summary.run_id}.json"
    if storage.is_s3(uri):
        bucket, key = storage.split_s3(uri)
        s3.boto3_client().put_object(Bucket=bucket, Key=key, Body=record.encode())
    else:
        from pathlib import Path

        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        Path(uri).write_text(record + "\n")
    log.info("run record saved to %s", uri)
    return uri

