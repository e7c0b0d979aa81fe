"""benchmarks/scale.py end to end at a toy size: it grows a real table through the writer, plans over a listing,
builds both index types, measures recall against numpy's exact neighbours and compacts; the report is consistent."""

from __future__ import annotations

import json

from benchmarks.scale import Data, main


def test_data_is_a_function_of_the_row_range():
    d = Data(16)
    a = d.vectors(0, 1500)
    b = d.vectors(700, 100)
    assert (a[700:800] == b).all()
    assert abs(float((a * a).sum(1).mean()) - 1.0) < 1e-5


def test_scale_benchmark_small_run(tmp_path):
    out = tmp_path / "scale.json"
    assert main(["--rows", "3000", "--dim", "16", "--batch", "256", "--runs", "3", "--queries", "20",
                 "--root", str(tmp_path / "w"), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["rows"] == 3000 and len(r["commits"]) == 12 and len(r["growth"]) == 3
    # the first commit creates the key index: its maintenance is timed apart from the merge-insert
    assert r["commits"][0]["maintenance_ms"] > 0 and all(c["maintenance_ms"] >= 0 for c in r["commits"])
    assert r["amortized_commit_ms"]["first_10pct_mean"] >= r["commit_ms"]["first_10pct_mean"]
    assert r["planning"]["todo"] == 300 and r["planning"]["listing_entries"] == 3300
    assert set(r["indexes"]) == {"IVF_PQ", "IVF_HNSW_SQ"}
    default = r["indexes"]["IVF_HNSW_SQ"]["settings"]["nprobes=20,refine=5"]
    assert default["recall@10"] >= 0.95  # the default index at the default settings
    assert r["compaction"]["fragments_after"] <= r["compaction"]["fragments_before"]
    assert out.with_suffix(".png").stat().st_size > 0
