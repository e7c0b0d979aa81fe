"""Sample archive generator: small, real encoded videos (H.264 MP4) plus deliberately bad inputs, for tests and demos.

What: `write_sample_archive(dir, n)` writes `clip_0000.mp4`.. with moving, colour-changing shapes at mixed sizes,
lengths, frame rates and keyframe intervals (optionally one rotated clip); `write_bad_videos(dir)` writes the bad
inputs the decoder must classify (zero bytes, truncated MP4, random bytes, audio only, a text file).
Why: decoding, failure handling and the pipeline must be tested on real containers and codecs, not on arrays; the
content is synthetic (numpy only, deterministic from the seed) so nothing has to be downloaded, and every frame
differs from its neighbours so that an off-by-one frame index shows up in the pixels.
How: ffmpeg from the `imageio-ffmpeg` wheel (`pip install imageio-ffmpeg`, the `samples`/`dev` extra) encodes raw
RGB frames piped to its stdin.

    python -m tara_batch.samples OUT_DIR -n 24 [--seed 0] [--rotated] [--bad]
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# (width, height), as in ffmpeg's "-s WxH"; all even (yuv420p halves chroma in both directions) and small so that
# tests stay fast. Mixed aspect ratios: 4:3, 3:2, 16:9, square.
DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((64, 48), (96, 64), (128, 96), (160, 90), (112, 112))
DEFAULT_DURATIONS: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0)  # seconds
DEFAULT_FPS: tuple[float, ...] = (8.0, 10.0, 12.0, 15.0)
# Keyframe intervals (frames): short GOPs make the decoder's keyframe seeks matter, 250 is x264's default.
DEFAULT_GOPS: tuple[int, ...] = (4, 7, 12, 250)

# What the decoder must report for each file of `write_bad_videos` (DecodeError.kind).
BAD_VIDEO_KINDS: dict[str, str] = {
    "zero_bytes.mp4": "empty",
    "truncated.mp4": "corrupt",
    "random_bytes.mp4": "corrupt",
    "audio_only.m4a": "no_video_stream",
    "not_a_video.txt": "corrupt",
}


def ffmpeg_exe() -> str:
    """Path of the ffmpeg binary shipped in the imageio-ffmpeg wheel."""
    try:
        import imageio_ffmpeg
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise RuntimeError("sample videos need imageio-ffmpeg: pip install 'tara-batch[samples]'") from error
    return imageio_ffmpeg.get_ffmpeg_exe()


def _run_ffmpeg(args: Sequence[str], stdin: bytes | None = None) -> None:
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


def make_clip_frames(height: int, width: int, num_frames: int, seed: int) -> np.ndarray:
    """Synthetic clip, uint8 [T, H, W, 3]: a colour-drifting gradient, a bouncing rectangle, a moving disc and a
    progress bar along the bottom. Same (size, length, seed) -> same array, bit for bit."""
    if height < 2 or width < 2 or num_frames < 1:
        raise ValueError(f"need at least a 2x2 frame and one frame, got {height}x{width}x{num_frames}")
    rng = np.random.default_rng(seed)
    base = rng.uniform(0, 255, size=3)  # background colour at t = 0
    drift = rng.uniform(-6, 6, size=3)  # background colour change per frame
    rect_colour = rng.uniform(0, 255, size=3)
    rect_h, rect_w = max(2, height // 3), max(2, width // 4)
    rect_pos = rng.uniform(0, 1, size=2) * [height - rect_h, width - rect_w]
    rect_vel = rng.uniform(1, 4, size=2) * rng.choice([-1, 1], size=2)  # pixels per frame
    disc_radius = max(2, min(height, width) // 6)
    disc_phase, disc_speed = rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.6)

    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)  # [H, W] each
    gradient = (yy / max(1, height - 1))[..., None] * 60.0  # [H, W, 1] vertical brightness ramp
    frames = np.empty((num_frames, height, width, 3), dtype=np.uint8)
    for t in range(num_frames):
        frame = np.clip((base + drift * t) % 256 * 0.8 + gradient, 0, 255)  # [H, W, 3]
        # Rectangle bounces off the borders (triangle wave of the unbounded position).
        span = np.array([height - rect_h, width - rect_w], dtype=np.float64)
        raw = rect_pos + rect_vel * t
        top, left = (np.abs((raw + span) % (2 * np.maximum(span, 1)) - span)).astype(int)
        frame[top : top + rect_h, left : left + rect_w] = (rect_colour + 25 * t) % 256
        # Disc circles around the centre and changes colour with t.
        angle = disc_phase + disc_speed * t
        cy = height / 2 + (height / 3) * np.sin(angle)
        cx = width / 2 + (width / 3) * np.cos(angle)
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= disc_radius**2
        frame[inside] = [(40 * t) % 256, 255 - (40 * t) % 256, 128]
        # Progress bar: its length encodes t, so neighbouring frames always differ.
        bar = max(1, height // 12)
        frame[height - bar :, : max(1, round(width * (t + 1) / num_frames))] = 255
        frames[t] = frame.astype(np.uint8)
    return frames


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
    _run_ffmpeg(
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
    _run_ffmpeg(
        ["-display_rotation", f"{degrees:g}", "-i", str(src), "-c", "copy", "-movflags", "+faststart", str(dst)]
    )
    return dst


def _clip_plan(index: int, seed: int, sizes, durations, fps) -> tuple[int, int, int, float, int]:
    # Per-clip generator: clip i is the same whatever n is, so archives of different sizes share their prefix.
    rng = np.random.default_rng([seed, index])
    width, height = sizes[index % len(sizes)]  # cycle through sizes so every archive mixes them
    rate = float(fps[rng.integers(len(fps))])
    duration = float(durations[rng.integers(len(durations))])
    gop = int(DEFAULT_GOPS[rng.integers(len(DEFAULT_GOPS))])
    num_frames = max(1, round(duration * rate))
    return height, width, num_frames, rate, gop


def write_sample_archive(
    out_dir: str | Path,
    n: int = 24,
    seed: int = 0,
    *,
    sizes: Sequence[tuple[int, int]] = DEFAULT_SIZES,
    durations: Sequence[float] = DEFAULT_DURATIONS,
    fps: Sequence[float] = DEFAULT_FPS,
    codec: str = "libx264",
    include_rotated: bool = False,
) -> list[Path]:
    """Write `n` clips `clip_0000.mp4`.. (and `rotated_0000.mp4` if `include_rotated`) to `out_dir`.

    `sizes` are (width, height) pairs, cycled; duration, fps and keyframe interval are drawn per clip from a
    generator seeded with (seed, clip index). The rotated clip is a normal clip remuxed with a 90 degree display
    rotation: stored 4:3 landscape, displayed portrait.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(n):
        height, width, num_frames, rate, gop = _clip_plan(index, seed, sizes, durations, fps)
        frames = make_clip_frames(height, width, num_frames, seed=seed * 1_000_003 + index)
        paths.append(encode_video(out / f"clip_{index:04d}.mp4", frames, rate, codec, extra_args=["-g", str(gop)]))
    if include_rotated:
        frames = make_clip_frames(48, 64, 12, seed=seed * 1_000_003 + 999_999)
        plain = encode_video(out / ".rotated_source.mp4", frames, 10.0, codec, extra_args=["-g", "5"])
        paths.append(add_display_rotation(plain, out / "rotated_0000.mp4", 90))
        plain.unlink()
    logger.info("wrote %d sample videos to %s", len(paths), out)
    return paths


