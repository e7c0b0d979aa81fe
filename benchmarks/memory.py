"""Memory benchmark: peak RSS of frame sampling on big inputs, isolation overhead, and RSS trends over 500 videos.

Measures, each in a fresh Python process so that one measurement cannot inherit another's heap:
1. Peak RSS of sampling `profile.num_frames` frames (TARA profile: 8 frames, max_pixels 460,800) from a 10-minute
   1080p H.264 clip, a 10 s 4K clip and 10 s 720p and 360p clips, with PyAV and decord, in-process and isolated
   (`tara_batch.video.isolation`: the caller and the decoder child are reported separately). Peak = VmHWM from /proc;
   the input bytes are in memory too (videos arrive as bytes from object storage), so file sizes are reported.
2. Isolation cost: child start-up time and idle RSS, per-video overhead (isolated - in-process, interleaved runs)
   on small clips and the 360p/720p clips, and the transfer floor of the protocol alone.
3. RSS trend of the decode samplers and of `tara_batch.embed.stages.EmbedStage` (tiny Qwen2-VL, CPU) over 500 videos in
   one process, sampled every 50 videos: RSS at video 100 vs video 500 (target: within 10%).

Test media come from the ffmpeg of imageio-ffmpeg (lavfi `testsrc2`, x264 ultrafast, CRF 35, GOP 250) and are cached
in `--cache-dir` (the 10-minute clip takes about 3 minutes to encode on 2 cores, ~450 MB).

    python benchmarks/memory.py                         # everything; table on stdout, JSON to bench-memory.json
    python benchmarks/memory.py --skip-long             # without the 10-minute clip
    python benchmarks/memory.py --only overhead,trend   # sections: sampling, overhead, trend, embed
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

MIB = 1024 * 1024
SECTIONS = ("sampling", "overhead", "trend", "embed")
# name -> (width, height, fps, seconds); all lavfi testsrc2, x264 ultrafast CRF 35 GOP 250.
MEDIA = {
    "small_360p_10s": (640, 360, 30, 10),
    "medium_720p_10s": (1280, 720, 30, 10),
    "uhd_2160p_10s": (3840, 2160, 30, 10),
    "long_1080p_600s": (1920, 1080, 30, 600),
}


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def vm_kib(field: str, pid: int | str = "self") -> int:
    """A /proc/<pid>/status field in KiB: VmRSS (resident now) or VmHWM (peak resident)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def mib(kib: float) -> float:
    return round(kib / 1024, 1)


def media_path(cache: Path, name: str) -> Path:
    width, height, fps, seconds = MEDIA[name]
    return cache / f"testsrc2_{width}x{height}_{fps}fps_{seconds}s_crf35_g250.mp4"


def ensure_media(cache: Path, names: list[str]) -> dict[str, Path]:
    from tara_batch.video.encode import ffmpeg_exe

    cache.mkdir(parents=True, exist_ok=True)
    found = {}
    for name in names:
        path = media_path(cache, name)
        if not path.exists():
            width, height, fps, seconds = MEDIA[name]
            partial = path.with_suffix(".partial.mp4")
            print(f"encoding {path.name} ({seconds} s of {width}x{height}) ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            subprocess.run(
                [
                    ffmpeg_exe(), "-y", "-hide_banner", "-loglevel", "error", "-nostdin",
                    "-f", "lavfi", "-i", f"testsrc2=size={width}x{height}:rate={fps}", "-t", str(seconds),
                    "-c:v", "libx264", "-preset", "ultrafast", "-crf", "35", "-g", "250", "-pix_fmt", "yuv420p",
                    "-movflags", "+faststart", str(partial),
                ],
                check=True,
            )  # fmt: skip
            partial.rename(path)  # only complete files enter the cache
            print(f"  done in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        found[name] = path
    return found


def run_child(args: list[str]) -> dict[str, Any]:
    """Run this script with `args` in a fresh interpreter; its last stdout line is JSON. Adds ru_maxrss (wait4)."""
    process = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=REPO)
    assert process.stdout is not None
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"child {' '.join(args)} failed ({process.returncode}):\n{output[-2000:]}")
    result = json.loads(output.strip().splitlines()[-1])
    result["ru_maxrss_mib"] = mib(usage.ru_maxrss)  # Linux: KiB; max over the child and the children it reaped
    return result


