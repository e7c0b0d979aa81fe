"""Frame sampling: encoded video bytes -> the n uniformly spaced RGB frames TARA embeds.

What: `get_sampler("pyav" | "decord").sample(data, num_frames, max_pixels)` returns a `DecodedVideo` holding
`num_frames` frames (all frames when the video is shorter) picked with TARA's uniform rule (first and last frame
always included), turned to display orientation and shrunk to at most `max_pixels` pixels each, aspect kept.
Bad inputs raise `DecodeError` with a machine-readable `.kind`; no raw PyAV or decord exception escapes `sample`.

Why this way:
* Memory stays bounded by the input bytes, the decoder's reference frames, one full-resolution frame and the small
  resized outputs: videos arrive as bytes from object storage, are read through `io.BytesIO` (never temp files),
  and are never fully decoded into memory. Measured peak over the interpreter's baseline (benchmarks/memory.py):
  PyAV, 8 frames: input + ~20 MiB at 360p, + ~50 MiB at 1080p (10-minute clip: 527 MiB for a 427 MiB file),
  + ~140 MiB at 4K. The demux-only packet pass keeps ~40 bytes per packet.
* PyAV (default backend) seeks to the keyframe before each wanted frame and decodes forward. Frames are identified
  by presentation timestamp (pts), taken from a demux-only pass over the packets, so the result equals a full
  decode on constant *and* variable frame rate files (see `PyAVSampler`).
* decord is kept as the alternative backend; on H.264/VP9 in MP4/WebM it returns the same pixels through the
  same resize, but it mishandles rotated files, returns wrong frames after some seeks (open GOP, HEVC, MPEG-4 AVI
  with B-frames, MPEG-TS) and can segfault on truncated MP4s read from memory. `DecordSampler` hands what decord
  gets wrong to PyAV; `tara_batch.isolation` runs either backend in a child process that may crash.
* Frame duplication for Qwen2-VL's temporal patch is *not* done here: the model backend owns it.

How to run (library module, no entry point):
    from tara_batch.decode import get_sampler
    video = get_sampler("pyav").sample(open("clip.mp4", "rb").read(), num_frames=8, max_pixels=460_800)
    video.frames.shape  # (8, h, w, 3) uint8, h * w <= 460_800
"""

from __future__ import annotations

import ctypes
import functools
import io
import itertools
import logging
import math
import os
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import av
import av.error
import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

SAMPLERS = ("pyav", "decord")

# Machine-readable failure classes; they land in the failures table, so keep them short and stable.
DECODE_ERROR_KINDS = ("empty", "no_video_stream", "corrupt", "unsupported_codec", "too_large", "decoder_crash",
                      "no_frame_rate")


class DecodeError(Exception):
    """Bad input video. `.kind` is a short machine-readable class: one of
    'empty' (zero bytes), 'no_video_stream' (e.g. audio-only), 'corrupt' (truncated/garbage/undecodable),
    'unsupported_codec', 'too_large' (over a limit), 'decoder_crash' (reserved for crash containment),
    'no_frame_rate' (segment mode needs one to place windows in seconds)."""

    def __init__(self, kind: str, message: str) -> None:
        if kind not in DECODE_ERROR_KINDS:
            raise ValueError(f"unknown DecodeError kind {kind!r}; expected one of {DECODE_ERROR_KINDS}")
        # Both values go to Exception.args so the error survives pickling (Ray ships exceptions between processes).
        super().__init__(kind, message)
        self.kind = kind
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


@dataclass(frozen=True)
class DecodedVideo:
    frames: np.ndarray  # uint8 [T, H, W, 3], RGB, rotation applied, resized
    indices: np.ndarray  # int64 [T] source frame indices sampled (display order)
    source_frames: int  # number of frames in the stream
    fps: float  # average fps, nan if unknown
    duration: float  # seconds, nan if unknown
    # Segment mode only (`segments=(length_s, stride_s)`): window w covers [windows[w, 0], windows[w, 1]) seconds and
    # owns `window_frames[w]` consecutive frames of `frames` (windows in time order). None for whole-video sampling.
    windows: np.ndarray | None = None  # float64 [W, 2]
    window_frames: np.ndarray | None = None  # int64 [W]

    def split(self) -> list[np.ndarray]:
        """Frames per window (segment mode) or [frames] (whole video)."""
        if self.window_frames is None:
            return [self.frames]
        return np.split(self.frames, np.cumsum(self.window_frames)[:-1])


