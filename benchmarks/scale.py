"""Archive scale: grow a real embeddings table to N rows through the embed job's own write path and measure what a
million-row index costs: commit latency per batch, driver memory, disk, fragments, query latency (flat and
indexed) as it grows; the "already done?" planning over an N-entry listing; ANN index builds; recall@10 against
exact search; filtered query latency; compaction.

    python benchmarks/scale.py --rows 100000 --dim 128 --out scale-100k.json          # a few minutes
    python benchmarks/scale.py --rows 100000 --dim 128 --no-maintenance --out base.json  # before the fix
    python benchmarks/scale.py --rows 1000000 --dim 128 --out scale-1m.json             # the README's figures
    python benchmarks/scale.py --rows 1000000 --dim 3584 --runs 5 --out scale-1m-3584.json   # ~14 GB on disk
    python benchmarks/scale.py --rows 100000 --dim 3584 --vector-dtype float16 --out f16.json

Writes: synthetic clustered unit vectors (so ANN recall means something) with synthetic listings, committed in
batches of `--batch` rows (the embed job's `output.commit_rows`) by `VideoTableWriter.write_rows` (merge-insert on
video_id) into a table made as the embed job makes it; the growth is split into `--runs` runs, and after each run
the job's end-of-run maintenance is applied (writer.maintain: key index + compaction past the thresholds; the ANN
index policy: built past 50,000 rows, new rows folded in after every run). `--no-maintenance` turns the writer's
key index and compaction off: the behaviour before issue 15.
Queries: `--queries` fresh points of the same distribution; exact neighbours by numpy (small dims) or by LanceDB
with the index bypassed. Driver memory: peak RSS sampled every 20 ms.
Outputs `--out` (JSON) and a PNG beside it: commit latency and query latency against table size.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.memory import vm_kib  # noqa: E402  (the one /proc reader of benchmarks/)


class PeakRSS:
    """Peak resident memory of this process while the block runs (sampled), in MiB over the start."""

    def __enter__(self):
        self.start = vm_kib("VmRSS") / 1024
        self.peak = self.start
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self.peak = max(self.peak, vm_kib("VmRSS") / 1024)
                time.sleep(0.02)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, vm_kib("VmRSS") / 1024)


class Data:
    """Deterministic clustered unit vectors: rows [a, b) are always the same vectors."""

    def __init__(self, dim: int, seed: int = 0, clusters: int = 1024, spread: float = 0.35) -> None:
        self.dim, self.seed, self.spread = dim, seed, spread
        self.centres = np.random.default_rng([seed, 1]).normal(size=(clusters, dim)).astype(np.float32)

    BLOCK = 512  # rows are drawn per block of this many, so any range of rows is the same whatever the batching

    def _block(self, b: int, stream: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, stream, b])
        v = self.centres[rng.integers(0, len(self.centres), self.BLOCK)] + \
            self.spread * rng.normal(size=(self.BLOCK, self.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def vectors(self, start: int, n: int, stream: int = 0) -> np.ndarray:
        first, last = start // self.BLOCK, (start + n - 1) // self.BLOCK
        v = np.concatenate([self._block(b, stream) for b in range(first, last + 1)])
        return v[start - first * self.BLOCK:start - first * self.BLOCK + n]

    @staticmethod
    def uri(i: int) -> str:
        return f"s3://bench/videos/{i // 1000:05d}/{i:09d}.mp4"


def rows_table(data: Data, start: int, n: int, model_id: str, dtype: str):
    import pyarrow as pa

    from tara_batch import schema as S
    from tara_batch.io.uris import hash_id

    v = data.vectors(start, n)
    uris = [data.uri(i) for i in range(start, start + n)]
    rng = np.random.default_rng([data.seed, 7, start])
    return pa.table({
        S.VIDEO_ID: pa.array([hash_id(u) for u in uris]), S.URI: pa.array(uris),
        S.SIZE: pa.array(rng.integers(10**5, 10**8, n)), S.ETAG: pa.array([f"{i:032x}" for i in range(start, start + n)]),
        S.DURATION: pa.array(rng.uniform(1, 600, n)), S.FPS: pa.array(np.full(n, 25.0)),
        S.NUM_FRAMES: pa.array(np.full(n, 8, np.int32)), S.MODEL_ID: pa.array([model_id] * n),
        S.EMBEDDING: pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), data.dim),
        S.CREATED_AT: pa.array(np.full(n, np.datetime64("2026-01-01T00:00:00", "us")),
                               pa.timestamp("us", tz="UTC")),
    })


def disk_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def query_latency(table, queries: np.ndarray, *, flat: bool, where: str | None = None, k: int = 10,
                  nprobes: int = 20, refine: int | None = 5) -> tuple[dict, list[list[str]]]:
    from tara_batch import schema as S

    times, ids = [], []
    for q in queries:
        t0 = time.perf_counter()
        qb = table.search(q, vector_column_name=S.EMBEDDING).distance_type("cosine").limit(k)
        if flat:
            qb = qb.bypass_vector_index()
        else:
            qb = qb.nprobes(nprobes)
            if refine:
                qb = qb.refine_factor(refine)
        if where:
            qb = qb.where(where, prefilter=True)
        res = qb.select([S.VIDEO_ID, "_distance"]).to_arrow()
        times.append((time.perf_counter() - t0) * 1000)
        ids.append(res.column(S.VIDEO_ID).to_pylist())
    a = np.asarray(times)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean())}, ids


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def exact_neighbours(data: Data, rows: int, queries: np.ndarray, k: int = 10) -> list[list[str]] | None:
    """Brute force in numpy, chunked (None when the vectors would not fit comfortably: use LanceDB flat instead)."""
    from tara_batch.io.uris import hash_id

    if rows * data.dim * 4 > 3 * 2**30:
        return None
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.zeros((len(queries), k), np.int64)
    for start in range(0, rows, 50_000):
        n = min(50_000, rows - start)
        s = queries @ data.vectors(start, n).T  # [Q, n]
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
        cand_i = np.concatenate([best_i, top + start], 1)
        order = np.argsort(-cand_s, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return [[hash_id(data.uri(int(i))) for i in row] for row in best_i]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--batch", type=int, default=512, help="rows per commit (output.commit_rows)")
    ap.add_argument("--runs", type=int, default=10, help="incremental runs the growth is split into")
    ap.add_argument("--queries", type=int, default=100)
    ap.add_argument("--vector-dtype", default="float32", choices=["float32", "float16"])
    ap.add_argument("--no-maintenance", action="store_true", help="no key index, no compaction (the old writer)")
    ap.add_argument("--skip-hnsw", action="store_true")
    ap.add_argument("--skip-pq", action="store_true", help="only the default index (IVF_PQ takes ~8 min at 3584-d)")
    ap.add_argument("--root", help="work directory (kept); default: a temporary one, removed")
    ap.add_argument("--out", default="scale.json")
    args = ap.parse_args(argv)

    from tara_batch.embed.job import select_todo
    from tara_batch.index.ann import MIN_INDEX_ROWS, build_index, has_index, maintain_index
    from tara_batch.index.maintenance import MaintenancePolicy, fragments
    from tara_batch.index.tables import TableRef
    from tara_batch.index.writer import VideoTableWriter
    from tara_batch.io.listing import rows_to_table

    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="tara-scale-"))
    db = root / "index.lancedb"
    shutil.rmtree(db, ignore_errors=True)
    data = Data(args.dim)
    queries = data.vectors(0, args.queries, stream=99)
    model_id = "bench" + args.vector_dtype
    meta = {"model_id": model_id, "dim": args.dim, "checkpoint": {"path": "synthetic"}}
    policy = MaintenancePolicy(enabled=not args.no_maintenance)
    writer = VideoTableWriter(TableRef(str(db), "videos"), dim=args.dim, metadata=meta,
                              vector_dtype=args.vector_dtype, policy=policy)
    # Queries go through a connection of their own with LanceDB's default caches, as a search process would; the
    # writer's connection keeps its capped caches (VideoTableWriter.CACHE_MIB). Opened per use: the latest version.
    from tara_batch.index.tables import connect

    search_db = connect(str(db))

    def reader():
        return search_db.open_table(writer.ref.name)

    per_run = -(-args.rows // args.runs)
    commits: list[dict] = []
    growth: list[dict] = []
    t_all = time.perf_counter()
    written = 0
    with PeakRSS() as grow_rss:
        for run in range(args.runs):
            t_run = time.perf_counter()
            end = min(args.rows, written + per_run)
            while written < end:
                n = min(args.batch, end - written)
                rows = rows_table(data, written, n, model_id, args.vector_dtype)
                t0 = time.perf_counter()
                writer.write_rows(rows)
                total = time.perf_counter() - t0
                # the merge-insert itself, and the writer's periodic maintenance (key index, compaction) apart
                commits.append({"rows_before": written, "seconds": total - writer.last_maintenance_s,
                                "maintenance_s": writer.last_maintenance_s})
                written += n
            # the embed job's end of run: writer maintenance, then the ANN index policy
            t0 = time.perf_counter()
            writer.maintain()
            action = maintain_index(writer.table, mode="auto", threshold=50_000, changed=True)
            maintenance_s = time.perf_counter() - t0
            flat, _ = query_latency(reader(), queries[:20], flat=True)
            point = {"rows": written, "run_seconds": time.perf_counter() - t_run, "maintenance_s": maintenance_s,
                     "index_action": action, "fragments": fragments(writer.table), "disk_mib": disk_mib(db),
                     "rss_mib": vm_kib("VmRSS") / 1024, "flat_query": flat}
            if has_index(writer.table):
                point["indexed_query"], _ = query_latency(reader(), queries[:20], flat=False)
            growth.append(point)
            print(f"run {run + 1}/{args.runs}: {written} rows, commit p50 "
                  f"{1000 * np.median([c['seconds'] for c in commits[-(end // args.batch):]]):.0f} ms, "
                  f"{point['fragments']} fragments, {point['disk_mib']:.0f} MiB, flat p50 {flat['p50_ms']:.0f} ms"
                  + (f", indexed p50 {point['indexed_query']['p50_ms']:.1f} ms" if "indexed_query" in point else ""),
                  flush=True)
    secs = np.asarray([c["seconds"] for c in commits])
    maint = np.asarray([c["maintenance_s"] for c in commits])
    tenth = max(1, len(secs) // 10)
    amortized = secs + maint  # what a commit costs on average once the pauses are spread over the commits
    report: dict = {
        "rows": written, "dim": args.dim, "batch": args.batch, "runs": args.runs, "vector_dtype": args.vector_dtype,
        "maintenance": not args.no_maintenance, "grow_seconds": time.perf_counter() - t_all,
        "grow_peak_rss_mib_over_start": grow_rss.peak - grow_rss.start,
        "commit_ms": {"first_10pct_mean": 1000 * float(secs[:tenth].mean()),
                      "last_10pct_mean": 1000 * float(secs[-tenth:].mean()),
                      "ratio_last_to_first": float(secs[-tenth:].mean() / secs[:tenth].mean()),
                      "p50": 1000 * float(np.median(secs)), "p99": 1000 * float(np.percentile(secs, 99))},
        "amortized_commit_ms": {"first_10pct_mean": 1000 * float(amortized[:tenth].mean()),
                                "last_10pct_mean": 1000 * float(amortized[-tenth:].mean()),
                                "ratio_last_to_first": float(amortized[-tenth:].mean() / amortized[:tenth].mean())},
        "writer_optimized": writer.optimized, "growth": growth,
        "commits": [{"rows_before": c["rows_before"], "ms": 1000 * c["seconds"],
                     "maintenance_ms": 1000 * c["maintenance_s"]} for c in commits],
    }

    # planning: "what is already done?" over a listing of rows + 10% new entries (the embed job's step 2)
    extra = written // 10
    with PeakRSS() as plan_rss:
        t0 = time.perf_counter()
        listing = rows_to_table((data.uri(i), 10**6, f"{i:032x}") for i in range(written + extra))
        t_list = time.perf_counter() - t0
        done, failed = writer.done_ids(), writer.failure_state()
        sel = select_todo(listing, done, failed, max_attempts=3)
        plan_s = time.perf_counter() - t0
    assert sel.todo.num_rows == extra, (sel.todo.num_rows, extra)
    report["planning"] = {"listing_entries": listing.num_rows, "build_listing_s": t_list, "seconds": plan_s,
                          "peak_rss_mib_over_start": plan_rss.peak - plan_rss.start, "todo": sel.todo.num_rows}
    del listing, done, failed, sel
    print(f"planning over {written + extra} entries: {plan_s:.1f} s, +{report['planning']['peak_rss_mib_over_start']:.0f}"
          f" MiB", flush=True)

    # exact neighbours, then every index type and setting against them
    truth = exact_neighbours(data, written, queries)
    if truth is None:
        _, truth = query_latency(reader(), queries, flat=True)
    flat, _ = query_latency(reader(), queries, flat=True)
    report["flat_query"] = flat
    indexes: dict = {}
    kinds = [] if args.skip_hnsw else ["IVF_HNSW_SQ"]  # the default index; built last, left for the filter runs
    for kind in ([] if args.skip_pq else ["IVF_PQ"]) + kinds:
        if written < MIN_INDEX_ROWS:
            break
        indices = db / f"{writer.ref.name}.lance" / "_indices"
        before = disk_mib(indices) if indices.exists() else 0.0
        t0 = time.perf_counter()
        desc = build_index(writer.table, index_type=kind)
        # the new index's files (the one it replaces stays on disk until old versions are cleaned up)
        entry = {"description": desc, "build_s": time.perf_counter() - t0, "index_mib": disk_mib(indices) - before,
                 "settings": {}}
        for nprobes, refine in ((20, None), (20, 5), (40, 5), (64, 10)):
            lat, found = query_latency(reader(), queries, flat=False, nprobes=nprobes, refine=refine)
            entry["settings"][f"nprobes={nprobes},refine={refine}"] = {**lat, "recall@10": recall(found, truth)}
        indexes[kind] = entry
        print(f"{kind}: built in {entry['build_s']:.1f} s, {entry['index_mib']:.0f} MiB; " + "; ".join(
            f"{k}: recall {v['recall@10']:.3f} p99 {v['p99_ms']:.1f} ms" for k, v in entry["settings"].items()),
            flush=True)
    report["indexes"] = indexes

    # filters on the indexed table
    from tara_batch.search.filters import Filters

    filters = {"duration 60-300 s": Filters(duration_min=60, duration_max=300),
               "uri prefix (1%)": Filters(uri_prefix="s3://bench/videos/0000")}
    report["filtered_query"] = {}
    for name, f in filters.items():
        lat, _ = query_latency(reader(), queries, flat=False, where=f.where(segments=False))
        report["filtered_query"][name] = lat
        print(f"filtered ({name}): p50 {lat['p50_ms']:.1f} ms p99 {lat['p99_ms']:.1f} ms", flush=True)

    # compaction: fragments and query latency before / after an explicit optimize
    from datetime import timedelta

    from tara_batch.index.maintenance import optimize

    before_frag = fragments(writer.table)
    before_q, _ = query_latency(reader(), queries, flat=False)
    opt = optimize(writer.table, retention=timedelta(0))
    after_q, _ = query_latency(reader(), queries, flat=False)
    report["compaction"] = {"fragments_before": before_frag, "fragments_after": opt.fragments_after,
                            "seconds": opt.seconds, "query_before": before_q, "query_after": after_q,
                            "disk_mib_after": disk_mib(db)}
    print(f"optimize: fragments {before_frag} -> {opt.fragments_after} in {opt.seconds:.1f} s; indexed p50 "
          f"{before_q['p50_ms']:.1f} -> {after_q['p50_ms']:.1f} ms", flush=True)

    out = Path(args.out)
    out.write_text(json.dumps(report, indent=2) + "\n")
    plot(report, out.with_suffix(".png"))
    c, am = report["commit_ms"], report["amortized_commit_ms"]
    big = [p["maintenance_ms"] / 1000 for p in pauses(report)]
    print(f"merge-insert commit first 10% {c['first_10pct_mean']:.1f} ms, last 10% {c['last_10pct_mean']:.1f} ms "
          f"(x{c['ratio_last_to_first']:.2f}); with maintenance amortized {am['first_10pct_mean']:.1f} -> "
          f"{am['last_10pct_mean']:.1f} ms (x{am['ratio_last_to_first']:.2f}); {len(big)} maintenance pauses"
          + (f", median {np.median(big):.1f} s, max {max(big):.1f} s" if big else "")
          + f"; wrote {out} and {out.with_suffix('.png')}")
    if not args.root:
        shutil.rmtree(root, ignore_errors=True)
    return 0


def pauses(report: dict) -> list[dict]:
    """The commits that paused for maintenance (the checks that found nothing to do take a few ms)."""
    return [c for c in report["commits"] if c["maintenance_ms"] > 50]


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    x = np.asarray([c["rows_before"] for c in report["commits"]])
    y = np.asarray([c["ms"] for c in report["commits"]])
    a.plot(x, y, ".", ms=2, alpha=0.4, label="merge-insert")
    big = pauses(report)
    if big:
        a.plot([p["rows_before"] for p in big], [p["maintenance_ms"] for p in big], "x", ms=4,
               label="maintenance pause")
    if len(y) > 50:
        w = max(1, len(y) // 50)
        a.plot(x[w - 1:], np.convolve(y, np.ones(w) / w, mode="valid"), "-", label=f"mean of {w}")
    a.set(xlabel="rows in table", ylabel="ms", yscale="log",
          title=f"commits of {report['batch']} rows, dim {report['dim']}"
                + ("" if report["maintenance"] else " (no key index / compaction)"))
    a.legend()
    g = report["growth"]
    b.plot([p["rows"] for p in g], [p["flat_query"]["p50_ms"] for p in g], "o-", label="flat p50")
    idx = [p for p in g if "indexed_query" in p]
    if idx:
        b.plot([p["rows"] for p in idx], [p["indexed_query"]["p50_ms"] for p in idx], "s-", label="indexed p50")
        b.plot([p["rows"] for p in idx], [p["indexed_query"]["p99_ms"] for p in idx], "s--", label="indexed p99")
    b.set(xlabel="rows in table", ylabel="query latency (ms)", yscale="log", title="top-10 cosine query")
    b.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
