"""Pipeline balance benchmark: each stage's own rate, the end-to-end rate, and memory, in one run.

Generates an archive (N objects made of U distinct real H.264 clips, so encoding stays cheap), serves it from a local
S3 server (moto in a subprocess, over HTTP on loopback, so it does not share the driver's interpreter), and measures:

1. the standalone rate of every stage, one process, one thread, on the same files: list (S3 listing), fetch (S3 GET),
   raw decoder (PyAV's own seek + decode of the 8 sampled frames, nothing else), decode + sample (our sampler: pts
   table, exact seeks, rotation, resize), preprocess (the Qwen2-VL processor: resize, patchify, tokenise), embed (the
   tiny model's forward on preprocessed inputs, batches of `embed.batch_size`), write (LanceDB merge-insert commits);
   peak RSS of each (VmHWM over the RSS before the stage);
2. the embed job end to end (`run_embed`, local Ray, the same S3 archive), steady-state videos/s (after the first
   batch: actor start-up and model load are reported apart), embed actors' busy fraction, and the RSS of the CPU
   (decode + preprocess) and embed actor processes at video 100 and at the last video;
3. each actor pool's ceiling under the resources its actors really get: the job's own stage objects (built by
   `embed.dataset.stage_specs`, as `map_batches` builds them) in a Ray actor with the job's `num_cpus` / `num_gpus`
   (hence the same thread settings and environment), one actor at a time, times the actors that run at once;
4. ratios against the targets of issue 7: end-to-end / ceiling (>= 0.9; at most 1 by construction: the ceiling is
   the slowest of listing, writing and the two pools), decode / raw decoder (>= 0.9), actor RSS at the last video /
   at video 100 (<= 1.10).

The one-process rates of (1) show where time goes inside a pool; the ceiling comes from (3). Until issue 15 the
ratio was taken against (1), where every stage ran in the driver's one thread while the actors used more, and read
1.80 (end to end faster than its own "bottleneck").

    python benchmarks/pipeline.py                      # 500 videos, 320x240, 2 s at 15 fps; table + JSON
    python benchmarks/pipeline.py --videos 200 --size 640x360 --compare-preprocess   # both placements
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

from benchmarks.memory import vm_kib  # noqa: E402

MIB = 1024 * 1024
BUCKET = "bench-pipeline"
TARGETS = {"e2e_vs_slowest": 0.9, "decode_vs_raw": 0.9, "memory_growth": 1.10}


# --------------------------------------------------------------------------- memory


def _status(field: str, pid: str = "self") -> int:
    return vm_kib(field, pid) * 1024


class PeakRSS:
    """Peak RSS of this process during a `with` block, over the RSS at its start (VmHWM, reset on entry)."""

    def __enter__(self) -> PeakRSS:
        with contextlib.suppress(OSError):
            Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        self.base = _status("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak_mib = max(0, _status("VmHWM") - self.base) / MIB


def actor_rss() -> dict[str, float]:
    """Private memory (RssAnon, MiB) summed over Ray worker processes by the stage they run (from their process
    titles). Not VmRSS: that counts the object store's shared pages each worker has touched, which come and go
    with the batches in flight and would hide (or fake) a leak."""
    out = {"cpu_actors": 0.0, "embed_actors": 0.0}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            rss = _status("RssAnon", pid) / MIB
        except (OSError, KeyError):  # the process ended, or is a kernel thread
            continue
        if "CpuStage" in title:
            out["cpu_actors"] += rss
        elif "EmbedStage" in title:
            out["embed_actors"] += rss
    return out


# --------------------------------------------------------------------------- archive + S3 server


def make_archive(cache: Path, unique: int, size: tuple[int, int], seconds: float, fps: float) -> list[bytes]:
    from tara_batch.video.encode import encode_video
    from tara_batch.video.samples import make_clip_frames

    w, h = size
    out = []
    for i in range(unique):
        path = cache / f"clip_{w}x{h}_{seconds:g}s_{fps:g}_{i:03d}.mp4"
        if not path.exists():
            encode_video(path, make_clip_frames(h, w, max(1, round(seconds * fps)), seed=i), fps, extra_args=["-g", "30"])
        out.append(path.read_bytes())
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoProcess:
    """moto's S3 server in a subprocess on a free loopback port."""

    def __enter__(self) -> MotoProcess:
        port = _free_port()
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.endpoint = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(self.endpoint + "/moto-api/", timeout=1)
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not start")

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def options(self):
        from tara_batch.io.s3 import S3Options

        return S3Options(endpoint_url=self.endpoint, region="us-east-1", access_key_id="testing",
                         secret_access_key="testing")

    def overrides(self) -> list[str]:
        from tests.s3server import s3_overrides

        return s3_overrides(self.endpoint)


