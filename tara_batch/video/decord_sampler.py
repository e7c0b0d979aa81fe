"""The alternative frame sampler: decord 0.6 on what it was measured to decode exactly, PyAV for the rest.

Same indices, orientation and resize code as PyAV. A PyAV probe classifies bad inputs and reads the rotation first;
rotated files, codecs and containers decord gets wrong, and large inputs go to `PyAVSampler` (see `DecordSampler`).
decord can segfault on truncated MP4s read from memory: `video.isolation` contains that.
"""

from __future__ import annotations

import io
import logging

import numpy as np

from tara_batch.video.frames import DecodedVideo, DecodeError, FrameShaper, assemble_video, plan_frames
from tara_batch.video.heap import HeapTrimmer
from tara_batch.video.pyav_sampler import PyAVSampler, VideoProbe, probe_video

logger = logging.getLogger(__name__)

# What decord 0.6 may decode; everything else goes to the PyAV backend. Both sets are what was measured
# pixel-identical to a full PyAV decode (tests/unit/video/test_decode.py::test_decord_identical_to_pyav). Container names
# are FFmpeg demuxer names as PyAV reports them (`container.format.name`).
DECORD_CODECS = frozenset({"h264", "vp9"})

DECORD_CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})

# decord 0.6 copies in-memory input twice (`bytearray(file.read())`, then into C++ through its FFI): peak RSS is
# about 3x the file size plus decoding (measured: 427 MiB 10-minute 1080p file -> 1,779 MiB peak; PyAV: 527 MiB).
# Larger inputs go to PyAV.
DECORD_MAX_BYTES = 64 * 1024 * 1024


class DecordSampler:
    """Alternative backend: decord 0.6 `VideoReader` on the bytes, frames fetched one at a time.

    Same indices, same orientation and resize code as PyAV. decord only sees what it was measured to get right:
    unrotated H.264 or VP9 in MP4/MOV or Matroska/WebM (all GOP lengths tested, constant and variable frame rate),
    where it is pixel-identical to PyAV. Everything else is handed to the PyAV backend inside this class (identical
    results by construction), after a PyAV probe that also classifies bad inputs and reads the rotation:
    * Rotated files: decord applies the display matrix itself but returns a wrongly shaped buffer (stored 48x64 ->
      a 4-channel 64x48 array, or a size-check error in get_batch).
    * HEVC (x265's default open GOP with B-frames), MPEG-4 Part 2 AVI with B-frames and MPEG-TS: decord returns
      wrong frames after seeks (MPEG-TS: off by several frames even when read sequentially).
    * AV1: decord 0.6 cannot open it at all; PyAV decodes it.
    * Inputs over `max_bytes` (default 64 MiB): decord holds three copies of in-memory input (see DECORD_MAX_BYTES)
      and more than twice PyAV's working memory on 4K frames (peak 446 vs 212 MiB, 10 s 4K clip).
    * Truncated fast-start MP4 from memory: decord can SIGSEGV the whole process (deterministic on a 720p clip cut
      to 10-30% of its bytes). The PyAV probe rejects files whose index points past the end of the bytes, which
      covers the known case; `tara_batch.video.isolation.IsolatedSampler` contains the crashes nobody anticipated.
      `precheck=False` turns that check off: only for tests that must show the real crash being contained.
    Still wrong and not detected: open-GOP H.264 in MP4 (one wrong frame after a seek; telling open from closed
    GOPs would take a packet scan). Use the default PyAV backend where exactness matters.
    Fetching frames one by one costs the same as one get_batch call (measured: 16 frames of 720p, ~0.85 s either
    way) and keeps a single full-resolution frame alive instead of T.
    """

    name = "decord"

    def __init__(
        self,
        threads: int = 1,
        *,
        max_source_pixels: int | None = None,
        precheck: bool = True,
        max_bytes: int | None = DECORD_MAX_BYTES,
        allow_stills: bool = False,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        import decord  # imported lazily: loads a native library that PyAV-only workers never need

        self._decord = decord
        self.threads = threads
        self.max_source_pixels = max_source_pixels
        self.precheck = precheck
        self.max_bytes = max_bytes
        self._pyav = PyAVSampler(threads, max_source_pixels=max_source_pixels, allow_stills=allow_stills)
        self._trimmer = HeapTrimmer()

    def pyav_reason(self, probe: VideoProbe, size: int = 0) -> str | None:
        """Why this file goes to the PyAV backend instead of decord (None: decord decodes it)."""
        if self.max_bytes is not None and size > self.max_bytes:
            return f"{size} bytes > {self.max_bytes}"
        if probe.quarter_turns:
            return f"rotated ({90 * probe.quarter_turns} deg)"
        if probe.codec not in DECORD_CODECS:
            return f"codec {probe.codec}"
        if probe.container not in DECORD_CONTAINERS:
            return f"container {probe.container}"
        return None

    def sample(self, data: bytes, num_frames: int, max_pixels: int,
               segments: tuple[float, float] | None = None, windows: tuple[int, int] | None = None) -> DecodedVideo:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        probe = probe_video(data, self.max_source_pixels, precheck=self.precheck)
        reason = self.pyav_reason(probe, len(data))
        if reason is not None:
            logger.debug("decoding with PyAV, not decord: %s", reason)
            return self._pyav.sample(data, num_frames, max_pixels, segments, windows)
        shaper = FrameShaper(max_pixels)
        self._trimmer.before()
        try:
            reader = self._decord.VideoReader(io.BytesIO(data), num_threads=self.threads)
            total = len(reader)
            if total == 0:
                raise DecodeError("corrupt", "video stream has no frames")
            plan = plan_frames(total, probe.fps, num_frames, segments, windows)
            wanted = np.unique(np.concatenate(plan.groups)).tolist() if plan.groups else []
            frames_at = {i: shaper(reader.get_batch([i]).asnumpy()[0], 0) for i in wanted}
            del reader
        except DecodeError:
            raise
        except (self._decord.DECORDError, RuntimeError, ValueError, IndexError, OSError) as error:
            message = f"decord: {type(error).__name__}: {str(error).strip()[-300:]}"
            if "cannot find video stream" in str(error):
                # PyAV found a video stream, so decord failing to see one means its bundled FFmpeg lacks the codec.
                raise DecodeError("unsupported_codec", f"decord cannot decode {probe.codec}: {message}") from error
            raise DecodeError("corrupt", message) from error
        finally:
            self._trimmer.after()  # decord's threads fragment the heap: see HeapTrimmer
        return assemble_video(frames_at, plan, total, probe.fps, probe.duration)
