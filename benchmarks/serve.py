"""Load benchmark of the query service: QPS and latency (split into query embedding and vector search) under 16
concurrent clients, on a 100k-row index, flat and with the default ANN index (IVF_HNSW_SQ), cache misses and cache hits.

    python benchmarks/serve.py                        # 100k rows at the tiny model's dim, 16 clients
    python benchmarks/serve.py --rows 20000 --requests 800 --out serve.json
    python benchmarks/serve.py --dim 3584             # a tiny model as wide as Tarsier2-7B's hidden size

Setup: the embed job writes a few real rows (the sample archive, the tiny model); then N synthetic unit vectors
(clustered) with synthetic listings are committed through the same writer (`index.writer.VideoTableWriter`) into
the same versioned table. The service runs as its own process (`tara-batch serve`, uvicorn) so clients and server
do not share a GIL; clients are threads with keep-alive HTTP connections on loopback. Each phase sends a bounded
number of requests: `miss` (every text distinct: the model embeds each query), `hit` (a few texts repeated: the LRU
answers). The server reports its own embed / search time per request; the client measures the total.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "mean": float("nan")}
    a = np.asarray(values)
    return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)),
            "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


def build_index(root: Path, rows: int, dim: int | None, seed: int = 0) -> tuple[str, int]:
    """(table uri, dim): real rows from the embed job, then `rows` synthetic ones through the same writer."""
    from tara_batch.config import EmbedJobConfig, load_config
    from tara_batch.embed.job import run_embed
    from tara_batch.index.catalog import resolve_table
    from tara_batch.index.tables import TableRef, connect, read_metadata
    from tara_batch.index.writer import VideoTableWriter
    from tara_batch.models.tiny import build_tiny_model
    from tara_batch.video.samples import write_sample_archive

    model = root / "model"
    if not (model / "config.json").exists():
        wide = {} if dim is None else {"text": dict(hidden_size=dim, intermediate_size=2 * dim, num_hidden_layers=1,
                                                    num_attention_heads=dim // 64, num_key_value_heads=1),
                                       "vision": dict(hidden_size=dim)}
        build_tiny_model(model, **wide)
    videos = root / "videos"
    if not videos.exists():
        write_sample_archive(videos, n=12, seed=1)
    table = str(root / "index.lancedb" / "videos")
    flags = {"input": {"source": str(videos)}, "model": {"path": str(model)},
             "output": {"table": table, "index": "never"}}
    summary = run_embed(load_config(EmbedJobConfig, None, ["profile.max_pixels=50176"], flags=flags), progress=False)
    ref = TableRef.parse(table)
    name = resolve_table(ref.db_uri, ref.name)
    tbl = connect(ref.db_uri).open_table(name)
    meta = read_metadata(tbl)
    d = int(meta["dim"])
    have = tbl.count_rows()
    if have < rows:
        writer = VideoTableWriter(TableRef(ref.db_uri, name), dim=d, metadata=meta)
        # the scale benchmark's clustered vectors and synthetic listings (one definition of the synthetic rows)
        from benchmarks.scale import Data, rows_table

        data = Data(d, seed=seed)
        batch = 20_000
        for start in range(have, rows, batch):
            writer.write_rows(rows_table(data, start, min(batch, rows - start), summary.model_id, "float32"))
    return table, d


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, table: str, port: int) -> None:
        env = dict(os.environ, TARA_BATCH_TORCH_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "tara_batch.cli", "-q", "serve", "--table", table,
                                      "--port", str(port)], env=env, cwd=str(REPO))
        from tara_batch.serve.app import wait_ready

        wait_ready(f"http://127.0.0.1:{port}", timeout_s=180)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def load(port: int, texts: list[str], clients: int, requests: int, k: int = 10) -> dict:
    """`requests` POST /api/search from `clients` threads; texts assigned round-robin."""
    lock = threading.Lock()
    totals, embeds, searches, errors = [], [], [], []
    counter = iter(range(requests))

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                break
            body = json.dumps({"mode": "text", "text": texts[i % len(texts)], "k": k})
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/search", body, {"content-type": "application/json"})
                resp = conn.getresponse()
                data = resp.read()
                dt = (time.perf_counter() - t0) * 1000
                if resp.status != 200:
                    with lock:
                        errors.append(resp.status)
                    continue
                t = json.loads(data)["timings_ms"]
                with lock:
                    totals.append(dt)
                    embeds.append(t["embed"])
                    searches.append(t["search"])
            except Exception as exc:  # a dropped connection counts as an error
                with lock:
                    errors.append(type(exc).__name__)
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.close()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    return {"requests": requests, "ok": len(totals), "errors": len(errors), "error_kinds": sorted(set(map(str, errors))),
            "qps": len(totals) / wall, "total_ms": percentiles(totals), "embed_ms": percentiles(embeds),
            "search_ms": percentiles(searches)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--dim", type=int, help="a tiny model of this hidden size (default: the tiny model's 128)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--requests", type=int, default=2000, help="per phase")
    ap.add_argument("--root", help="work directory (kept; default: a temporary one)")
    ap.add_argument("--out", default="serve_bench.json")
    args = ap.parse_args(argv)

    import ray

    from tara_batch.index.ann import build_index as ann_index
    from tara_batch.index.catalog import resolve_table
    from tara_batch.index.tables import TableRef, connect

    root = Path(args.root) if args.root else Path(tempfile.mkdtemp(prefix="tara-serve-bench-"))
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    t0 = time.perf_counter()
    table, dim = build_index(root, args.rows, args.dim)
    ray.shutdown()
    setup_s = time.perf_counter() - t0
    ref = TableRef.parse(table)
    tbl = connect(ref.db_uri).open_table(resolve_table(ref.db_uri, ref.name))
    rows = tbl.count_rows()
    miss = [f"a red circle number {i} moves left" for i in range(args.requests)]
    hit = [f"a repeated query {i}" for i in range(4)]
    report: dict = {"rows": rows, "dim": dim, "clients": args.clients, "setup_s": setup_s, "phases": {}}
    for phase in ("flat", "indexed"):
        if phase == "indexed":
            t = time.perf_counter()
            report["index"] = ann_index(tbl)
            report["index_build_s"] = time.perf_counter() - t
        port = free_port()
        server = Server(table, port)
        try:
            load(port, hit, 2, 40)  # warm-up: model loaded, caches filled
            report["phases"][phase] = {"miss": load(port, miss, args.clients, args.requests),
                                       "hit": load(port, hit, args.clients, args.requests)}
        finally:
            server.stop()
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    for phase, parts in report["phases"].items():
        for kind, r in parts.items():
            print(f"{phase:7s} {kind:4s}: {r['qps']:7.1f} QPS, errors {r['errors']}, total p50/p95/p99 "
                  f"{r['total_ms']['p50']:.1f}/{r['total_ms']['p95']:.1f}/{r['total_ms']['p99']:.1f} ms, embed p99 "
                  f"{r['embed_ms']['p99']:.2f} ms, search p50/p99 {r['search_ms']['p50']:.1f}/"
                  f"{r['search_ms']['p99']:.1f} ms")
    print(f"{rows} rows, dim {dim}; index: {report.get('index')} built in {report.get('index_build_s', 0):.1f} s; "
          f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
