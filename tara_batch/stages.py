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
from typing import Any

import numpy as np

from tara_batch import schema as S
from tara_batch.decode import DecodeError, get_sampler
from tara_batch.storage import ObjectTooLarge, S3Options, read_bytes

log = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]

_EMPTY_FRAMES = np.zeros((0, 1, 1, 3), dtype=np.uint8)  # placeholder for failed rows (same ndim as real clips)


def _str_col(values: list[Any]) -> np.ndarray:
    return np.array(["" if v is None else str(v) for v in values], dtype=object)


class DecodeStage:
    """Fetch each object into memory and sample its frames (uniform, first and last included, resized).

    With `segments=(length_s, stride_s)` a video becomes one row per sliding window (segment columns of `schema`),
    each window sampled like a clip of its own; a failed video stays one row (segment_index -1)."""

    def __init__(self, *, backend: str, num_frames: int, max_pixels: int, threads: int = 1,
                 s3: S3Options | None = None, max_bytes: int | None = None, isolate: bool = False,
                 timeout_s: float = 300.0, max_source_pixels: int | None = None,
                 segments: tuple[float, float] | None = None) -> None:
        # isolate: the decoder runs in a child process, so a segfault costs one video, not the actor and its batch.
        self.sampler = get_sampler(backend, threads=threads, isolate=isolate, timeout_s=timeout_s,
                                   max_source_pixels=max_source_pixels)
        self.num_frames = num_frames
        self.max_pixels = max_pixels
        self.s3 = s3
        self.max_bytes = max_bytes
        self.segments = segments

    def __call__(self, batch: Batch) -> Batch:
        n = len(batch[S.VIDEO_ID])
        frames: list[np.ndarray] = []
        cols: dict[str, list[Any]] = {k: [] for k in (S.DURATION, S.FPS, S.NUM_FRAMES, S.SOURCE_FRAMES, S.STATUS,
                                                       S.ERROR_STAGE, S.ERROR_KIND, S.ERROR_MESSAGE, S.DECODE_SECONDS)}
        source: list[int] = []  # input row of each output row (segment mode fans a video out into windows)
        seg_index: list[int] = []
        seg_count: list[int] = []
        seg_bounds: list[tuple[float, float]] = []
        for i in range(n):
            uri = str(batch[S.URI][i])
            t0 = time.perf_counter()
            stage, kind, message, video = "", "", "", None
            try:
                data = read_bytes(uri, s3=self.s3, max_bytes=self.max_bytes)
            except ObjectTooLarge as exc:
                stage, kind, message = "fetch", "too_large", str(exc)
            except FileNotFoundError as exc:  # deleted between listing and fetch
                stage, kind, message = "fetch", "not_found", str(exc)
            except Exception as exc:
                stage, kind, message = "fetch", "fetch_error", f"{type(exc).__name__}: {exc}"
            else:
                try:
                    video = self.sampler.sample(data, self.num_frames, self.max_pixels, self.segments) \
                        if self.segments else self.sampler.sample(data, self.num_frames, self.max_pixels)
                except DecodeError as exc:
                    stage, kind, message = "decode", exc.kind, str(exc)
                except Exception as exc:
                    stage, kind, message = "decode", "decoder_error", f"{type(exc).__name__}: {exc}"
                finally:
                    del data
            ok = video is not None
            parts = video.split() if ok else [_EMPTY_FRAMES]
            windows = video.windows if ok and video.windows is not None else None
            seconds = (time.perf_counter() - t0) / len(parts)
            for w, part in enumerate(parts):
                source.append(i)
                frames.append(part)
                cols[S.DURATION].append(video.duration if ok else np.nan)
                cols[S.FPS].append(video.fps if ok else np.nan)
                cols[S.NUM_FRAMES].append(len(part) if ok else 0)
                cols[S.SOURCE_FRAMES].append(video.source_frames if ok else 0)
                cols[S.STATUS].append(S.STATUS_OK if ok else S.STATUS_FAILED)
                cols[S.ERROR_STAGE].append(stage)
                cols[S.ERROR_KIND].append(kind)
                cols[S.ERROR_MESSAGE].append(message[:2000])
                cols[S.DECODE_SECONDS].append(seconds)
                seg_index.append(w if ok else -1)
                seg_count.append(len(parts) if ok else 0)
                seg_bounds.append((float(windows[w, 0]), float(windows[w, 1])) if windows is not None
                                  else (np.nan, np.nan))
            if not ok:
                log.warning("failed %s at %s: %s %s", uri, stage, kind, message[:300])
        rows = np.array(source, dtype=np.int64)
        out: Batch = {k: np.asarray(batch[k])[rows] for k in (S.VIDEO_ID, S.URI, S.SIZE, S.ETAG)}
        if self.segments:
            out[S.SEGMENT_INDEX] = np.array(seg_index, np.int32)
            out[S.SEGMENT_COUNT] = np.array(seg_count, np.int32)
            bounds = np.array(seg_bounds, np.float64).reshape(-1, 2)
            out[S.SEGMENT_START], out[S.SEGMENT_END] = bounds[:, 0], bounds[:, 1]
        out[S.FRAMES] = _ragged(frames)
        out[S.DURATION] = np.array(cols[S.DURATION], np.float64)
        out[S.FPS] = np.array(cols[S.FPS], np.float64)
        out[S.NUM_FRAMES] = np.array(cols[S.NUM_FRAMES], np.int32)
        out[S.SOURCE_FRAMES] = np.array(cols[S.SOURCE_FRAMES], np.int64)
        out[S.DECODE_SECONDS] = np.array(cols[S.DECODE_SECONDS], np.float64)
        for k in (S.STATUS, S.ERROR_STAGE, S.ERROR_KIND, S.ERROR_MESSAGE):
            out[k] = _str_col(cols[k])
        return out


