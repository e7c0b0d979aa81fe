"""The scale benchmark script runs (tiny sizes) and its JSON carries the figures the README quotes."""

from __future__ import annotations

import json

from benchmarks.eval_scale import main


def test_eval_scale_benchmark_small(tmp_path):
    out = tmp_path / "scale.json"
    assert main(["--gallery", "500", "--queries", "40", "--dim", "16", "--chunk", "16", "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    text = json.dumps(doc)
    assert "retrieval_report" in text and "mean_average_precision" in text
