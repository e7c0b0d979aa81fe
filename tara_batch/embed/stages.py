"""The pipeline's stages: callables from a columnar batch (dict of numpy arrays, keys from `schema`) to a batch.

Each stateful stage does its expensive setup once in `__init__` (one per Ray actor) and only per-batch work in
`__call__`. A bad video never raises out of a stage: its row carries `status="failed"` plus the stage, kind and
message of the error, flows on untouched, and the driver records it in the failures table. No Ray imports here:
tests call stages directly; `pipeline.py` alone decides where they run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from tara_batch import schema as S
from tara_batch.embed.telemetry import BusyClock, Telemetry, node_id
from tara_batch.io.reads import ObjectTooLarge, read_bytes
from tara_batch.io.s3 import S3Options
from tara_batch.models.preprocess import plan_batches
from tara_batch.video.frames import DecodeError
from tara_batch.video.registry import get_sampler

log = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]

_EMPTY_FRAMES = np.zeros((0, 1, 1, 3), dtype=np.uint8)  # placeholder for failed rows (same ndim as real clips)


def _str_col(values: list[Any]) -> np.ndarray:
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


class _Rows:
    """Output rows of the decode stage, column by column, flushed as one batch at a time."""

    COLS = (S.DURATION, S.FPS, S.NUM_FRAMES, S.SOURCE_FRAMES, S.STATUS, S.ERROR_STAGE, S.ERROR_KIND, S.ERROR_MESSAGE,
            S.DECODE_SECONDS, S.FETCH_SECONDS)

    def __init__(self) -> None:
        self.source: list[int] = []  # input row of each output row (segment mode fans a video out into windows)
        self.frames: list[np.ndarray] = []
        self.cols: dict[str, list[Any]] = {k: [] for k in self.COLS}
        self.seg: list[tuple[int, int, float, float]] = []  # index, count, start, end

    def __len__(self) -> int:
        return len(self.source)

    def add(self, i: int, frames: np.ndarray, video: Any, status: tuple[str, str, str], seconds: float,
            fetch_seconds: float, segment: tuple[int, int, float, float]) -> None:
        ok = video is not None
        stage, kind, message = status
        self.source.append(i)
        self.frames.append(frames)
        c = self.cols
        c[S.DURATION].append(video.duration if ok else np.nan)
        c[S.FPS].append(video.fps if ok else np.nan)
        c[S.NUM_FRAMES].append(len(frames) if ok else 0)
        c[S.SOURCE_FRAMES].append(video.source_frames if ok else 0)
        c[S.STATUS].append(S.STATUS_OK if ok else S.STATUS_FAILED)
        c[S.ERROR_STAGE].append(stage)
        c[S.ERROR_KIND].append(kind)
        c[S.ERROR_MESSAGE].append(message[:2000])
        c[S.DECODE_SECONDS].append(seconds)
        c[S.FETCH_SECONDS].append(fetch_seconds)
        self.seg.append(segment)

    def flush(self, batch: Batch, segments: bool, node: str) -> Batch:
        rows = np.array(self.source, dtype=np.int64)
        out: Batch = {k: np.asarray(batch[k])[rows] for k in (S.VIDEO_ID, S.URI, S.SIZE, S.ETAG)}
        if segments:
            seg = np.array(self.seg, dtype=np.float64).reshape(-1, 4)
            out[S.SEGMENT_INDEX], out[S.SEGMENT_COUNT] = seg[:, 0].astype(np.int32), seg[:, 1].astype(np.int32)
            out[S.SEGMENT_START], out[S.SEGMENT_END] = seg[:, 2], seg[:, 3]
        out[S.FRAMES] = _ragged(self.frames)
        for k, dtype in ((S.DURATION, np.float64), (S.FPS, np.float64), (S.NUM_FRAMES, np.int32),
                         (S.SOURCE_FRAMES, np.int64), (S.DECODE_SECONDS, np.float64), (S.FETCH_SECONDS, np.float64)):
            out[k] = np.array(self.cols[k], dtype)
        for k in (S.STATUS, S.ERROR_STAGE, S.ERROR_KIND, S.ERROR_MESSAGE):
            out[k] = _str_col(self.cols[k])
        out[S.DECODED_AT] = np.full(len(rows), time.time(), np.float64)
        out[S.DECODE_NODE] = np.array([node] * len(rows), dtype=object)
        self.__init__()
        return out


class DecodeStage:
    """Fetch each object into memory and sample its frames (uniform, first and last included, resized).

    With `segments=(length_s, stride_s)` a video becomes one row per sliding window (segment columns of `schema`),
    each window sampled like a clip of its own; a failed video stays one row (segment_index -1). Windows stream:
    they are sampled `window_chunk` at a time and yielded in batches of at most that many rows, so a two-hour video
    costs no more memory than a short one. A video whose first windows are already in the table starts at its
    `first_window` column (resume mid-video)."""

    def __init__(self, *, backend: str, num_frames: int, max_pixels: int, threads: int = 1,
                 s3: S3Options | None = None, max_bytes: int | None = None, isolate: bool = False,
                 timeout_s: float = 300.0, max_source_pixels: int | None = None,
                 segments: tuple[float, float] | None = None, run_id: str = "", window_chunk: int = 64,
                 allow_stills: bool = False) -> None:
        # isolate: the decoder runs in a child process, so a segfault costs one video, not the actor and its batch.
        self.sampler = get_sampler(backend, threads=threads, isolate=isolate, timeout_s=timeout_s,
                                   max_source_pixels=max_source_pixels, allow_stills=allow_stills)
        self.num_frames = num_frames
        self.max_pixels = max_pixels
        self.s3 = s3
        self.max_bytes = max_bytes
        self.segments = segments
        self.window_chunk = window_chunk
        self.telemetry = Telemetry(run_id)
        self.node = node_id()
        # One fetch ahead: the next video's bytes download while this one decodes (S3 latency hidden behind
        # decode), and at most two videos' bytes are in memory per actor.
        self._fetcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fetch")

    def _fetch(self, uri: str) -> tuple[bytes | None, BaseException | None, float]:
        t0 = time.perf_counter()
        try:
            return read_bytes(uri, s3=self.s3, max_bytes=self.max_bytes), None, time.perf_counter() - t0
        except Exception as exc:
            return None, exc, time.perf_counter() - t0

    @staticmethod
    def _fetch_error(error: BaseException | None) -> tuple[str, str, str]:
        if isinstance(error, ObjectTooLarge):
            return "fetch", "too_large", str(error)
        if isinstance(error, FileNotFoundError):  # deleted between listing and fetch
            return "fetch", "not_found", str(error)
        return "fetch", "fetch_error", f"{type(error).__name__}: {error}"

    def _sample(self, data: bytes, windows: tuple[int, int] | None):
        """(video, None) or (None, (stage, kind, message))."""
        try:
            return self.sampler.sample(data, self.num_frames, self.max_pixels, self.segments, windows), None
        except DecodeError as exc:
            return None, ("decode", exc.kind, str(exc))
        except Exception as exc:
            return None, ("decode", "decoder_error", f"{type(exc).__name__}: {exc}")

    def __call__(self, batch: Batch):
        n = len(batch[S.VIDEO_ID])
        uris = [str(u) for u in batch[S.URI]]
        first_window = np.asarray(batch[S.FIRST_WINDOW]) if S.FIRST_WINDOW in batch else np.zeros(n, np.int64)
        rows = _Rows()
        pending = self._fetcher.submit(self._fetch, uris[0]) if n else None
        fetched_bytes, busy, fetch_busy, failed = 0, 0.0, 0.0, 0
        for i in range(n):
            data, error, fetch_seconds = pending.result()
            pending = self._fetcher.submit(self._fetch, uris[i + 1]) if i + 1 < n else None
            fetch_busy += fetch_seconds
            status = self._fetch_error(error) if error is not None else ("", "", "")
            del error
            if data is None:
                rows.add(i, _EMPTY_FRAMES, None, status, 0.0, fetch_seconds, (-1, 0, np.nan, np.nan))
                failed += 1
                log.warning("failed %s at %s: %s %s", uris[i], *status[:2], status[2][:300])
                continue
            fetched_bytes += len(data)
            w = int(first_window[i]) if self.segments else 0
            while True:
                t0 = time.perf_counter()
                windows = (w, w + self.window_chunk) if self.segments else None
                video, status = self._sample(data, windows)
                elapsed = time.perf_counter() - t0
                busy += elapsed
                if video is None:
                    rows.add(i, _EMPTY_FRAMES, None, status, elapsed, fetch_seconds, (-1, 0, np.nan, np.nan))
                    failed += 1
                    log.warning("failed %s at %s: %s %s", uris[i], *status[:2], status[2][:300])
                    break
                parts = video.split()
                for k, part in enumerate(parts):
                    seg = (-1, 0, np.nan, np.nan) if video.windows is None else \
                        (video.window_offset + k, video.window_total, float(video.windows[k, 0]),
                         float(video.windows[k, 1]))
                    rows.add(i, part, video, ("", "", ""), elapsed / max(1, len(parts)),
                             fetch_seconds if w == int(first_window[i]) and k == 0 else 0.0, seg)
                fetch_seconds = 0.0
                if self.segments and len(rows) >= self.window_chunk:
                    yield rows.flush(batch, True, self.node)  # bounded: at most a chunk of windows per batch
                if video.windows is None:
                    break
                w = video.window_offset + len(video.windows)
                if w >= video.window_total:
                    break
            del data
        self.telemetry.inc("tara_batch_stage_videos_total", n, stage="decode")
        self.telemetry.inc("tara_batch_stage_busy_seconds_total", busy, stage="decode")
        self.telemetry.inc("tara_batch_stage_busy_seconds_total", fetch_busy, stage="fetch")
        self.telemetry.inc("tara_batch_fetch_bytes_total", fetched_bytes)
        if len(rows) or not n:
            yield rows.flush(batch, bool(self.segments), self.node)


def _ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """An object array of per-row ndarrays: Ray Data stores it as a variable-shaped tensor column (not pickled)."""
    out = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        out[i] = a
    return out


def _error_columns(batch: Batch) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Writable copies of (status, error_stage, error_kind, error_message): a later stage may fail a row."""
    return tuple(np.array(batch[k], dtype=object) for k in (S.STATUS, S.ERROR_STAGE, S.ERROR_KIND,
                                                             S.ERROR_MESSAGE))  # type: ignore[return-value]