def upload(s3, clips: list[bytes], n: int) -> list[str]:
    client = s3.boto3_client()
    client.create_bucket(Bucket=BUCKET)
    keys = [f"videos/v{i:05d}.mp4" for i in range(n)]
    for i, key in enumerate(keys):
        client.put_object(Bucket=BUCKET, Key=key, Body=clips[i % len(clips)])
    return [f"s3://{BUCKET}/{k}" for k in keys]


# --------------------------------------------------------------------------- stages


def raw_pyav_sample(data: bytes, num_frames: int) -> list[np.ndarray]:
    """The raw decoder's own seek-sampling: PyAV seeks to each wanted frame's time and decodes forward to it.
    No packet table, no rotation, no resize: the floor our sampler is measured against."""
    import av

    from tara_batch.video.frames import sample_indices

    with av.open(io.BytesIO(data)) as c:
        stream = c.streams.video[0]
        total = stream.frames
        rate = float(stream.average_rate)
        frames = []
        for idx in sample_indices(total, num_frames):
            target = round(idx / rate / stream.time_base)
            c.seek(target, stream=stream, backward=True, any_frame=False)
            for frame in c.decode(stream):
                if frame.pts is not None and frame.pts >= target:
                    frames.append(frame.to_ndarray(format="rgb24"))
                    break
        return frames


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def measure_stages(args, moto: MotoProcess, uris: list[str], model_dir: Path, work: Path) -> dict[str, Any]:
    from tara_batch import schema as S
    from tara_batch.index.tables import TableRef
    from tara_batch.index.writer import VideoTableWriter
    from tara_batch.io.listing import list_videos
    from tara_batch.io.reads import read_bytes
    from tara_batch.models.backend import TransformersEmbedder
    from tara_batch.models.preprocess import VideoPreprocessor
    from tara_batch.models.profile import get_profile
    from tara_batch.video.registry import get_sampler

    s3, prof = moto.options(), get_profile()
    m = min(args.stage_videos, len(uris))
    res: dict[str, Any] = {}

    def run(name: str, n: int, fn, warm=None) -> Any:
        if warm is not None:
            warm()  # first calls pay one-off costs (lazy imports, allocator growth); rates are steady state
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            out = fn()
            dt = time.perf_counter() - t0
        res[name] = {"videos": n, "seconds": dt, "rate": _rate(n, dt), "peak_rss_mib": mem.peak_mib}
        print(f"  {name:<12} {n:>5} in {dt:6.2f}s  {_rate(n, dt):8.1f}/s  peak +{mem.peak_mib:.0f} MiB", flush=True)
        return out

    run("list", len(uris), lambda: list_videos(f"s3://{BUCKET}/videos/", s3=s3))
    blobs = run("fetch", m, lambda: [read_bytes(u, s3=s3) for u in uris[:m]])
    # Decode vs the raw decoder: interleaved video by video (A, B, A, B, ...), so a neighbour's load on this shared
    # machine hits both alike; their ratio is what the target is about.
    sampler = get_sampler("pyav")
    raw_pyav_sample(blobs[0], prof.num_frames)
    sampler.sample(blobs[0], prof.num_frames, prof.max_pixels)
    t_raw = t_ours = 0.0
    videos = []
    with PeakRSS() as mem:
        for b in blobs:
            t0 = time.perf_counter()
            raw_pyav_sample(b, prof.num_frames)
            t1 = time.perf_counter()
            videos.append(sampler.sample(b, prof.num_frames, prof.max_pixels).frames)
            t2 = time.perf_counter()
            t_raw, t_ours = t_raw + (t1 - t0), t_ours + (t2 - t1)
    for name, t in (("raw_decoder", t_raw), ("decode", t_ours)):
        res[name] = {"videos": m, "seconds": t, "rate": _rate(m, t), "peak_rss_mib": mem.peak_mib}
        print(f"  {name:<12} {m:>5} in {t:6.2f}s  {_rate(m, t):8.1f}/s  (interleaved)", flush=True)
    pre = VideoPreprocessor(model_dir, prof)
    items = run("preprocess", m, lambda: [pre.one(v) for v in videos], warm=lambda: pre.one(videos[0]))
    emb = TransformersEmbedder(model_dir, prof, threads=1)
    bs = args.embed_batch
    vecs = run("embed", m, lambda: np.concatenate([emb.embed_inputs(items[i:i + bs]) for i in range(0, m, bs)]),
               warm=lambda: emb.embed_inputs(items[:bs]))

    import pyarrow as pa

    writer = VideoTableWriter(TableRef.parse(str(work / "write.lancedb" / "t")), dim=emb.dim,
                              metadata={"model_id": "bench"})
    n_rows = len(uris)
    table = pa.table({
        S.VIDEO_ID: [f"{i:032x}" for i in range(n_rows)], S.URI: uris, S.SIZE: pa.array([1] * n_rows, pa.int64()),
        S.ETAG: ["e"] * n_rows, S.DURATION: [1.0] * n_rows, S.FPS: [15.0] * n_rows,
        S.NUM_FRAMES: pa.array([8] * n_rows, pa.int32()), S.MODEL_ID: ["bench"] * n_rows,
        S.EMBEDDING: pa.FixedSizeListArray.from_arrays(pa.array(np.resize(vecs, (n_rows, emb.dim)).reshape(-1)),
                                                       emb.dim),
        S.CREATED_AT: pa.array([0] * n_rows, pa.timestamp("us", tz="UTC")),
    })
    commit = args.commit_rows
    run("write", n_rows, lambda: [writer.write_rows(table.slice(i, commit)) for i in range(0, n_rows, commit)])
    res["cpu_actor_chain"] = {"rate": 1.0 / (1.0 / res["decode"]["rate"] + 1.0 / res["preprocess"]["rate"])}
    return res