@runtime_checkable
class FrameSampler(Protocol):
    name: str

    def sample(self, data: bytes, num_frames: int, max_pixels: int,
               segments: tuple[float, float] | None = None) -> DecodedVideo: ...


# ---------------------------------------------------------------------------------------------------------------
# Pure helpers shared by both backends (identical code path => identical pixels).


def sample_indices(num_total: int, num_wanted: int) -> np.ndarray:
    """TARA's uniform sampling: idx_i = round(i*(N-1)/(n-1)) for i in 0..n-1, always including 0 and N-1.

    All frames (0..N-1) when N <= n; [0] when n == 1; empty when N == 0. `round` is round-half-up,
    floor(x + 0.5), not Python's half-to-even (e.g. N=6, n=3 gives [0, 3, 5], not [0, 2, 5]); computed in
    integers so no float error can flip a half. Indices are strictly increasing whenever N > n.
    """
    if num_wanted < 1:
        raise ValueError(f"num_wanted must be >= 1, got {num_wanted}")
    if num_total < 0:
        raise ValueError(f"num_total must be >= 0, got {num_total}")
    if num_total <= num_wanted:
        return np.arange(num_total, dtype=np.int64)
    if num_wanted == 1:
        return np.zeros(1, dtype=np.int64)
    i = np.arange(num_wanted, dtype=np.int64)
    # floor(i*(N-1)/(n-1) + 1/2) == floor((2*i*(N-1) + (n-1)) / (2*(n-1))), exact in int64.
    return (2 * i * (num_total - 1) + (num_wanted - 1)) // (2 * (num_wanted - 1))


def segment_windows(duration: float, length: float, stride: float) -> np.ndarray:
    """Sliding windows over [0, duration): starts 0, stride, 2*stride, ... while the window ends inside the video,
    plus one last window [duration - length, duration] when the stride does not land on the end, so every window has
    the same length and the whole video is covered. A video shorter than `length` is one window [0, duration].
    Returns float64 [W, 2] (start, end) seconds."""
    if not (length > 0 and stride > 0):
        raise ValueError(f"segment length and stride must be > 0, got {length}, {stride}")
    if not (duration > 0 and math.isfinite(duration)):
        raise ValueError(f"duration must be a positive number of seconds, got {duration}")
    if duration <= length:
        return np.array([[0.0, duration]])
    eps = 1e-9 * max(1.0, duration)
    starts = np.arange(0.0, duration - length + eps, stride)
    if starts[-1] + length < duration - eps:
        starts = np.append(starts, duration - length)
    return np.stack([starts, np.minimum(starts + length, duration)], axis=1)


# Segment mode holds every window's frames of one video at once (windows x num_frames small frames). Past this many
# windows a video fails as `too_large` instead of exhausting the actor's memory: 256 windows x 8 frames at the
# profile's 460,800-pixel cap is ~2.8 GB; a 2-hour video needs a stride of >= 30 s to fit.
MAX_WINDOWS = 256


def plan_frames(total: int, fps: float, num_frames: int,
                segments: tuple[float, float] | None) -> tuple[list[np.ndarray], np.ndarray | None]:
    """Source frame indices to sample, one array per window (a single window = the whole video without segments).

    Segment mode places windows in seconds with frame i at time i / fps (the frame-index timeline PyAV and decord
    both count), so a window [s, e) holds frames ceil(s * fps) .. ceil(e * fps) - 1 and is sampled with TARA's
    uniform rule inside it, exactly as a clip cut at those frames would be."""
    if segments is None:
        return [sample_indices(total, num_frames)], None
    if not (fps > 0 and math.isfinite(fps)):
        raise DecodeError("no_frame_rate", "segment mode needs the stream's frame rate, and this video has none")
    windows = segment_windows(total / fps, *segments)
    if len(windows) > MAX_WINDOWS:
        raise DecodeError("too_large", f"{len(windows)} windows of {segments[0]:g} s every {segments[1]:g} s over "
                          f"{total / fps:.0f} s: more than {MAX_WINDOWS} (all are held in memory at once); use a "
                          "longer decode.segment_stride_s for videos this long")
    groups = []
    for start, end in windows:
        first = min(total - 1, math.ceil(start * fps - 1e-6))
        stop = max(first + 1, min(total, math.ceil(end * fps - 1e-6)))
        groups.append(first + sample_indices(stop - first, num_frames))
    return groups, windows