def small_clips(cache: Path) -> list[Path]:
    from tara_batch.video.samples import write_sample_archive

    root = cache / "small-clips"
    paths = sorted(root.glob("clip_*.mp4"))
    if len(paths) < 6:
        paths = write_sample_archive(root, n=6, seed=0)
    return paths


# ---------------------------------------------------------------------------------------------------------------
# Children (each runs in its own interpreter)


def child_sample(path: str, sampler_name: str, isolate: bool, num_frames: int, max_pixels: int) -> dict[str, Any]:
    from tara_batch.video.registry import get_sampler

    sampler = get_sampler(sampler_name, isolate=isolate, timeout_s=3600)  # in-process decord: imports decord here
    result: dict[str, Any] = {"baseline_mib": mib(vm_kib("VmRSS"))}
    if isolate:
        result["decoder_baseline_mib"] = mib(vm_kib("VmRSS", sampler.pid))
    data = Path(path).read_bytes()
    result["after_read_mib"] = mib(vm_kib("VmRSS"))
    start = time.perf_counter()
    video = sampler.sample(data, num_frames, max_pixels)
    result["seconds"] = round(time.perf_counter() - start, 2)
    result["peak_mib"] = mib(vm_kib("VmHWM"))
    if isolate:
        result["decoder_peak_mib"] = mib(vm_kib("VmHWM", sampler.pid))
        sampler.close()
    result["frames"] = list(video.frames.shape)
    result["source_frames"] = video.source_frames
    return result


def child_trend(sampler_name: str, isolate: bool, cache: str, videos: int, every: int) -> dict[str, Any]:
    from tara_batch.models.profile import get_profile
    from tara_batch.video.registry import get_sampler

    profile = get_profile()
    datas = [path.read_bytes() for path in small_clips(Path(cache))]
    sampler = get_sampler(sampler_name, isolate=isolate)
    rss, decoder_rss = {}, {}
    for i in range(1, videos + 1):
        sampler.sample(datas[i % len(datas)], profile.num_frames, profile.max_pixels)
        if i % every == 0:
            rss[i] = mib(vm_kib("VmRSS"))
            if isolate:
                decoder_rss[i] = mib(vm_kib("VmRSS", sampler.pid))
    result: dict[str, Any] = {"rss_mib": rss}
    if isolate:
        result["decoder_rss_mib"] = decoder_rss
        sampler.close()
    return result


def child_embed(cache: str, videos: int, every: int, batch_size: int) -> dict[str, Any]:
    import numpy as np

    from tara_batch import schema as S
    from tara_batch.embed.stages import EmbedStage
    from tara_batch.models.loader import EmbedderSpec
    from tara_batch.models.profile import get_profile
    from tara_batch.models.tiny import build_tiny_model
    from tara_batch.video.registry import get_sampler

    profile = get_profile()
    model_dir = Path(cache) / "tiny-model"
    if not (model_dir / "config.json").exists():
        build_tiny_model(model_dir, seed=0)
    sampler = get_sampler("pyav")
    clips = [
        sampler.sample(p.read_bytes(), profile.num_frames, profile.max_pixels).frames for p in small_clips(Path(cache))
    ]
    start_rss = mib(vm_kib("VmRSS"))
    stage = EmbedStage(embedder_factory=EmbedderSpec(model_uri=str(model_dir), profile=profile))
    loaded_rss = mib(vm_kib("VmRSS"))

    def batch(first: int, n: int) -> dict[str, np.ndarray]:
        frames = np.empty(n, dtype=object)
        for j in range(n):
            frames[j] = clips[(first + j) % len(clips)]
        text = lambda value: np.array([value] * n, dtype=object)  # noqa: E731
        return {
            S.VIDEO_ID: np.array([f"v{first + j}" for j in range(n)], dtype=object),
            S.URI: text("memory://clip"), S.SIZE: np.zeros(n, np.int64), S.ETAG: text(""),
            S.DURATION: np.zeros(n), S.FPS: np.zeros(n), S.NUM_FRAMES: np.full(n, profile.num_frames, np.int32),
            S.DECODE_SECONDS: np.zeros(n), S.STATUS: text(S.STATUS_OK), S.ERROR_STAGE: text(""),
            S.ERROR_KIND: text(""), S.ERROR_MESSAGE: text(""), S.FRAMES: frames,
        }  # fmt: skip

    rss: dict[int, float] = {}
    done, start = 0, time.perf_counter()
    while done < videos:
        n = min(batch_size, videos - done)
        out = stage(batch(done, n))
        assert out[S.EMBEDDING].shape == (n, stage.dim) and (out[S.STATUS] == S.STATUS_OK).all()
        before, done = done, done + n
        if done // every > before // every:
            rss[done] = mib(vm_kib("VmRSS"))
    return {
        "clip_shapes": [list(c.shape) for c in clips],
        "rss_before_model_mib": start_rss,
        "rss_after_load_mib": loaded_rss,
        "rss_mib": rss,
        "seconds": round(time.perf_counter() - start, 1),
        "batch_size": batch_size,
    }


