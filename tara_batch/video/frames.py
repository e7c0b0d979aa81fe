"""What every frame sampler shares: TARA's uniform frame rule, segment windows, the resize under a pixel cap, the
display rotation, and the result and error types. Pure numpy + Pillow, no decoder.

* `sample_indices(N, n)`: idx_i = round(i*(N-1)/(n-1)), first and last frame always included (tara-method.md 2).
* `segment_windows` / `plan_frames`: sliding windows in seconds (segment mode), each sampled with the same rule.
* `fit_max_pixels` / `resize_frame`: aspect kept, no crop or pad, at most `max_pixels` pixels (PIL bicubic).
* `DecodedVideo`, `DecodeError` (with a machine-readable `.kind`), and the `FrameSampler` protocol.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
from PIL import Image

logger = logging.getLogger(__name__)

# The frame-sampler backends, by the names configs use (`decode.backend`); `video.registry` builds them.
SAMPLERS = ("pyav", "decord")

# Machine-readable failure classes; they land in the failures table, so keep them short and stable.
DECODE_ERROR_KINDS = ("empty", "no_video_stream", "corrupt", "unsupported_codec", "too_large", "decoder_crash",
                      "no_frame_rate", "not_a_video")


class DecodeError(Exception):
    """Bad input video. `.kind` is a short machine-readable class: one of
    'empty' (zero bytes), 'no_video_stream' (e.g. audio-only), 'corrupt' (truncated/garbage/undecodable),
    'unsupported_codec', 'too_large' (over a limit), 'decoder_crash' (reserved for crash containment),
    'no_frame_rate' (segment mode needs one to place windows in seconds), 'not_a_video' (a still image: input.stills)."""

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
    # A call for a range of windows (`windows=(first, stop)`) returns those only: `windows[0]` is window
    # `window_offset` of the video's `window_total`.
    window_offset: int = 0
    window_total: int = 0

    def split(self) -> list[np.ndarray]:
        """Frames per window (segment mode) or [frames] (whole video)."""
        if self.window_frames is None:
            return [self.frames]
        return np.split(self.frames, np.cumsum(self.window_frames)[:-1])


@runtime_checkable
class FrameSampler(Protocol):
    name: str

    def sample(self, data: bytes, num_frames: int, max_pixels: int, segments: tuple[float, float] | None = None,
               windows: tuple[int, int] | None = None) -> DecodedVideo: ...


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


# One call holds the frames of the windows it returns (windows x num_frames small frames). A call for all windows of a
# video (no `windows` range) past this many fails as `too_large` instead of exhausting memory (256 windows x 8 frames
# at the 460,800-pixel cap is ~2.8 GB); the embed job asks for ranges of `decode.window_chunk` windows, so any length
# of video streams through in bounded memory.
MAX_WINDOWS = 256


@dataclass(frozen=True)
class FramePlan:
    groups: list[np.ndarray]  # source frame indices per returned window (one group = the whole video)
    windows: np.ndarray | None  # float64 [W, 2] seconds of the returned windows; None without segments
    offset: int = 0  # index of the first returned window
    total: int = 0  # windows of the whole video


def plan_frames(total: int, fps: float, num_frames: int, segments: tuple[float, float] | None,
                windows: tuple[int, int] | None = None) -> FramePlan:
    """Source frame indices to sample, one array per window (a single window = the whole video without segments).

    Segment mode places windows in seconds with frame i at time i / fps (the frame-index timeline PyAV and decord
    both count), so a window [s, e) holds frames ceil(s * fps) .. ceil(e * fps) - 1 and is sampled with TARA's
    uniform rule inside it, exactly as a clip cut at those frames would be. `windows=(first, stop)` plans only those
    windows (clipped to the video's): the embed job streams a long video through a range at a time."""
    if segments is None:
        return FramePlan([sample_indices(total, num_frames)], None, 0, 1)
    if not (fps > 0 and math.isfinite(fps)):
        raise DecodeError("no_frame_rate", "segment mode needs the stream's frame rate, and this video has none")
    every = segment_windows(total / fps, *segments)
    first, stop = (0, len(every)) if windows is None else (max(0, windows[0]), min(len(every), windows[1]))
    if windows is None and len(every) > MAX_WINDOWS:
        raise DecodeError("too_large", f"{len(every)} windows of {segments[0]:g} s every {segments[1]:g} s over "
                          f"{total / fps:.0f} s in one call: more than {MAX_WINDOWS}; ask for a range "
                          "(windows=(first, stop)), as the embed job does")
    groups = []
    for start, end in every[first:stop]:
        lo = min(total - 1, math.ceil(start * fps - 1e-6))
        hi = max(lo + 1, min(total, math.ceil(end * fps - 1e-6)))
        groups.append(lo + sample_indices(hi - lo, num_frames))
    return FramePlan(groups, every[first:stop], first, len(every))


def assemble_video(frames_at: dict[int, np.ndarray], plan: FramePlan, total: int, fps: float,
                   duration: float) -> DecodedVideo:
    # Overlapping windows share source frames: each is decoded once and copied into every window that uses it.
    if not plan.groups:  # a range past the last window
        empty = np.zeros((0, 1, 1, 3), np.uint8)
        return DecodedVideo(empty, np.zeros(0, np.int64), total, fps, duration, np.zeros((0, 2)),
                            np.zeros(0, np.int64), plan.offset, plan.total)
    indices = np.concatenate(plan.groups)
    frames = _stack([frames_at[int(i)] for i in indices])
    if plan.windows is None:
        return DecodedVideo(frames, indices, total, fps, duration, window_total=1)
    counts = np.array([len(g) for g in plan.groups], dtype=np.int64)
    return DecodedVideo(frames, indices, total, fps, duration, plan.windows, counts, plan.offset, plan.total)


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


class FrameShaper:
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
