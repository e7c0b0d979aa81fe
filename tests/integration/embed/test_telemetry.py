"""Prometheus metrics exported through Ray's metrics API while the embed job runs: scraped from the node's metrics
agent over HTTP, the driver's counts equal the rows written and the failure records of the run; the live actor
metrics (stage throughput, busy seconds, embed busy fraction) are there and in range. The run summary carries the
same figures."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tara_batch import schema as S
from tara_batch.cli import main as cli
from tara_batch.embed.telemetry import scrape, total
from tara_batch.index.status import open_failures
from tara_batch.search.session import SearchSession
from tara_batch.video.samples import write_bad_videos

pytestmark = pytest.mark.integration


def _wait_for(port: int, check, timeout: float = 40.0):
    deadline = time.monotonic() + timeout
    while True:
        series = scrape(port)
        if check(series) or time.monotonic() > deadline:
            return series
        time.sleep(0.5)


def test_exported_counts_equal_rows_and_failures(ray_session, sample_dir, tiny_model_dir, tmp_path):
    src = tmp_path / "mixed"
    src.mkdir()
    for p in sorted(sample_dir.glob("clip_*.mp4"))[:8]:
        shutil.copy(p, src / p.name)
    write_bad_videos(src)
    table = tmp_path / "index.lancedb" / "tel"
    assert cli(["-q", "embed", "--input", str(src), "--model", str(tiny_model_dir), "--table", str(table),
                "--no-progress", "decode.batch_size=3", "embed.batch_size=4", "embed.token_budget=5000", "embed.preprocess=decode_actors",
                "failures.min_videos=1000"]) == 0
    [record] = list((tmp_path / "index.lancedb" / "_runs" / "tel").glob("*.json"))
    summary = json.loads(record.read_text())["summary"]
    run = summary["run_id"]
    rows = SearchSession.open(str(table), load_model=False).table.count_rows()
    failures = open_failures(str(table))
    by_kind: dict[str, int] = {}
    for k in failures.column(S.ERROR_KIND).to_pylist():
        by_kind[k] = by_kind.get(k, 0) + 1
    n_bad = sum(by_kind.values())  # the bad files with a video extension (the rest are not listed)
    assert rows == 8 and n_bad >= 4 and len(by_kind) >= 3

    port = ray_session.nodes()[0]["MetricsExportPort"]
    live = "ray_tara_batch_embed_busy_fraction"
    series = _wait_for(port, lambda s: total(s, "ray_tara_batch_rows_written_total", run=run) >= rows
                       and total(s, "ray_tara_batch_failures_total", run=run) >= n_bad
                       and total(s, live, run=run) > 0)
    assert total(series, "ray_tara_batch_rows_written_total", run=run) == rows
    assert total(series, "ray_tara_batch_videos_total", run=run, stage="embed", status="ok") == rows
    assert total(series, "ray_tara_batch_failures_total", run=run) == n_bad
    for kind, n in by_kind.items():
        assert total(series, "ray_tara_batch_failures_total", run=run, kind=kind) == n, kind
    failed_videos = sum(v for (name, tags), v in series.items()
                        if name == "ray_tara_batch_videos_total" and ("run", run) in tags
                        and ("status", "failed") in tags)
    assert failed_videos == n_bad

    # live figures from the actors: present and in range
    fractions = [v for (name, tags), v in series.items() if name == live and ("run", run) in tags]
    assert fractions and all(0 < f <= 1 for f in fractions)
    assert total(series, "ray_tara_batch_stage_busy_seconds_total", run=run, stage="embed") > 0
    assert total(series, "ray_tara_batch_visual_tokens_total", run=run) > 0

    # the summary says the same
    assert summary["embedded"] == rows and summary["failed"] == n_bad
    assert 0 < summary["embed_busy_fraction"] <= 1 and summary["preprocess_on"] == "decode_actors"
    assert summary["visual_tokens"] > 0 and summary["embed_queue_seconds"] >= 0