def _assemble(frames_at: dict[int, np.ndarray], groups: list[np.ndarray], windows: np.ndarray | None, total: int,
              fps: float, duration: float) -> DecodedVideo:
    # Overlapping windows share source frames: each is decoded once and copied into every window that uses it.
    indices = np.concatenate(groups)
    frames = _stack([frames_at[int(i)] for i in indices])
    if windows is None:
        return DecodedVideo(frames, indices, total, fps, duration)
    counts = np.array([len(g) for g in groups], dtype=np.int64)
    return DecodedVideo(frames, indices, total, fps, duration, windows, counts)


def fit_max_pixels(height: int, width: int, max_pixels: int) -> tuple[int, int]:
    """(h, w) with h*w <= max_pixels, aspect ratio kept (up to rounding down), no crop or pad.

    Unchanged if already under the cap; each side is at least 1 (an extreme aspect ratio then keeps the short side
    at 1 and trims the long side to the cap). Symmetric: fit(H, W) == fit(W, H)[::-1], so rotating before or after
    choosing the size gives the same shape.
    """
    if height < 1 or width < 1:
        raise ValueError(f"frame size must be positive, got {height}x{width}")
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    if height * width <= max_pixels:
        return height, width
    scale = math.sqrt(max_pixels / (height * width))
    h = max(1, math.floor(height * scale))
    w = max(1, math.floor(width * scale))
    # Floor of both sides is under the cap up to float error; trim the longer side until it really is.
    while h * w > max_pixels:
        if h > w or (h == w and h > 1):
            h = max(1, min(h - 1, max_pixels // w))
        else:
            w = max(1, min(w - 1, max_pixels // h))
    return h, w


def resize_frame(frame: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize one uint8 RGB frame [H, W, 3] to [height, width, 3] with PIL bicubic (no-op at the same size)."""
    if frame.shape[0] == height and frame.shape[1] == width:
        return np.ascontiguousarray(frame)
    image = Image.fromarray(np.ascontiguousarray(frame))  # uint8 [H, W, 3] is inferred as RGB
    return np.asarray(image.resize((width, height), resample=Image.Resampling.BICUBIC))


def rotation_to_quarter_turns(degrees: float) -> int:
    """Counter-clockwise display rotation in degrees -> number of np.rot90 quarter turns (0..3).

    FFmpeg's display matrix (read by PyAV as `VideoFrame.rotation`) gives the angle by which the stored frame must
    be rotated counter-clockwise to be displayed; np.rot90(frame, k) turns counter-clockwise too. Angles that are
    not multiples of 90 are rounded to the nearest one (like ffmpeg's autorotate, which only handles quarter turns).
    Flips in the matrix (mirrored orientations, very rare in video) are ignored.
    """
    if not math.isfinite(degrees):
        return 0
    k = round(degrees / 90.0)
    if abs(degrees - 90.0 * k) > 1e-3:
        logger.warning("display rotation %.3f deg is not a multiple of 90; using %d deg", degrees, 90 * k)
    return k % 4


class _FrameShaper:
    """Orientation + resize for the frames of one video; one instance per `sample` call.

    The target size is fixed by the first sampled frame (display orientation) so that all frames stack even if the
    stream changes resolution midway (rare; such frames are resized to the first frame's size).
    """

    def __init__(self, max_pixels: int) -> None:
        if max_pixels < 1:
            raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
        self.max_pixels = max_pixels
        self.size: tuple[int, int] | None = None

    def __call__(self, frame: np.ndarray, quarter_turns: int) -> np.ndarray:
        # frame: uint8 [H, W, 3] in stored orientation, full resolution -> uint8 [h, w, 3] display orientation.
        if quarter_turns:
            # rot90 is a view; resize_frame copies it once, so still only one full-resolution frame is alive.
            frame = np.rot90(frame, quarter_turns)
        if self.size is None:
            self.size = fit_max_pixels(frame.shape[0], frame.shape[1], self.max_pixels)
        return resize_frame(frame, *self.size)


def _stack(frames: list[np.ndarray]) -> np.ndarray:
    return np.stack(frames).astype(np.uint8, copy=False)  # [T, h, w, 3]


@functools.cache
def _malloc_trim() -> Any:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim  # glibc only
    except (OSError, AttributeError):
        return None


_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm", "rb") as statm:  # Linux: size resident shared ... (pages)
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


class HeapTrimmer:
    """Gives freed C heap back to the OS (glibc `malloc_trim(0)`) after a video that left much of it behind, and
    every `every` videos; a no-op without glibc. Use `before()` / `after()` around each video.

    Why: decord decodes on its own threads, and glibc keeps what those threads free in per-thread arenas. In one
    process RSS drifted up by ~60 KiB per video (73 -> 166 MiB over 1,500 small clips) although nothing leaks: one
    malloc_trim brought it back to 66 MiB. A 4K decode leaves hundreds of MiB behind the same way. Not after every
    video: trimming costs ~0.3 ms, but the next video then page-faults its working set back in (measured +20-40 ms
    per 720p clip when trimming every time).
    """

    def __init__(self, slack_bytes: int = 64 * 1024 * 1024, every: int = 100) -> None:
        self.slack_bytes = slack_bytes
        self.every = every
        self.videos = 0
        self.trims = 0
        self._start = 0

    def before(self) -> None:
        self._start = _resident_bytes()

    def after(self) -> None:
        self.videos += 1
        trim = _malloc_trim()
        if trim is None:
            return
        # Inputs alive at before() and freed by now only lower the difference: it measures what the video left.
        if _resident_bytes() - self._start > self.slack_bytes or self.videos % self.every == 0:
            trim(0)
            self.trims += 1


# ---------------------------------------------------------------------------------------------------------------
# PyAV plumbing shared by both backends (the decord backend probes with PyAV before handing bytes to decord).


def _av_error_kind(error: BaseException) -> str:
    if isinstance(error, (av.error.DecoderNotFoundError, av.error.PatchWelcomeError)):
        return "unsupported_codec"
    return "corrupt"


def _open_container(data: bytes) -> Any:
    """av.open on in-memory bytes; maps 'nothing there' and 'not a media file' to DecodeError."""
    if len(data) == 0:
        raise DecodeError("empty", "zero bytes")
    try:
        return av.open(io.BytesIO(data), mode="r")
    except av.error.FFmpegError as error:
        raise DecodeError(_av_error_kind(error), f"cannot open container: {error}") from error


def _video_stream(container: Any, max_source_pixels: int | None) -> Any:
    # Checked first: indexing streams.video[0] on an audio-only file raises a bare IndexError.
    if not container.streams:
        # Seen on MP4s cut inside the header: the demuxer opens but finds no track at all. That is damage, not an
        # audio-only file.
        raise DecodeError("corrupt", "container has no streams (truncated header?)")
    if not container.streams.video:
        kinds = sorted({stream.type for stream in container.streams})
        raise DecodeError("no_video_stream", f"container has no video stream (streams: {', '.join(kinds)})")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise DecodeError("unsupported_codec", f"no decoder for codec id of stream {stream.index}")
    width, height = stream.codec_context.width, stream.codec_context.height
    if max_source_pixels is not None and width * height > max_source_pixels:
        raise DecodeError(
            "too_large", f"{width}x{height} = {width * height} pixels per frame exceeds {max_source_pixels}"
        )
    return stream


def _stream_fps_duration(container: Any, stream: Any) -> tuple[float, float]:
    fps = float(stream.average_rate) if stream.average_rate else math.nan
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base  # container.duration is in AV_TIME_BASE (microseconds)
    else:
        duration = math.nan
    return fps, duration


def _check_index_within_data(stream: Any, size: int) -> None:
    """A container index that points past the end of the bytes means a truncated file.

    Cheap (no demuxing) and catches truncated fast-start MP4s before anything decodes them; this matters most for
    decord, which segfaults on exactly those files when reading from memory.
    """
    for entry in stream.index_entries:
        if entry.pos >= 0 and entry.pos + entry.size > size:
            raise DecodeError(
                "corrupt", f"truncated: index entry at byte {entry.pos} (+{entry.size}) is past the end ({size} bytes)"
            )


def _configure_threads(stream: Any, threads: int) -> None:
    # PyAV's default thread_count is 0 = one thread per core; on shared workers we want exactly `threads`
    # (one single-threaded decoder per core measured ~28% more throughput than decoder threads).
    stream.codec_context.thread_count = threads
    stream.codec_context.thread_type = "AUTO" if threads > 1 else "NONE"


# ---------------------------------------------------------------------------------------------------------------
# PyAV backend.


_NO_DTS = np.iinfo(np.int64).min  # stands for a packet without dts in _PacketTable.dts


@dataclass(frozen=True)
class _PacketTable:
    """What a demux-only pass learns about the video stream (no decoding).

    Packets are in decode order (position p); frames are the packets the decoder shows, ranked by pts (display
    index i). One packet = one shown frame holds for the codecs and containers we target (H.264/HEVC/AV1/VP9 in
    MP4/MKV/WebM); packets flagged `discard` (outside an MP4 edit list) are decoded as references but not shown.
    Numpy arrays, not Python lists and dicts: about 30 bytes per packet instead of about 190 (a 2-hour 60 fps
    video has 432,000 packets: ~12 MiB instead of ~80 MiB).
    """

    pts: np.ndarray  # int64 [P] pts per packet, decode order (unique)
    dts: np.ndarray  # int64 [P], _NO_DTS where the packet has none
    keyframe_positions: np.ndarray  # int64 [K] sorted decode positions of keyframe packets
    display_pts: np.ndarray  # int64 [N] sorted pts of shown frames; display index i <-> display_pts[i]
    sorted_pts: np.ndarray  # int64 [P] pts sorted, for lookups
    order: np.ndarray  # int64 [P] decode position of sorted_pts[j]

    def position(self, pts: int) -> int | None:
        """Decode position of the packet with this pts, None if no packet has it."""
        j = int(np.searchsorted(self.sorted_pts, pts))
        if j < len(self.sorted_pts) and self.sorted_pts[j] == pts:
            return int(self.order[j])
        return None

    def timestamps(self, position: int) -> list[int]:
        """[pts, dts] of one packet as Python ints (dts left out when missing)."""
        values = [int(self.pts[position]), int(self.dts[position])]
        return [v for v in values if v != _NO_DTS]


class _NeedSequential(Exception):
    """Timestamps cannot identify frames (missing or duplicate pts): fall back to counting decoded frames."""


def _scan_packets(container: Any, stream: Any) -> _PacketTable:
    # array('q') while scanning: 8 bytes per value, where a list of Python ints costs ~36.
    pts, dts, keyframes, shown = array("q"), array("q"), array("q"), array("q")
    missing_pts = False
    for packet in container.demux(stream):
        if packet.size == 0 and packet.pts is None:
            continue  # PyAV's end-of-stream flush packet
        if packet.is_corrupt:
            # The demuxer flags a packet it could only read partly: the bytes end inside the stream.
            raise DecodeError("corrupt", f"truncated or damaged packet at pts {packet.pts}")
        packet_pts = packet.pts
        if packet_pts is None:
            missing_pts = True
            continue
        if not packet.is_discard:
            shown.append(packet_pts)
        if packet.is_keyframe:
            keyframes.append(len(pts))
        packet_dts = packet.dts
        pts.append(packet_pts)
        dts.append(_NO_DTS if packet_dts is None else packet_dts)
    pts_array = np.frombuffer(pts, dtype=np.int64) if len(pts) else np.zeros(0, np.int64)
    order = np.argsort(pts_array, kind="stable")
    sorted_pts = pts_array[order]
    if missing_pts or bool(np.any(sorted_pts[1:] == sorted_pts[:-1])):
        raise _NeedSequential("packets without pts or with duplicate pts")
    return _PacketTable(
        pts=pts_array,
        dts=np.frombuffer(dts, dtype=np.int64) if len(dts) else np.zeros(0, np.int64),
        keyframe_positions=np.array(keyframes, dtype=np.int64),
        display_pts=np.sort(np.array(shown, dtype=np.int64)),
        sorted_pts=sorted_pts,
        order=order.astype(np.int64, copy=False),
    )


class _SeekingCursor:
    """Yields the frames at increasing display indices, seeking only when that skips work.

    For display frame i with pts T (packet at decode position p), decoding starts at keyframe K: the last keyframe
    packet at or before p whose own pts is <= T. The pts condition matters for open GOPs, whose leading B-frames
    follow the recovery-point I-frame in decode order but precede it in display and reference the previous GOP.
    If K lies at or before the last packet already fed to the decoder, we keep decoding forward instead of seeking.
    After a seek the landing packet is checked (demuxers differ on pts vs dts seeking); if it landed after K we
    retry with earlier timestamps. The first decoded frame with pts == T is taken; frames before it are decoded
    (they are references) but never converted to RGB.
    """

    def __init__(self, container: Any, stream: Any, table: _PacketTable) -> None:
        self.container = container
        self.stream = stream
        self.table = table
        self.frames: Iterator[Any] | None = None
        self.fed = -1  # decode position of the last packet sent to the decoder

    def _start_position(self, target_pts: int) -> int:
        table = self.table
        p = table.position(target_pts)
        assert p is not None  # target_pts comes from the table
        k = int(np.searchsorted(table.keyframe_positions, p, side="right")) - 1
        while k >= 0 and table.pts[table.keyframe_positions[k]] > target_pts:
            k -= 1
        return int(table.keyframe_positions[k]) if k >= 0 else 0

    def _decode(self, packets: Iterator[Any]) -> Iterator[Any]:
        for packet in packets:
            if packet.pts is not None:
                position = self.table.position(packet.pts)
                if position is not None:
                    self.fed = max(self.fed, position)
            yield from packet.decode()

    def _seek(self, start: int) -> None:
        table = self.table
        # The keyframe's pts, then its dts (demuxers index by one or the other), then the very first timestamp.
        first_timestamp = min(table.timestamps(0))
        candidates = dict.fromkeys([*table.timestamps(start), first_timestamp])
        for timestamp in candidates:
            self.container.seek(timestamp, stream=self.stream, backward=True, any_frame=False)
            packets = self.container.demux(self.stream)
            first = next((packet for packet in packets if packet.pts is not None), None)
            landing = table.position(first.pts) if first is not None else None
            if landing is not None and landing <= start:
                self.fed = landing - 1
                self.frames = self._decode(itertools.chain([first], packets))
                return
            logger.debug("seek to %s landed at position %s, wanted <= %s; retrying", timestamp, landing, start)
        raise DecodeError("corrupt", f"cannot seek to the keyframe at decode position {start}")

    def close(self) -> None:
        """Break the cursor <-> generator reference cycle. Without this the container, its BytesIO and so the input
        bytes (hundreds of MB for a long video) stay alive after `sample` returns, until Python's cyclic garbage
        collector happens to run: two inputs in memory at once in a decode actor."""
        if self.frames is not None:
            self.frames.close()  # type: ignore[attr-defined]
            self.frames = None

    def frame_at(self, index: int) -> Any:
        target = int(self.table.display_pts[index])
        start = self._start_position(target)
        if self.frames is None or start > self.fed + 1:
            self._seek(start)
        assert self.frames is not None
        for frame in self.frames:
            if frame.pts is None:
                raise _NeedSequential("decoded frame without pts")
            if frame.pts < target:
                continue
            if frame.pts > target:
                # The decoder dropped frame `index` (damaged data): take the next shown frame rather than fail.
                logger.warning("frame %d (pts %d) not produced by the decoder; using pts %d", index, target, frame.pts)
            return frame
        raise DecodeError("corrupt", f"stream ended before frame {index} (pts {target})")


class PyAVSampler:
    """Default backend: PyAV with exact keyframe seeks, one decoder thread by default.

    Frame index = rank of the frame's pts among the shown packets, found by a demux-only pass (cheap: packets are
    read, not decoded). On constant frame rate files this equals both the decode-order index and round(t * fps);
    on variable frame rate files it is still the decode-order index (what a full decode would count and what decord
    uses), *not* a time-based position: uniform sampling is then uniform in frames, not in seconds. Files whose
    packets lack timestamps fall back to decoding from the start and counting frames (exact, slower).
    """

    name = "pyav"

    def __init__(self, threads: int = 1, *, max_source_pixels: int | None = None) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.threads = threads
        self.max_source_pixels = max_source_pixels

    def sample(self, data: bytes, num_frames: int, max_pixels: int,
               segments: tuple[float, float] | None = None) -> DecodedVideo:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        shaper = _FrameShaper(max_pixels)
        try:
            try:
                return self._sample_seeking(data, num_frames, shaper, segments)
            except _NeedSequential as reason:
                # str(): a log handler that keeps records (pytest, memory handlers) must not keep the traceback,
                # whose frames hold the input bytes.
                logger.info("frame timestamps unusable (%s); decoding sequentially", str(reason))
                return self._sample_sequential(data, num_frames, _FrameShaper(max_pixels), segments)
        except DecodeError:
            raise
        except av.error.FFmpegError as error:
            raise DecodeError(_av_error_kind(error), f"{type(error).__name__}: {error}") from error
        except (EOFError, ValueError, IndexError, RuntimeError, OSError) as error:
            # PyAV surfaces some demux/decoder failures as plain Python errors; they are input problems here.
            raise DecodeError("corrupt", f"{type(error).__name__}: {error}") from error

    def _sample_seeking(self, data: bytes, num_frames: int, shaper: _FrameShaper,
                        segments: tuple[float, float] | None) -> DecodedVideo:
        with _open_container(data) as container:
            stream = _video_stream(container, self.max_source_pixels)
            _check_index_within_data(stream, len(data))
            fps, duration = _stream_fps_duration(container, stream)
            table = _scan_packets(container, stream)
            total = len(table.display_pts)
            if total == 0:
                raise DecodeError("corrupt", "video stream has no frames")
            groups, windows = plan_frames(total, fps, num_frames, segments)
            _configure_threads(stream, self.threads)
            cursor = _SeekingCursor(container, stream, table)
            try:
                frames_at = {}
                for index in np.unique(np.concatenate(groups)).tolist():  # increasing: the cursor decodes forward
                    frame = cursor.frame_at(index)
                    frames_at[index] = shaper(frame.to_ndarray(format="rgb24"),
                                              rotation_to_quarter_turns(frame.rotation))
                return _assemble(frames_at, groups, windows, total, fps, duration)
            finally:
                cursor.close()

    def _sample_sequential(self, data: bytes, num_frames: int, shaper: _FrameShaper,
                           segments: tuple[float, float] | None) -> DecodedVideo:
        # Pass 1 counts frames by decoding (no RGB conversion); pass 2 keeps the wanted ones. Only for files whose
        # packets carry no usable timestamps, where neither seeking nor a packet count can be trusted.
        with _open_container(data) as container:
            stream = _video_stream(container, self.max_source_pixels)
            _configure_threads(stream, self.threads)
            total = sum(1 for _ in container.decode(stream))
        if total == 0:
            raise DecodeError("corrupt", "video stream has no decodable frames")
        with _open_container(data) as container:
            stream = _video_stream(container, self.max_source_pixels)
            fps, duration = _stream_fps_duration(container, stream)
            groups, windows = plan_frames(total, fps, num_frames, segments)
            wanted = set(np.concatenate(groups).tolist())
            _configure_threads(stream, self.threads)
            frames_at = {}
            for position, frame in enumerate(container.decode(stream)):
                if position in wanted:
                    frames_at[position] = shaper(frame.to_ndarray(format="rgb24"),
                                                 rotation_to_quarter_turns(frame.rotation))
                    if len(frames_at) == len(wanted):
                        break
        if len(frames_at) != len(wanted):
            raise DecodeError("corrupt", f"second decode pass produced {len(frames_at)} of {len(wanted)} frames")
        return _assemble(frames_at, groups, windows, total, fps, duration)


# ---------------------------------------------------------------------------------------------------------------
# decord backend.


@dataclass(frozen=True)
class _Probe:
    codec: str
    container: str
    quarter_turns: int
    fps: float
    duration: float


def _probe(data: bytes, max_source_pixels: int | None, *, precheck: bool = True) -> _Probe:
    """PyAV look at the bytes before decord sees them: classify bad inputs and read the display rotation.

    decord 0.6 reports bad inputs with unspecific errors (or crashes), and PyAV 18 exposes the display matrix only
    on decoded frames (`VideoFrame.rotation`), so this decodes the first frame: one frame, a few ms even at 1080p.
    `precheck=False` skips the truncation check (tests only: it lets decord see the file that crashes it).
    """
    try:
        with _open_container(data) as container:
            stream = _video_stream(container, max_source_pixels)
            if precheck:
                _check_index_within_data(stream, len(data))
            fps, duration = _stream_fps_duration(container, stream)
            # canonical_name is the codec ("av1"), codec_context.name the decoder ("libdav1d").
            codec = stream.codec.canonical_name
            stream.codec_context.thread_count = 1
            first = next(iter(container.decode(stream)), None)
            if first is None:
                raise DecodeError("corrupt", "video stream has no decodable frames")
            return _Probe(codec, container.format.name, rotation_to_quarter_turns(first.rotation), fps, duration)
    except DecodeError:
        raise
    except av.error.FFmpegError as error:
        raise DecodeError(_av_error_kind(error), f"{type(error).__name__}: {error}") from error
    except (EOFError, ValueError, IndexError, RuntimeError, OSError) as error:
        raise DecodeError("corrupt", f"{type(error).__name__}: {error}") from error


# What decord 0.6 may decode; everything else goes to the PyAV backend. Both sets are what was measured
# pixel-identical to a full PyAV decode (tests/unit/test_decode.py::test_decord_identical_to_pyav). Container names
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
      covers the known case; `tara_batch.isolation.IsolatedSampler` contains the crashes nobody anticipated.
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
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        import decord  # imported lazily: loads a native library that PyAV-only workers never need

        self._decord = decord
        self.threads = threads
        self.max_source_pixels = max_source_pixels
        self.precheck = precheck
        self.max_bytes = max_bytes
        self._pyav = PyAVSampler(threads, max_source_pixels=max_source_pixels)
        self._trimmer = HeapTrimmer()

    def pyav_reason(self, probe: _Probe, size: int = 0) -> str | None:
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
               segments: tuple[float, float] | None = None) -> DecodedVideo:
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        probe = _probe(data, self.max_source_pixels, precheck=self.precheck)
        reason = self.pyav_reason(probe, len(data))
        if reason is not None:
            logger.debug("decoding with PyAV, not decord: %s", reason)
            return self._pyav.sample(data, num_frames, max_pixels, segments)
        shaper = _FrameShaper(max_pixels)
        self._trimmer.before()
        try:
            reader = self._decord.VideoReader(io.BytesIO(data), num_threads=self.threads)
            total = len(reader)
            if total == 0:
                raise DecodeError("corrupt", "video stream has no frames")
            groups, windows = plan_frames(total, probe.fps, num_frames, segments)
            frames_at = {i: shaper(reader.get_batch([i]).asnumpy()[0], 0)
                         for i in np.unique(np.concatenate(groups)).tolist()}
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
        return _assemble(frames_at, groups, windows, total, probe.fps, probe.duration)


def get_sampler(
    name: str,
    threads: int = 1,
    *,
    max_source_pixels: int | None = None,
    isolate: bool = False,
    timeout_s: float = 120.0,
) -> FrameSampler:
    """Backend by name: 'pyav' (default, exact, robust) or 'decord'.

    `isolate=True` runs the backend in a long-lived child process (`tara_batch.isolation.IsolatedSampler`): a
    decoder crash or a video taking longer than `timeout_s` then fails that one video with
    DecodeError('decoder_crash') instead of killing the caller. `timeout_s` is ignored without `isolate`.
    """
    if name not in SAMPLERS:
        raise ValueError(f"unknown frame sampler {name!r}; valid choices: {', '.join(SAMPLERS)}")
    if isolate:
        from tara_batch.isolation import IsolatedSampler  # isolation imports this module

        return IsolatedSampler(name, threads, timeout_s=timeout_s, max_source_pixels=max_source_pixels)
    if name == "pyav":
        return PyAVSampler(threads, max_source_pixels=max_source_pixels)
    return DecordSampler(threads, max_source_pixels=max_source_pixels)