class PreprocessStage:
    """The model's CPU work (resize, patchify, tokenise) on CPU actors: frames in, per-video model inputs out
    (`models.preprocess` columns), so the embed actor only collates and runs the forward. Frames are dropped after
    this stage. A video the processor rejects fails alone (`preprocess_error`)."""

    def __init__(self, *, model_uri: str, profile: Any, s3: S3Options | None = None, run_id: str = "") -> None:
        from tara_batch.models.checkpoint import resolve_checkpoint
        from tara_batch.models.preprocess import VideoPreprocessor

        self.pre = VideoPreprocessor(resolve_checkpoint(model_uri, s3), profile)
        self.telemetry = Telemetry(run_id)

    def __call__(self, batch: Batch) -> Batch:
        from tara_batch.models import preprocess as P

        t0 = time.perf_counter()
        status, stage, kind, message = _error_columns(batch)
        n = len(status)
        cols: dict[str, list[np.ndarray]] = {P.INPUT_IDS: [], P.PIXEL_VALUES: [], P.GRID_THW: []}
        tokens = np.zeros(n, np.int64)
        for i in range(n):
            item = None
            if status[i] == S.STATUS_OK:
                try:
                    item = self.pre.one(np.asarray(batch[S.FRAMES][i], dtype=np.uint8))
                except Exception as exc:
                    status[i], stage[i], kind[i] = S.STATUS_FAILED, "preprocess", "preprocess_error"
                    message[i] = f"{type(exc).__name__}: {exc}"[:2000]
                    log.warning("failed %s at preprocess: %s", batch[S.URI][i], message[i][:300])
            cols[P.INPUT_IDS].append(item[P.INPUT_IDS] if item else np.zeros(0, np.int64))
            cols[P.PIXEL_VALUES].append(item[P.PIXEL_VALUES] if item else np.zeros((0, 1), np.float32))
            cols[P.GRID_THW].append(item[P.GRID_THW] if item else np.zeros(3, np.int64))
            tokens[i] = item[P.VISUAL_TOKENS] if item else 0
        out: Batch = {k: v for k, v in batch.items() if k != S.FRAMES}
        out[S.STATUS], out[S.ERROR_STAGE], out[S.ERROR_KIND], out[S.ERROR_MESSAGE] = status, stage, kind, message
        out[P.INPUT_IDS] = _ragged(cols[P.INPUT_IDS])
        out[P.PIXEL_VALUES] = _ragged(cols[P.PIXEL_VALUES])
        out[P.GRID_THW] = np.stack(cols[P.GRID_THW]) if n else np.zeros((0, 3), np.int64)
        out[P.VISUAL_TOKENS] = tokens
        self.telemetry.inc("tara_batch_stage_videos_total", n, stage="preprocess")
        self.telemetry.inc("tara_batch_stage_busy_seconds_total", time.perf_counter() - t0, stage="preprocess")
        return out


