"""Encoding real video files with the ffmpeg binary shipped in the `imageio-ffmpeg` wheel (tests, samples, demos).

`encode_video(path, frames, fps)` pipes uint8 RGB frames into ffmpeg (H.264 by default, one encoder thread so the
bytes are reproducible); nothing is downloaded.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped in the imageio-ffmpeg wheel."""
    try:
        import imageio_ffmpeg
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise RuntimeError("sample videos need imageio-ffmpeg: pip install 'tara-batch[samples]'") from error
    return imageio_ffmpeg.get_ffmpeg_exe()


def run_ffmpeg(args: Sequence[str], stdin: bytes | None = None) -> None:
    # -nostdin when nothing is piped: ffmpeg otherwise reads keyboard commands from the caller's terminal.
    command = [
        ffmpeg_exe(),
        "-y",
        "-hide_banner",
        "-loglevel",
        "error",
        *(["-nostdin"] if stdin is None else []),
        *args,
    ]
    result = subprocess.run(command, input=stdin, capture_output=True, check=False)
    if result.returncode != 0:
        tail = result.stderr.decode(errors="replace").strip()[-2000:]
        raise RuntimeError(f"ffmpeg failed ({result.returncode}): {' '.join(command[1:])}\n{tail}")


def encode_video(
    path: str | Path,
    frames: np.ndarray,
    fps: float,
    codec: str = "libx264",
    extra_args: Sequence[str] = (),
) -> Path:
    """Encode uint8 RGB frames [T, H, W, 3] to `path` (yuv420p; fast-start for MP4/MOV). Returns the path.

    `extra_args` are ffmpeg output options placed before the path (e.g. ["-g", "8"] or a "-vf" filter).
    One encoder thread by default: x264's output depends on its thread count, so this keeps files reproducible
    across machines (pass ["-threads", "0"] in extra_args to override).
    """
    path = Path(path)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    num_frames, height, width, _ = frames.shape
    if num_frames < 1 or height % 2 or width % 2:
        raise ValueError(f"need >= 1 frame and even height/width for yuv420p, got {frames.shape}")
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fast_start = ["-movflags", "+faststart"] if path.suffix.lower() in {".mp4", ".mov", ".m4v"} else []
    run_ffmpeg(
        [
            "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-",
            "-an", "-c:v", codec, "-pix_fmt", "yuv420p", "-threads", "1", *fast_start, *extra_args, str(path),
        ],
        stdin=np.ascontiguousarray(frames).tobytes(),
    )  # fmt: skip
    return path


def add_display_rotation(src: str | Path, dst: str | Path, degrees: int = 90) -> Path:
    """Copy `src` to `dst` adding a display-matrix rotation (counter-clockwise degrees), bitstream untouched.

    This ffmpeg (9.x) honours the `-display_rotation` input option with stream copy; the old `-metadata:s:v
    rotate=90` tag is ignored by current FFmpeg and produces an unrotated file.
    """
    dst = Path(dst)
    run_ffmpeg(
        ["-display_rotation", f"{degrees:g}", "-i", str(src), "-c", "copy", "-movflags", "+faststart", str(dst)]
    )
    return dst


def available_encoders() -> set[str]:
    """Names of the video encoders the bundled ffmpeg has (`ffmpeg -encoders`)."""
    result = subprocess.run([ffmpeg_exe(), "-hide_banner", "-encoders"], capture_output=True, text=True, check=True)
    found = set()
    for line in result.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("V") and len(parts[0]) == 6:
            found.add(parts[1])
    return found
