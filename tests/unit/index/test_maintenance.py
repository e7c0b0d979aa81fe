"""Table maintenance on real LanceDB: optimize keeps exactly the live rows, never breaks a reader holding the version
it opened, removes only versions superseded long enough ago; the writer's key index; float16 vectors round trip."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import numpy as np
import pytest

from tara_batch import schema as S
from tara_batch.cli import main as cli
from tara_batch.index.ann import search
from tara_batch.index.maintenance import MaintenancePolicy, cleanup_age, fragments, key_index, optimize
from tara_batch.index.tables import connect
from tests.unit.index.test_store import DIM, _rows, _unit, _writer

NOW = datetime(2026, 12, 7, 12, 0, 0)


def _v(n: int, days_ago: float) -> dict:
    return {"version": n, "timestamp": NOW - timedelta(days=days_ago)}


def test_cleanup_age_keeps_what_was_live_within_retention():
    week = timedelta(days=7)
    # v1 (30 d), v2 (20 d, live until today's compaction made v3): v2 may be held by every reader -> only v1 goes
    age = cleanup_age([_v(1, 30), _v(2, 20), _v(3, 0)], week, NOW)
    assert NOW - timedelta(days=30) < NOW - age <= NOW - timedelta(days=20)  # cut between v1 and v2
    assert cleanup_age([_v(2, 20), _v(3, 0)], week, NOW) is None  # the only old version is the one to keep
    assert cleanup_age([_v(1, 1), _v(2, 0)], week, NOW) is None
    # retention 0: every version but the latest goes (the cut sits just before the latest)
    assert timedelta(0) < cleanup_age([_v(1, 3), _v(2, 2), _v(3, 0)], timedelta(0), NOW) < timedelta(days=2)


def _live(table) -> dict[str, np.ndarray]:
    t = table.to_arrow()
    return dict(zip(t.column(S.VIDEO_ID).to_pylist(), np.asarray(t.column(S.EMBEDDING).to_pylist()), strict=True))


@pytest.fixture()
def fragmented(tmp_path):
    """40 small commits with overlaps (replays update rows) and a delete: a fragmented table with a known live set."""
    w = _writer(tmp_path, policy=MaintenancePolicy(enabled=False))
    vecs = _unit(400, seed=1)
    for b in range(40):
        ids = [f"id{i}" for i in range(b * 10, b * 10 + 15) if i < 400]  # 5 of each batch overlap the next
        w.write_rows(_rows(ids, vecs[[int(i[2:]) for i in ids]]))
    w.table.delete("video_id IN ('id0', 'id7', 'id399')")
    return w


def test_optimize_keeps_exactly_the_live_rows(fragmented, tmp_path, capsys):
    table = fragmented.table
    before, frags = _live(table), fragments(table)
    assert len(before) == 397 and frags > 30
    assert cli(["optimize", "--table", str(tmp_path / "db" / "videos")]) == 0
    assert "fragments" in capsys.readouterr().out
    table = connect(str(tmp_path / "db")).open_table(table.name)
    after = _live(table)
    assert after.keys() == before.keys() and table.count_rows() == 397  # no row lost, none duplicated
    for k, v in before.items():
        np.testing.assert_array_equal(after[k], v)
    assert fragments(table) < frags and fragments(table) <= 2


def test_optimize_never_breaks_a_concurrent_reader(fragmented):
    """A reader that opened the table before compaction keeps querying, during and after it, without an error and
    with full results (default retention: the version it holds was live moments ago, so it is kept)."""
    db, name = fragmented.ref.db_uri, fragmented.table.name
    reader = connect(db).open_table(name)
    queries = _unit(8, seed=9)
    errors: list[BaseException] = []
    counts: list[int] = []
    stop = threading.Event()

    def read():
        while not stop.is_set():
            try:
                for q in queries:
                    counts.append(len(search(reader, q, 10).to_pylist()))
                counts.append(reader.count_rows())
            except BaseException as exc:  # the test's point: nothing may escape
                errors.append(exc)
                return

    t = threading.Thread(target=read)
    t.start()
    try:
        optimize(connect(db).open_table(name))
        optimize(connect(db).open_table(name))  # twice: the second cleans what the first superseded
    finally:
        stop.set()
        t.join(timeout=60)
    assert not errors, errors[0]
    assert counts and set(counts) <= {10, 397}
    # the reader still answers from its old version after all that
    assert len(search(reader, queries[0], 10).to_pylist()) == 10


def test_writer_builds_the_key_index_and_compacts(tmp_path):
    w = _writer(tmp_path, policy=MaintenancePolicy(max_fragments=8, max_unindexed_rows=10**9))
    vecs = _unit(200, seed=2)
    optimized = []
    for b in range(20):
        w.write_rows(_rows([f"id{i}" for i in range(b * 10, b * 10 + 10)], vecs[b * 10:b * 10 + 10]))
        optimized.append(w.maintain())
    assert key_index(w.table, S.VIDEO_ID) is not None  # the merge key is indexed: commits stay flat
    assert any(r is not None for r in optimized) and fragments(w.table) <= 9
    assert w.table.count_rows() == 200


def test_float16_round_trip(tmp_path):
    vecs = _unit(50, seed=3)
    w = _writer(tmp_path, vector_dtype="float16")
    w.write_rows(_rows([f"id{i}" for i in range(50)], vecs))
    field = w.table.schema.field(S.EMBEDDING)
    assert field.type.value_type == pa_float16() and field.type.list_size == DIM
    stored = np.asarray(w.table.to_arrow().column(S.EMBEDDING).to_pylist(), np.float32)
    np.testing.assert_allclose(stored, vecs, atol=1e-3)  # half precision: ~3 decimal digits
    hits = search(w.table, vecs[17], 3).to_pylist()
    assert hits[0][S.VIDEO_ID] == "id17" and hits[0]["score"] == pytest.approx(1.0, abs=1e-3)


def pa_float16():
    import pyarrow as pa

    return pa.float16()