class CpuStage:
    """Decode, then (optionally) preprocess, in one CPU actor: one pool, one hop, no frames shipped twice. A
    generator: the decode stage yields a long video's windows a chunk at a time."""

    def __init__(self, *, decode: dict[str, Any], preprocess: dict[str, Any] | None = None) -> None:
        self.decode = DecodeStage(**decode)
        self.preprocess = PreprocessStage(**preprocess) if preprocess is not None else None

    def __call__(self, batch: Batch):
        for out in self.decode(batch):
            yield self.preprocess(out) if self.preprocess is not None else out


_PASS_THROUGH = (S.VIDEO_ID, S.URI, S.SIZE, S.ETAG, S.DURATION, S.FPS, S.NUM_FRAMES, S.DECODE_SECONDS, S.FETCH_SECONDS,
                 S.DECODED_AT, S.DECODE_NODE, S.SEGMENT_INDEX, S.SEGMENT_COUNT, S.SEGMENT_START, S.SEGMENT_END)


class EmbedStage:
    """Load the model once per actor; embed the ok rows of each batch; pass failed rows through.

    Rows are embedded in consecutive sub-batches of at most `max_rows` rows and `token_budget` visual tokens
    (`preprocess.plan_batches`): a Ray batch of mixed resolutions becomes forwards of even cost instead of one
    forward sized by its largest clip. Input is frames (the backend preprocesses) or, when the CPU actors already
    did it, per-video model inputs (`embed_inputs`)."""

    def __init__(self, *, embedder_factory: Callable[[], Any], token_budget: int | None = None,
                 max_rows: int | None = None, run_id: str = "") -> None:
        self.embedder = embedder_factory()
        self.dim = int(self.embedder.dim)
        self.token_budget = token_budget
        self.max_rows = max_rows
        self.telemetry = Telemetry(run_id)
        self.clock = BusyClock()
        self.actor = f"{id(self):x}"
        self.node = node_id()

    def _tokens(self, batch: Batch, ok: list[int]) -> list[int]:
        from tara_batch.models.preprocess import visual_tokens

        if S.VISUAL_TOKENS in batch:
            return [int(batch[S.VISUAL_TOKENS][i]) for i in ok]
        shapes = [np.shape(batch[S.FRAMES][i]) for i in ok]
        return [visual_tokens(t, h, w, self.embedder.profile) for t, h, w, _ in shapes]

    def _embed(self, batch: Batch, rows: list[int]) -> np.ndarray:
        from tara_batch.models import preprocess as P

        if P.INPUT_IDS in batch:
            return self.embedder.embed_inputs([{k: batch[k][i] for k in (P.INPUT_IDS, P.PIXEL_VALUES, P.GRID_THW)}
                                               for i in rows])
        return self.embedder.embed_videos([np.asarray(batch[S.FRAMES][i], dtype=np.uint8) for i in rows])

    def __call__(self, batch: Batch) -> Batch:
        t0 = time.perf_counter()
        started = time.time()
        status, stage, kind, message = _error_columns(batch)
        n = len(status)
        emb = np.zeros((n, self.dim), np.float32)
        ok = [i for i in range(n) if status[i] == S.STATUS_OK]
        tokens = self._tokens(batch, ok)
        for part in plan_batches(tokens, self.token_budget, self.max_rows or max(len(ok), 1)):
            rows = ok[part]
            try:
                with self.clock:
                    emb[rows] = self._embed(batch, rows)
            except Exception as exc:
                # Isolate the culprit: retry one by one so one bad input fails alone, not its batch-mates.
                log.warning("batch of %d failed in embed (%s); retrying one by one", len(rows), exc)
                for i in rows:
                    try:
                        with self.clock:
                            emb[i] = self._embed(batch, [i])[0]
                    except Exception as one:
                        status[i], stage[i], kind[i] = S.STATUS_FAILED, "embed", "embed_error"
                        message[i] = f"{type(one).__name__}: {one}"[:2000]
        out: Batch = {k: batch[k] for k in _PASS_THROUGH if k in batch}
        out[S.STATUS], out[S.ERROR_STAGE], out[S.ERROR_KIND], out[S.ERROR_MESSAGE] = status, stage, kind, message
        out[S.EMBEDDING] = emb  # [n, dim] float32, unit norm for ok rows, zeros for failed rows
        out[S.EMBED_SECONDS] = np.full(n, (time.perf_counter() - t0) / max(n, 1), np.float64)
        out[S.EMBED_STARTED_AT] = np.full(n, started, np.float64)
        out[S.EMBED_NODE] = np.array([self.node] * n, dtype=object)
        out[S.VISUAL_TOKENS] = np.zeros(n, np.int64)
        out[S.VISUAL_TOKENS][ok] = tokens
        self.telemetry.inc("tara_batch_stage_videos_total", n, stage="embed")
        self.telemetry.inc("tara_batch_stage_busy_seconds_total", time.perf_counter() - t0, stage="embed")
        self.telemetry.inc("tara_batch_visual_tokens_total", sum(tokens))
        self.telemetry.set("tara_batch_embed_busy_fraction", self.clock.fraction, actor=self.actor)
        return out
