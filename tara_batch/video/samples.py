"""Sample archive generator: small, real encoded videos (H.264 MP4) plus deliberately bad inputs, for tests and demos.

What: `write_sample_archive(dir, n)` writes `clip_0000.mp4`.. with moving, colour-changing shapes at mixed sizes,
lengths, frame rates and keyframe intervals (optionally one rotated clip); `write_bad_videos(dir)` writes the bad
inputs the decoder must classify (zero bytes, truncated MP4s, random bytes, audio only, a text file, an unknown
codec); `write_edge_videos(dir)` writes good but unusual files that must embed like any other (variable frame rate,
rotation, a single frame, HEVC, VP9, MPEG-4 Part 2 AVI with B-frames, AV1, MPEG-TS).
Why: decoding, failure handling and the pipeline must be tested on real containers and codecs, not on arrays; the
content is synthetic (numpy only, deterministic from the seed) so nothing has to be downloaded, and every frame
differs from its neighbours so that an off-by-one frame index shows up in the pixels.
How: ffmpeg from the `imageio-ffmpeg` wheel (`pip install imageio-ffmpeg`, the `samples`/`dev` extra) encodes raw
RGB frames piped to its stdin.

    python -m tara_batch.video.samples OUT_DIR -n 24 [--seed 0] [--rotated] [--bad] [--edge]
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tara_batch.video.encode import add_display_rotation, available_encoders, encode_video, run_ffmpeg

logger = logging.getLogger(__name__)

# (width, height), as in ffmpeg's "-s WxH"; all even (yuv420p halves chroma in both directions) and small so that
# tests stay fast. Mixed aspect ratios: 4:3, 3:2, 16:9, square.
DEFAULT_SIZES: tuple[tuple[int, int], ...] = ((64, 48), (96, 64), (128, 96), (160, 90), (112, 112))

DEFAULT_DURATIONS: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0)  # seconds

DEFAULT_FPS: tuple[float, ...] = (8.0, 10.0, 12.0, 15.0)

# Keyframe intervals (frames): short GOPs make the decoder's keyframe seeks matter, 250 is x264's default.
DEFAULT_GOPS: tuple[int, ...] = (4, 7, 12, 250)

# What the decoder must report for each file of `write_bad_videos` (DecodeError.kind), with both backends.
BAD_VIDEO_KINDS: dict[str, str] = {
    "zero_bytes.mp4": "empty",
    "truncated.mp4": "corrupt",
    "random_bytes.mp4": "corrupt",
    "audio_only.m4a": "no_video_stream",
    "not_a_video.txt": "corrupt",
    # A 720p fast-start MP4 cut to a quarter: decord 0.6 reading it from memory dies with SIGSEGV (every time, on
    # this exact file); DecordSampler's PyAV pre-check must reject it first.
    "truncated_720p.mp4": "corrupt",
    # A real AVI whose video stream carries a FourCC no FFmpeg decoder claims.
    "unknown_codec.avi": "unsupported_codec",
}

# Good but unusual files written by `write_edge_videos`: file name -> (ffmpeg encoder it needs, what it tests).
EDGE_VIDEOS: dict[str, tuple[str, str]] = {
    "vfr.mp4": ("libx264", "variable frame rate: 10 fps, then gaps of 0.2 and 0.4 s"),
    "rotated_90.mp4": ("libx264", "display matrix rotation of 90 degrees (stored landscape, shown portrait)"),
    "one_frame.mp4": ("libx264", "a single frame"),
    "hevc.mp4": ("libx265", "HEVC (x265 default open GOP with B-frames), hvc1 tag"),
    "vp9.webm": ("libvpx-vp9", "VP9 in WebM"),
    "mpeg4_bframes.avi": ("mpeg4", "MPEG-4 Part 2 in AVI with B-frames"),
    "av1.mp4": ("libsvtav1", "AV1 in MP4 (decord 0.6 cannot decode it)"),
    "h264.ts": ("libx264", "H.264 in MPEG-TS"),
}


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
    run_ffmpeg(
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
    write_decord_crasher(paths["truncated_720p.mp4"])
    # MPEG-4 Part 2 in AVI, then its FourCC (stream header handler and BITMAPINFOHEADER compression, both "FMP4")
    # overwritten in the header only: a well-formed container whose codec nobody knows.
    avi = encode_video(out / ".unknown_codec_source.avi", make_clip_frames(48, 64, 6, seed=8), 10.0, codec="mpeg4")
    data = avi.read_bytes()
    avi.unlink()
    header_end = data.index(b"movi")
    if data[:header_end].count(b"FMP4") < 1:  # pragma: no cover - depends on ffmpeg's AVI muxer
        raise RuntimeError("ffmpeg's AVI muxer no longer writes the FMP4 FourCC; update write_bad_videos")
    paths["unknown_codec.avi"].write_bytes(data[:header_end].replace(b"FMP4", b"ZZZZ") + data[header_end:])
    return paths


def write_decord_crasher(path: str | Path) -> Path:
    """A 2 s 1280x720 H.264 fast-start MP4 (ffmpeg's testsrc2) cut to its first quarter.

    decord 0.6 dies with SIGSEGV opening these bytes from memory (10 of 10 runs; the same cut of 320x240 or
    640x360 clips only raises), so this is the file that proves crash containment. Single-threaded x264: the
    same bytes on every machine with this ffmpeg build.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    whole = path.with_name(f".{path.stem}_source.mp4")
    run_ffmpeg(
        [
            "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=30", "-t", "2", "-c:v", "libx264", "-threads", "1",
            "-preset", "ultrafast", "-crf", "30", "-g", "250", "-pix_fmt", "yuv420p", "-movflags", "+faststart",
            str(whole),
        ]
    )  # fmt: skip
    data = whole.read_bytes()
    whole.unlink()
    path.write_bytes(data[: len(data) // 4])
    return path


def write_edge_videos(out_dir: str | Path, seed: int = 0) -> dict[str, Path]:
    """Write the good-but-unusual files of `EDGE_VIDEOS` to `out_dir`; returns {file name: path}.

    Every file is 64x48 (the rotated one is shown 48x64), 30 frames unless noted. A file whose encoder the bundled
    ffmpeg lacks is skipped with a warning (so check the returned names, not EDGE_VIDEOS).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    encoders = available_encoders()
    frames = make_clip_frames(48, 64, 30, seed=seed * 1_000_003 + 77)
    # Frame N is shown at N/10 s for N < 10, then alternately 0.4 and 0.2 s later: pts no longer equal index / fps.
    vfr = "setpts='if(lt(N,10),N,10+3*(N-10)+mod(N,2))/(10*TB)'"
    recipes: dict[str, tuple[str, np.ndarray, list[str]]] = {  # name -> (encoder, frames, extra ffmpeg args)
        "vfr.mp4": ("libx264", frames, ["-vf", vfr, "-fps_mode", "passthrough", "-g", "6"]),
        "one_frame.mp4": ("libx264", frames[:1], []),
        "hevc.mp4": (
            "libx265",
            frames,
            ["-g", "6", "-preset", "ultrafast", "-tag:v", "hvc1", "-x265-params", "log-level=error"],
        ),
        "vp9.webm": ("libvpx-vp9", frames, ["-g", "6", "-deadline", "realtime", "-cpu-used", "8"]),
        "mpeg4_bframes.avi": ("mpeg4", frames, ["-g", "6", "-bf", "2"]),
        "av1.mp4": ("libsvtav1", frames[:12], ["-g", "6", "-preset", "12"]),
        "h264.ts": ("libx264", frames, ["-f", "mpegts", "-g", "6"]),
    }
    paths: dict[str, Path] = {}
    for name in EDGE_VIDEOS:
        encoder = EDGE_VIDEOS[name][0]
        if encoder not in encoders:
            logger.warning("skipping %s: this ffmpeg has no %s encoder", name, encoder)
            continue
        if name == "rotated_90.mp4":
            plain = encode_video(out / ".rotated_source.mp4", frames[:12], 10.0, extra_args=["-g", "5"])
            paths[name] = add_display_rotation(plain, out / name, 90)
            plain.unlink()
            continue
        codec, clip, extra = recipes[name]
        paths[name] = encode_video(out / name, clip, 10.0, codec=codec, extra_args=extra)
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tara_batch.video.samples", description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", help="directory to write the videos to")
    parser.add_argument("-n", type=int, default=24, help="number of clips (default 24)")
    parser.add_argument("--seed", type=int, default=0, help="content seed (default 0)")
    parser.add_argument("--codec", default="libx264", help="ffmpeg video encoder (default libx264)")
    parser.add_argument("--rotated", action="store_true", help="also write rotated_0000.mp4 (90 degree rotation)")
    parser.add_argument("--bad", action="store_true", help="also write the bad inputs into OUT_DIR/bad/")
    parser.add_argument("--edge", action="store_true", help="also write the unusual good files into OUT_DIR/edge/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    paths = write_sample_archive(args.out_dir, args.n, args.seed, codec=args.codec, include_rotated=args.rotated)
    if args.bad:
        paths += list(write_bad_videos(Path(args.out_dir) / "bad").values())
    if args.edge:
        paths += list(write_edge_videos(Path(args.out_dir) / "edge", seed=args.seed).values())
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
