"""The driver loop of the embed job: stream finished batches, commit rows and failures, count, stop on too many failures.

Embeddings are tiny next to video bytes (14 KB per 3584-d vector), so writing from the driver costs nothing
measurable while making every commit visible and the run summary exact. Whatever happens, what was computed is
committed before the loop exits.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from tara_batch import schema as S
from tara_batch.config import EmbedJobConfig
from tara_batch.embed.summary import RunSummary
from tara_batch.embed.telemetry import Telemetry
from tara_batch.errors import JobAborted
from tara_batch.index.writer import FailureState, VideoTableWriter


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


def stream_batches(cfg: EmbedJobConfig, ds, writer: VideoTableWriter, summary: RunSummary,
            failed: dict[str, FailureState], dim: int, progress: bool, tqdm,
            on_batch: Callable[[RunSummary], None] | None = None) -> None:
    pending: list[pa.Table] = []
    pending_rows = 0
    embedded_ids: list[str] = []
    failed_ids: set[str] = set()
    tel = Telemetry(summary.run_id)
    # embed activity: earliest batch start, latest batch end, rows' queue waits (for busy fraction and queue time)
    first_start, last_end, waits, wait_rows = float("inf"), 0.0, 0.0, 0
    t_stream, t_first = time.perf_counter(), 0.0

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
            # Videos, not rows: in segment mode a video's windows are its rows (streamed a chunk at a time, maybe
            # resumed mid-video), and its last window, or its failure row (index -1), marks it finished.
            videos = _finished_videos(batch) if S.SEGMENT_INDEX in batch else len(batch[S.VIDEO_ID])
            if S.SEGMENT_INDEX in rows.column_names:
                summary.segments += rows.num_rows
                idx, count = rows.column(S.SEGMENT_INDEX).to_numpy(), rows.column(S.SEGMENT_COUNT).to_numpy()
                summary.embedded += int(np.sum(idx == count - 1))
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
            if not t_first:
                t_first = time.perf_counter()
                summary.first_batch_seconds = t_first - t_stream
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
        span = last_end - first_start  # of the model actors' forwards, on their clocks
        if span > 0:
            # Not by arrival at the driver: Ray Data hands finished blocks over in bursts, so a short run's arrivals
            # can span less time than the forwards took.
            summary.steady_videos_per_second = summary.embedded / span
            if summary.embed_actors:
                summary.embed_busy_fraction = min(1.0, summary.embed_seconds / (summary.embed_actors * span))
        # A video with a failure in this run keeps its record, even if some of its windows were embedded.
        writer.clear_failures(list({v for v in embedded_ids if v not in failed_ids}))


def _finished_videos(batch) -> int:
    """Videos this segment-mode batch finishes: the rows holding a video's last window, plus failed videos."""
    idx = np.asarray(batch[S.SEGMENT_INDEX])
    count = np.asarray(batch[S.SEGMENT_COUNT])
    return int(np.sum((idx < 0) | (idx == count - 1)))