# --------------------------------------------------------------------------- end to end


def job_config(args, moto: MotoProcess, model_dir: Path, work: Path, preprocess: str):
    from tara_batch.config import EmbedJobConfig, load_config

    table = work / f"e2e-{preprocess}.lancedb" / "videos"
    return load_config(EmbedJobConfig, None, [
        f"input.source=s3://{BUCKET}/videos/", f"model.path={model_dir}", f"output.table={table}",
        f"embed.batch_size={args.embed_batch}", f"embed.preprocess={preprocess}", f"decode.batch_size={args.decode_batch}",
        f"output.commit_rows={args.commit_rows}", f"ray.num_cpus={args.cpus}", *moto.overrides(), *args.set])


def measure_actors(args, moto: MotoProcess, model_dir: Path, work: Path, preprocess: str) -> dict[str, Any]:
    """Each actor pool's ceiling, measured the way the job runs it: the job's own stage objects (`stage_specs`),
    inside a Ray actor with the job's resources (so the same CPU reservation, OMP/torch threads and environment),
    on `--stage-videos` videos of the archive, one actor at a time; the pool's ceiling is that rate times the actors
    that can run at once (CPU actors: no more than the CPUs the pool reserves, at one decoder thread each)."""
    import ray

    from tara_batch.embed.dataset import plan_resources, preprocess_on_decode_actors, stage_specs
    from tara_batch.embed.job import list_inputs
    from tara_batch.embed.stages import CpuStage, EmbedStage

    cfg = job_config(args, moto, model_dir, work, preprocess)
    listing = list_inputs(cfg).slice(0, args.stage_videos)
    plan = plan_resources(cfg, ray.cluster_resources(), listing.num_rows)
    on_cpu = preprocess_on_decode_actors(cfg, plan)
    cpu, emb = stage_specs(cfg, plan, "", on_cpu)

    @ray.remote
    class Probe:
        def __init__(self, cls, kwargs):
            self.stage = cls(**kwargs)

        def run(self, batches):
            out = []
            t0 = time.perf_counter()
            for b in batches:
                r = self.stage(b)
                out += [r] if isinstance(r, dict) else list(r)
            return time.perf_counter() - t0, out

    def batches(table, size):
        return [{k: np.asarray(v) if not isinstance(v, list) else v for k, v in table.slice(i, size).to_pydict().items()}
                for i in range(0, table.num_rows, size)]

    def rebatch(outs, size):
        rows = [{k: b[k][i] for k in b} for b in outs for i in range(len(b[next(iter(b))]))]
        joined = []
        for i in range(0, len(rows), size):
            part = rows[i:i + size]
            joined.append({k: _stack([r[k] for r in part]) for k in part[0]})
        return joined

    n = listing.num_rows
    cpu_probe = Probe.options(**cpu.resources).remote(CpuStage, cpu.kwargs)
    in_batches = batches(listing, cfg.decode.batch_size)
    ray.get(cpu_probe.run.remote(in_batches[:1]))  # warm: imports, decoder and processor set-up
    cpu_s, cpu_out = ray.get(cpu_probe.run.remote(in_batches))
    ray.kill(cpu_probe)
    emb_probe = Probe.options(**emb.resources).remote(EmbedStage, emb.kwargs)
    emb_in = rebatch(cpu_out, cfg.embed.batch_size)
    ray.get(emb_probe.run.remote(emb_in[:1]))
    emb_s, _ = ray.get(emb_probe.run.remote(emb_in))
    ray.kill(emb_probe)
    # Decode actors run one decoder thread each; at most as many run at once as the CPUs the pool reserves.
    parallel_cpu = min(plan.decode_actors, max(1.0, plan.decode_actors * cfg.decode.num_cpus / cfg.decode.threads))
    out = {"preprocess_on": "cpu_actors" if on_cpu else "embed_actors", "videos": n,
           "cpu_actor": {"rate": n / cpu_s, "actors": plan.decode_actors, "parallel": parallel_cpu,
                         "ceiling": n / cpu_s * parallel_cpu},
           "embed_actor": {"rate": n / emb_s, "actors": plan.embed_actors,
                           "ceiling": n / emb_s * plan.embed_actors}}
    for k in ("cpu_actor", "embed_actor"):
        print(f"  {k:<12} {n:>5} in one actor {out[k]['rate']:8.1f}/s  x {out[k].get('parallel', out[k]['actors']):g} "
              f"-> pool ceiling {out[k]['ceiling']:.1f}/s", flush=True)
    return out