# ---------------------------------------------------------------------------------------------------------------
# Sections (driver side)


def section_sampling(media: dict[str, Path], samplers: list[str], repeats: int) -> list[dict[str, Any]]:
    from tara_batch.models.profile import get_profile

    profile = get_profile()
    rows = []
    for name, path in media.items():
        for sampler in samplers:
            for isolate in (False, True):
                child_args = [str(path), sampler, str(int(isolate)), str(profile.num_frames), str(profile.max_pixels)]
                runs = [run_child(["--child-sample", *child_args]) for _ in range(repeats)]
                worst = max(runs, key=lambda r: r["peak_mib"] + r.get("decoder_peak_mib", 0))
                row = {
                    "file": name,
                    "file_mib": round(path.stat().st_size / MIB, 1),
                    "sampler": sampler,
                    "isolated": isolate,
                    **worst,
                    "peak_mib_runs": [r["peak_mib"] for r in runs],
                }
                rows.append(row)
                print_sampling_row(row)
    return rows


def print_sampling_row(row: dict[str, Any]) -> None:
    decoder = row.get("decoder_peak_mib")
    total = row["peak_mib"] + (decoder or 0)
    mode = "isolated" if row["isolated"] else "in-proc"
    print(
        f"{row['file']:<16} {row['file_mib']:>8.1f} {row['sampler']:<7} {mode:<8} {row['baseline_mib']:>8.1f} "
        f"{row['peak_mib']:>8.1f} {(f'{decoder:.1f}' if decoder else '-'):>8} {total:>8.1f} "
        f"{total - row['baseline_mib'] - (row.get('decoder_baseline_mib') or 0):>9.1f} {row['seconds']:>7.2f}",
        flush=True,
    )