def write_bad_videos(out_dir: str | Path) -> dict[str, Path]:
    """Write the bad inputs of `BAD_VIDEO_KINDS` to `out_dir`; returns {file name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in BAD_VIDEO_KINDS}
    paths["zero_bytes.mp4"].write_bytes(b"")
    # A real fast-start MP4 cut in half: the header promises samples that are not in the bytes.
    whole = encode_video(
        out / ".truncated_source.mp4", make_clip_frames(64, 96, 20, seed=7), 10.0, extra_args=["-g", "5"]
    )
    data = whole.read_bytes()
    whole.unlink()
    paths["truncated.mp4"].write_bytes(data[: len(data) // 2])
    # Fixed bytes, so the file is the same everywhere (some random byte strings happen to probe as MP3).
    paths["random_bytes.mp4"].write_bytes(np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _run_ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:duration=1",
            "-c:a",
            "aac",
            "-movflags",
            "+faststart",
            str(paths["audio_only.m4a"]),
        ]
    )
    paths["not_a_video.txt"].write_text("This is a text file, not a video.\n" * 20)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tara_batch.samples", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", help="directory to write the videos to")
    parser.add_argument("-n", type=int, default=24, help="number of clips (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="content seed (default 0)")
    parser.add_argument("--codec", default="libx264", help="ffmpeg video encoder (default libx264)")
    parser.add_argument("--rotated", action="store_true", help="also write rotated_0000.mp4 (90 degree rotation)")
    parser.add_argument("--bad", action="store_true", help="also write the bad inputs into OUT_DIR/bad/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = write_sample_archive(args.out_dir, args.n, args.seed, codec=args.codec, include_rotated=args.rotated)
    if args.bad:
        paths += list(write_bad_videos(Path(args.out_dir) / "bad").values())
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