def _stack(values: list) -> Any:
    first = values[0]
    if isinstance(first, np.ndarray) and all(v.shape == first.shape for v in values):
        return np.stack(values)
    if isinstance(first, np.ndarray):
        out = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):
            out[i] = v
        return out
    return np.asarray(values, dtype=object if isinstance(first, str) else None)


def run_e2e(args, moto: MotoProcess, model_dir: Path, work: Path, preprocess: str) -> dict[str, Any]:
    from tara_batch.embed.job import run_embed

    cfg = job_config(args, moto, model_dir, work, preprocess)
    samples: list[dict[str, float]] = []

    def on_batch(summary) -> None:
        done = summary.embedded + summary.failed
        if not samples or done - samples[-1]["videos"] >= 25:
            samples.append({"videos": done, **actor_rss()})

    summary = run_embed(cfg, progress=False, on_batch=on_batch)
    growth = {}
    for k in ("cpu_actors", "embed_actors"):
        # each pool from video 100 to the last sample it was alive in (CPU actors finish before the embed queue)
        alive = [s for s in samples if s[k] > 0]
        at100 = next((s for s in alive if s["videos"] >= 100), None)
        growth[k] = alive[-1][k] / at100[k] if at100 and alive[-1] is not at100 else None
        growth[k + "_last_video"] = alive[-1]["videos"] if alive else None
    return {"preprocess": preprocess, "videos": summary.videos_in, "failed": summary.failed,
            # videos / span of the model actors' forwards (their clocks): start-up and model load excluded
            "steady_rate": summary.steady_videos_per_second,
            "overall_rate": summary.videos_per_second,
            "first_batch_seconds": summary.first_batch_seconds, "wall_seconds": summary.wall_seconds,
            "embed_busy_fraction": summary.embed_busy_fraction, "embed_queue_seconds": summary.embed_queue_seconds,
            "rss_samples": samples, "rss_growth_100_to_last": growth}