def section_overhead(cache: Path, media: dict[str, Path], samplers: list[str], repeats: int) -> list[dict[str, Any]]:
    from tara_batch.models.profile import get_profile
    from tara_batch.video.isolation import IsolatedSampler
    from tara_batch.video.registry import get_sampler

    profile = get_profile()
    clips = {p.name: p.read_bytes() for p in small_clips(cache)}
    for name in ("small_360p_10s", "medium_720p_10s"):
        if name in media:
            clips[name] = media[name].read_bytes()
    rows = []
    for sampler_name in samplers:
        start = time.perf_counter()
        isolated = IsolatedSampler(sampler_name)
        startup = time.perf_counter() - start
        local = get_sampler(sampler_name)
        for clip, data in clips.items():
            times: dict[str, list[float]] = {"local": [], "isolated": []}
            reps = repeats if len(data) < 1_000_000 else max(3, repeats // 5)
            for sampler in (local, isolated):  # warm-up
                sampler.sample(data, profile.num_frames, profile.max_pixels)
            for _ in range(reps):
                for label, sampler in (("local", local), ("isolated", isolated)):
                    t0 = time.perf_counter()
                    sampler.sample(data, profile.num_frames, profile.max_pixels)
                    times[label].append(time.perf_counter() - t0)
            # Medians are what a video costs on a shared machine; minima are the least noisy estimate of the
            # intrinsic cost (other processes can only add time). Overhead is reported both ways.
            local_ms, isolated_ms = (statistics.median(times[k]) * 1000 for k in ("local", "isolated"))
            local_min, isolated_min = (min(times[k]) * 1000 for k in ("local", "isolated"))
            row = {
                "sampler": sampler_name,
                "clip": clip,
                "bytes": len(data),
                "repeats": reps,
                "local_median_ms": round(local_ms, 2),
                "isolated_median_ms": round(isolated_ms, 2),
                "overhead_median_ms": round(isolated_ms - local_ms, 2),
                "local_min_ms": round(local_min, 2),
                "isolated_min_ms": round(isolated_min, 2),
                "overhead_min_ms": round(isolated_min - local_min, 2),
                "overhead_min_pct": round(100 * (isolated_min - local_min) / local_min, 1),
                "child_startup_s": round(startup, 2),
                "child_rss_mib": mib(vm_kib("VmRSS", isolated.pid)),
            }
            rows.append(row)
            print(
                f"{sampler_name:<7} {clip:<16} {len(data):>10,} {local_ms:>8.2f} {isolated_ms:>8.2f} "
                f"{isolated_ms - local_ms:>8.2f} {local_min:>8.2f} {isolated_min:>8.2f} {isolated_min - local_min:>8.2f} "
                f"{row['overhead_min_pct']:>6.1f}% {startup:>7.2f} {row['child_rss_mib']:>7.1f}",
                flush=True,
            )
        isolated.close()
    return rows


def section_ipc_floor(repeats: int) -> list[dict[str, Any]]:
    """Round trip of the isolation protocol alone: the test-only `crash-test` sampler answers b"CRASH:PID" inputs
    without decoding, so this is the cost of moving the input bytes to the child (plus a tiny reply)."""
    from tara_batch.video.isolation import TEST_HOOKS_ENV, IsolatedSampler

    os.environ[TEST_HOOKS_ENV] = "1"  # the benchmark's own process only; the hook never runs in a job
    rows = []
    with IsolatedSampler("crash-test") as sampler:
        for size in (10_000, 1_000_000, 10_000_000, 100_000_000):
            data = b"CRASH:PID\n" + bytes(size)
            times = []
            for _ in range(repeats if size <= 10_000_000 else max(3, repeats // 5)):
                t0 = time.perf_counter()
                sampler.sample(data, 8, 460_800)
                times.append(time.perf_counter() - t0)
            row = {
                "input_bytes": size,
                "min_ms": round(min(times) * 1000, 2),
                "median_ms": round(statistics.median(times) * 1000, 2),
            }
            rows.append(row)
            print(
                f"  IPC floor, {size:>12,} input bytes: min {row['min_ms']:8.2f} ms, median {row['median_ms']:8.2f} ms"
            )
    os.environ.pop(TEST_HOOKS_ENV, None)
    return rows


def trend_summary(rss: dict[Any, float]) -> dict[str, Any]:
    points = {int(k): v for k, v in rss.items()}
    at_100, at_500 = points.get(100), points.get(max(points))
    growth = None if not at_100 else round(100 * (at_500 - at_100) / at_100, 1)
    return {"rss_at_100_mib": at_100, "rss_at_last_mib": at_500, "last_video": max(points), "growth_pct": growth}


def section_trend(cache: Path, samplers: list[str], videos: int, every: int) -> list[dict[str, Any]]:
    rows = []
    for sampler in samplers:
        for isolate in (False, True):
            result = run_child(["--child-trend", sampler, str(int(isolate)), str(cache), str(videos), str(every)])
            row = {"sampler": sampler, "isolated": isolate, **result, **trend_summary(result["rss_mib"])}
            if isolate:
                row["decoder"] = trend_summary(result["decoder_rss_mib"])
            rows.append(row)
            series = " ".join(f"{v:.0f}" for v in result["rss_mib"].values())
            decoder = row.get("decoder")
            extra = (
                f"; decoder child {decoder['rss_at_100_mib']} -> {decoder['rss_at_last_mib']} MiB" if decoder else ""
            )
            print(
                f"{sampler:<7} {'isolated' if isolate else 'in-proc':<8} RSS@100 {row['rss_at_100_mib']:>7.1f} "
                f"RSS@{row['last_video']} {row['rss_at_last_mib']:>7.1f} ({row['growth_pct']:+.1f}%)  [{series}]{extra}",
                flush=True,
            )
    return rows


def section_embed(cache: Path, videos: int, every: int, batch_size: int) -> dict[str, Any]:
    result = run_child(["--child-embed", str(cache), str(videos), str(every), str(batch_size)])
    result.update(trend_summary(result["rss_mib"]))
    series = " ".join(f"{k}:{v:.0f}" for k, v in result["rss_mib"].items())
    print(
        f"EmbedStage (tiny Qwen2-VL, CPU, batch {batch_size}): RSS before model {result['rss_before_model_mib']} MiB, "
        f"after load {result['rss_after_load_mib']} MiB; RSS@100 {result['rss_at_100_mib']} MiB, "
        f"RSS@{result['last_video']} {result['rss_at_last_mib']} MiB ({result['growth_pct']:+.1f}%), "
        f"{result['seconds']} s\n  [{series}]",
        flush=True,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Child entry points (fresh interpreters started by run_child).
    if argv and argv[0] == "--child-sample":
        path, sampler, isolate, num_frames, max_pixels = argv[1:6]
        print(json.dumps(child_sample(path, sampler, isolate == "1", int(num_frames), int(max_pixels))))
        return 0
    if argv and argv[0] == "--child-trend":
        sampler, isolate, cache, videos, every = argv[1:6]
        print(json.dumps(child_trend(sampler, isolate == "1", cache, int(videos), int(every))))
        return 0
    if argv and argv[0] == "--child-embed":
        cache, videos, every, batch_size = argv[1:5]
        print(json.dumps(child_embed(cache, int(videos), int(every), int(batch_size))))
        return 0

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "tara-batch-bench"))
    parser.add_argument("--out", default="bench-memory.json")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of {SECTIONS}")
    parser.add_argument("--samplers", default="pyav,decord")
    parser.add_argument("--skip-long", action="store_true", help="leave out the 10-minute 1080p clip")
    parser.add_argument("--repeats", type=int, default=1, help="fresh processes per sampling measurement (max kept)")
    parser.add_argument("--overhead-repeats", type=int, default=30)
    parser.add_argument("--videos", type=int, default=500, help="videos per trend run")
    parser.add_argument("--every", type=int, default=50, help="RSS sample interval (videos)")
    parser.add_argument("--embed-batch-size", type=int, default=10)
    args = parser.parse_args(argv)
    sections = [s for s in args.only.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    samplers = [s for s in args.samplers.split(",") if s]
    cache = Path(args.cache_dir)
    names = [n for n in MEDIA if not (args.skip_long and n == "long_1080p_600s")]
    media = ensure_media(cache, names) if {"sampling", "overhead"} & set(sections) else {}
    small_clips(cache)  # written once here, read by the children
    result: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "media": {
            n: {"path": str(p), "mib": round(p.stat().st_size / MIB, 1), "spec": MEDIA[n]} for n, p in media.items()
        },
    }
    if "sampling" in sections:
        print("\nPeak RSS of one sample() call (8 frames, max_pixels 460,800), fresh process each; MiB")
        print(
            f"{'file':<16} {'file MiB':>8} {'sampler':<7} {'mode':<8} {'baseline':>8} {'peak':>8} {'decoder':>8} "
            f"{'total':>8} {'over base':>9} {'seconds':>7}"
        )
        result["sampling"] = section_sampling(media, samplers, args.repeats)
    if "overhead" in sections:
        print("\nIsolation overhead per video (interleaved runs: medians, then minima); ms")
        print(
            f"{'sampler':<7} {'clip':<16} {'bytes':>10} {'med loc':>8} {'med iso':>8} {'med +':>8} {'min loc':>8} "
            f"{'min iso':>8} {'min +':>8} {'min +%':>7} {'start s':>7} {'chldMiB':>7}"
        )
        result["overhead"] = section_overhead(cache, media, samplers, args.overhead_repeats)
        result["ipc_floor"] = section_ipc_floor(args.overhead_repeats)
    if "trend" in sections:
        print(f"\nDecode RSS trend over {args.videos} small videos in one process (sampled every {args.every}); MiB")
        result["trend"] = section_trend(cache, samplers, args.videos, args.every)
    if "embed" in sections:
        print(f"\nEmbed-stage RSS trend over {args.videos} decoded small videos in one process; MiB")
        result["embed"] = section_embed(cache, args.videos, args.every, args.embed_batch_size)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {os.path.abspath(args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
