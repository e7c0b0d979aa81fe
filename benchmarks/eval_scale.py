"""Scale benchmark for the eval metrics: time and peak memory of retrieval and mAP on a 100k-video gallery.

Why: the metrics in `tara_batch.eval.metrics` score ``chunk`` queries at a time so memory is O(chunk * G), never
the O(Q * G) of a full score matrix. This script checks that claim, and the wall time, at the scale of a large
gallery: G=100,000 videos of Tarsier2-7B's hidden size d=3584, Q=5,000 queries (all synthetic, seeded, L2-normalised
float32 random vectors; the metric values themselves are near chance and only reported as a sanity check).

Cases, each run once with the given ``--chunk`` (default: the metrics' default chunk):
* ``retrieval_report``: single-target text->video R@1/5/10 and MdR (each query's target is a random gallery index);
* ``mAP single``: `mean_average_precision` with the same single targets;
* ``mAP multi``: `mean_average_precision` with 1-5 random relevant gallery items per query (index lists).

Memory: a background thread samples this process's VmRSS from /proc/self/status every 10 ms; the peak is reported
in MiB over a baseline taken after the arrays are built (the arrays' own size is reported separately). The kernel's
VmHWM is also reset (``/proc/self/clear_refs`` <- 5) before each case and reported the same way, which catches
spikes shorter than the sampling period. For comparison: the size of a naive full [Q, G] float32 score matrix.

    python benchmarks/eval_scale.py                                # defaults; Markdown table, JSON to --out
    python benchmarks/eval_scale.py --queries 1000 --dim 1024      # smaller / quicker
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script from a checkout
    sys.path.insert(0, str(REPO))

from benchmarks.memory import vm_kib  # noqa: E402
from tara_batch.eval import metrics  # noqa: E402

MIB = 1024 * 1024



def reset_hwm() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where not permitted."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class RssSampler:
    """Background thread recording the max VmRSS (KiB) seen, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.01):
        self.interval = interval
        self.peak_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kib = max(self.peak_kib, vm_kib("VmRSS"))
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak_kib = vm_kib("VmRSS")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_kib = max(self.peak_kib, vm_kib("VmRSS"))


def unit_vectors(rng: np.random.Generator, n: int, d: int, block: int = 8192) -> np.ndarray:
    """``[n, d]`` float32 L2-normalised Gaussian rows, built in blocks (no float64 temporaries of full size)."""
    out = np.empty((n, d), dtype=np.float32)
    for start in range(0, n, block):
        x = out[start : start + block]
        rng.standard_normal(out=x, dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return out


def measure(name: str, fn: Callable[[], Any], baseline_kib: int) -> dict[str, Any]:
    gc.collect()
    hwm_ok = reset_hwm()
    with RssSampler() as sampler:
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
    hwm = vm_kib("VmHWM")
    return {
        "case": name,
        "seconds": seconds,
        "peak_rss_over_baseline_mib": (sampler.peak_kib - baseline_kib) / 1024,
        "vmhwm_over_baseline_mib": (hwm - baseline_kib) / 1024 if hwm_ok else None,
        "rss_samples": sampler.samples,
        "result": result,
    }


def fmt_result(r: Any) -> str:
    if isinstance(r, dict):
        return ", ".join(f"{k} {v:.4g}" for k, v in r.items())
    return f"mAP {100 * r:.4g}%"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gallery", type=int, default=100_000, help="gallery size G (videos)")
    ap.add_argument("--queries", type=int, default=5_000, help="number of queries Q")
    ap.add_argument("--dim", type=int, default=3584, help="embedding dim d (Tarsier2-7B hidden size: 3584)")
    ap.add_argument("--chunk", type=int, default=metrics.DEFAULT_CHUNK, help="query rows scored at a time")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("/tmp/tara-eval-scale.json"), help="JSON results")
    args = ap.parse_args(argv)
    if min(args.gallery, args.queries, args.dim, args.chunk) < 1:
        ap.error("--gallery, --queries, --dim and --chunk must be >= 1")
    G, Q, d = args.gallery, args.queries, args.dim

    t0 = time.perf_counter()
    rng = np.random.default_rng(args.seed)
    gallery = unit_vectors(rng, G, d)
    queries = unit_vectors(rng, Q, d)
    target = rng.integers(0, G, size=Q)
    n_rel = rng.integers(1, 6, size=Q)
    relevant = [rng.choice(G, size=int(k), replace=False) for k in n_rel]
    build_s = time.perf_counter() - t0
    arrays_bytes = gallery.nbytes + queries.nbytes + target.nbytes + sum(r.nbytes for r in relevant)
    gc.collect()
    baseline_kib = vm_kib("VmRSS")

    cases: list[tuple[str, Callable[[], Any]]] = [
        (
            "retrieval_report (single target)",
            lambda: metrics.retrieval_report(queries, gallery, target, chunk=args.chunk),
        ),
        (
            "mean_average_precision (single)",
            lambda: metrics.mean_average_precision(queries, gallery, target, chunk=args.chunk),
        ),
        (
            f"mean_average_precision (multi, {int(n_rel.sum())} relevant)",
            lambda: metrics.mean_average_precision(queries, gallery, relevant, chunk=args.chunk),
        ),
    ]
    rows = []
    for name, fn in cases:
        row = measure(name, fn, baseline_kib)
        rows.append(row)
        print(f"done: {name} in {row['seconds']:.1f} s", file=sys.stderr, flush=True)

    naive_mib = Q * G * 4 / MIB
    block_mib = min(args.chunk, Q) * G * 4 / MIB
    print(f"\nG={G:,} gallery x Q={Q:,} queries, d={d}, chunk={args.chunk}, seed={args.seed}")
    print(f"arrays: {arrays_bytes / MIB:,.0f} MiB (gallery {gallery.nbytes / MIB:,.0f} MiB); built in {build_s:.1f} s")
    print(f"baseline RSS after building: {baseline_kib / 1024:,.0f} MiB")
    print(
        f"naive full [Q, G] float32 score matrix: {naive_mib:,.0f} MiB; "
        f"one [chunk, G] float32 block: {block_mib:,.0f} MiB\n"
    )
    print("| case | wall (s) | peak RSS over baseline, sampled (MiB) | VmHWM over baseline (MiB) | result |")
    print("|---|---:|---:|---:|---|")
    for r in rows:
        hwm = "n/a" if r["vmhwm_over_baseline_mib"] is None else f"{r['vmhwm_over_baseline_mib']:,.0f}"
        print(
            f"| {r['case']} | {r['seconds']:.1f} | {r['peak_rss_over_baseline_mib']:,.0f} | {hwm} | "
            f"{fmt_result(r['result'])} |"
        )

    report = {
        "config": {"gallery": G, "queries": Q, "dim": d, "chunk": args.chunk, "seed": args.seed},
        "machine": {"python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform()},
        "arrays_mib": arrays_bytes / MIB,
        "build_seconds": build_s,
        "baseline_rss_mib": baseline_kib / 1024,
        "naive_full_scores_mib": naive_mib,
        "chunk_block_mib": block_mib,
        "cases": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