def report(res: dict[str, Any]) -> str:
    st = res["stages"]
    lines = ["| stage | videos/s (one process) | peak RSS (MiB over start) |", "|---|---:|---:|"]
    for name in ("list", "fetch", "raw_decoder", "decode", "preprocess", "embed", "write"):
        lines.append(f"| {name} | {st[name]['rate']:.1f} | {st[name]['peak_rss_mib']:.0f} |")
    lines.append(f"| cpu actor chain (decode + preprocess) | {st['cpu_actor_chain']['rate']:.1f} | |")
    lines.append(f"| embed actor chain (preprocess + embed) | "
                 f"{1 / (1 / st['preprocess']['rate'] + 1 / st['embed']['rate']):.1f} | |")
    pools = res["pools"]
    lines += ["", "| actor pool (job's stage in a Ray actor, job's resources) | one actor videos/s | at once | "
              "pool ceiling videos/s |", "|---|---:|---:|---:|",
              f"| CPU actors (fetch + decode{' + preprocess' if pools['preprocess_on'] == 'cpu_actors' else ''}) | "
              f"{pools['cpu_actor']['rate']:.1f} | {pools['cpu_actor']['parallel']:g} | "
              f"{pools['cpu_actor']['ceiling']:.1f} |",
              f"| model actors ({'preprocess + ' if pools['preprocess_on'] == 'embed_actors' else ''}embed) | "
              f"{pools['embed_actor']['rate']:.1f} | {pools['embed_actor']['actors']} | "
              f"{pools['embed_actor']['ceiling']:.1f} |"]
    lines += ["", "| end to end | steady videos/s | first batch (s) | embed busy | queue before embed (s) | "
              "RSS growth video 100 -> last (cpu / embed actors) |", "|---|---:|---:|---:|---:|---|"]
    for e in res["e2e"]:
        g = e["rss_growth_100_to_last"]
        fmt = "/".join(f"{g[k]:.3f}" if g[k] else "-" for k in ("cpu_actors", "embed_actors"))
        lines.append(f"| preprocess on {e['preprocess']} | {e['steady_rate']:.1f} | {e['first_batch_seconds']:.1f} | "
                     f"{e['embed_busy_fraction']:.0%} | {e['embed_queue_seconds']:.2f} | {fmt} |")
    r = res["ratios"]
    lines += ["", f"ceiling: {r['slowest_stage']} ({r['slowest_rate']:.1f}/s; list, write, CPU and model pools)",
              f"end to end / ceiling: {r['e2e_vs_slowest']:.2f} (at most 1 by construction; target >= "
              f"{TARGETS['e2e_vs_slowest']})",
              f"decode / raw decoder: {r['decode_vs_raw']:.2f} (target >= {TARGETS['decode_vs_raw']})",
              f"actor RSS growth video 100 -> last: {r['memory_growth']:.3f} (target <= {TARGETS['memory_growth']})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=500, help="objects in the archive")
    ap.add_argument("--unique", type=int, default=25, help="distinct clips encoded (objects cycle through them)")
    ap.add_argument("--size", default="320x240", help="WxH of the clips")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--fps", type=float, default=15.0)
    ap.add_argument("--stage-videos", type=int, default=100, help="videos per standalone stage measurement")
    ap.add_argument("--embed-batch", type=int, default=8)
    ap.add_argument("--decode-batch", type=int, default=4)
    ap.add_argument("--commit-rows", type=int, default=512)
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray session")
    ap.add_argument("--preprocess", choices=["decode_actors", "embed_actors"], default="embed_actors",
                    help="embed.preprocess of the main end-to-end run (embed_actors = auto on a CPU-only cluster)")
    ap.add_argument("--compare-preprocess", action="store_true",
                    help="also run end to end with the other preprocessing placement")
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "tara-batch-bench")
    ap.add_argument("--out", type=Path, default=Path("bench-pipeline.json"))
    ap.add_argument("--set", nargs="*", default=[], help="extra embed job overrides (section.field=value)")
    args = ap.parse_args(argv)
    w, h = (int(x) for x in args.size.lower().split("x"))

    from tara_batch.cluster import init_ray
    from tara_batch.config import RayConfig
    from tara_batch.models.tiny import build_tiny_model

    # Ray before LanceDB (the write stage): Ray's processes must fork before LanceDB's runtime threads exist.
    init_ray(RayConfig(num_cpus=args.cpus))
    args.cache_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    clips = make_archive(args.cache_dir, args.unique, (w, h), args.seconds, args.fps)
    model_dir = args.cache_dir / "tiny-model"
    if not (model_dir / "config.json").exists():
        build_tiny_model(model_dir, seed=0)
    res: dict[str, Any] = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                           "clip_bytes_mean": float(np.mean([len(c) for c in clips]))}
    with MotoProcess() as moto, tempfile.TemporaryDirectory() as tmp:
        uris = upload(moto.options(), clips, args.videos)
        print(f"archive: {args.videos} objects ({args.unique} distinct {w}x{h} clips, {args.seconds:g} s at "
              f"{args.fps:g} fps) in {time.perf_counter() - t0:.1f}s", flush=True)
        print("standalone stages:", flush=True)
        res["stages"] = measure_stages(args, moto, uris, model_dir, Path(tmp))
        print("actor pools (the job's stages in Ray actors with the job's resources):", flush=True)
        res["pools"] = measure_actors(args, moto, model_dir, Path(tmp), args.preprocess)
        res["e2e"] = []
        if not args.skip_e2e:
            modes = [args.preprocess] + ([m for m in ("decode_actors", "embed_actors") if m != args.preprocess]
                                         if args.compare_preprocess else [])
            for mode in modes:
                print(f"end to end (preprocess on {mode}) ...", flush=True)
                res["e2e"].append(run_e2e(args, moto, model_dir, Path(tmp), mode))
    st, pools = res["stages"], res["pools"]
    # The ceiling of the whole pipeline: the slowest of the driver's own steps (listing, writing: one thread, as in
    # the job) and of the two actor pools measured under their real resources. End to end cannot beat it, so the
    # ratio reads as the fraction of the ceiling the job reaches.
    candidates = {"list": st["list"]["rate"], "write": st["write"]["rate"],
                  "cpu_actors": pools["cpu_actor"]["ceiling"], "embed_actors": pools["embed_actor"]["ceiling"]}
    slowest = min(candidates, key=candidates.get)
    e2e = res["e2e"][0] if res["e2e"] else None
    # the worst pool that lived past video 100 (CPU actors often finish decoding before the model reaches it)
    measured = [e2e["rss_growth_100_to_last"][k] for k in ("cpu_actors", "embed_actors")] if e2e else []
    growth = max((g for g in measured if g is not None), default=float("nan"))
    res["ratios"] = {"slowest_stage": slowest, "slowest_rate": candidates[slowest], "ceilings": candidates,
                     "e2e_vs_slowest": e2e["steady_rate"] / candidates[slowest] if e2e else float("nan"),
                     "decode_vs_raw": st["decode"]["rate"] / st["raw_decoder"]["rate"], "memory_growth": growth}
    res["targets"] = TARGETS
    table = report(res)
    print("\n" + table)
    args.out.write_text(json.dumps(res, indent=2, default=float) + "\n")
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":  # Ray workers start with spawn semantics for some libraries: keep the guard
    raise SystemExit(main())