def _ragged(arrays: list[np.ndarray]) -> np.ndarray:
    """An object array of per-row ndarrays: Ray Data stores it as a variable-shaped tensor column (not pickled)."""
    out = np.empty(len(arrays), dtype=object)
    for i, a in enumerate(arrays):
        out[i] = a
    return out


class EmbedStage:
    """Load the model once per actor; embed the decoded rows of each batch; pass failed rows through."""

    def __init__(self, *, embedder_factory: Callable[[], Any]) -> None:
        self.embedder = embedder_factory()
        self.dim = int(self.embedder.dim)

    def __call__(self, batch: Batch) -> Batch:
        t0 = time.perf_counter()
        status = np.array(batch[S.STATUS], dtype=object)
        stage = np.array(batch[S.ERROR_STAGE], dtype=object)
        kind = np.array(batch[S.ERROR_KIND], dtype=object)
        message = np.array(batch[S.ERROR_MESSAGE], dtype=object)
        n = len(status)
        emb = np.zeros((n, self.dim), np.float32)
        ok = [i for i in range(n) if status[i] == S.STATUS_OK]
        if ok:
            videos = [np.asarray(batch[S.FRAMES][i], dtype=np.uint8) for i in ok]
            try:
                emb[ok] = self.embedder.embed_videos(videos)
            except Exception as exc:
                # Isolate the culprit: retry one by one so one bad input fails alone, not its batch-mates.
                log.warning("batch of %d failed in embed (%s); retrying one by one", len(ok), exc)
                for i, v in zip(ok, videos, strict=True):
                    try:
                        emb[i] = self.embedder.embed_videos([v])[0]
                    except Exception as one:
                        status[i], stage[i], kind[i] = S.STATUS_FAILED, "embed", "embed_error"
                        message[i] = f"{type(one).__name__}: {one}"[:2000]
        out: Batch = {k: batch[k] for k in (S.VIDEO_ID, S.URI, S.SIZE, S.ETAG, S.DURATION, S.FPS, S.NUM_FRAMES,
                                            S.DECODE_SECONDS, S.SEGMENT_INDEX, S.SEGMENT_COUNT, S.SEGMENT_START,
                                            S.SEGMENT_END) if k in batch}
        out[S.STATUS], out[S.ERROR_STAGE], out[S.ERROR_KIND], out[S.ERROR_MESSAGE] = status, stage, kind, message
        out[S.EMBEDDING] = emb  # [n, dim] float32, unit norm for ok rows, zeros for failed rows
        out[S.EMBED_SECONDS] = np.full(n, (time.perf_counter() - t0) / max(n, 1), np.float64)
        return out
