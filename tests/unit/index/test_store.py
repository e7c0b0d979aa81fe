"""LanceDB store: writer -> reader round trip, idempotent merge-insert, one model per table, index and search."""

from __future__ import annotations

from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pytest

from tara_batch import schema as S
from tara_batch.errors import ConfigError
from tara_batch.index.ann import build_index, has_index, search
from tara_batch.index.tables import TableRef, read_metadata
from tara_batch.index.writer import VideoTableWriter

DIM = 32


def _rows(ids: list[str], vecs: np.ndarray, model_id: str = "m1") -> pa.Table:
    n = len(ids)
    return pa.table({
        S.VIDEO_ID: ids, S.URI: [f"/v/{i}.mp4" for i in ids], S.SIZE: pa.array([1] * n, pa.int64()),
        S.ETAG: ["e"] * n, S.DURATION: [1.0] * n, S.FPS: [10.0] * n, S.NUM_FRAMES: pa.array([8] * n, pa.int32()),
        S.MODEL_ID: [model_id] * n,
        S.EMBEDDING: pa.FixedSizeListArray.from_arrays(pa.array(vecs.astype(np.float32).ravel()), DIM),
        S.CREATED_AT: pa.array([datetime.now(timezone.utc)] * n, pa.timestamp("us", tz="UTC")),
    })


def _unit(n: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, DIM)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _writer(tmp_path, model_id="m1", **kw) -> VideoTableWriter:
    meta = {"model_id": model_id, "checkpoint": {"path": "/ckpt", "sha256": "0" * 64}, "profile": {}, "dim": DIM}
    return VideoTableWriter(TableRef.parse(str(tmp_path / "db" / "videos")), dim=DIM, metadata=meta, **kw)


def test_table_ref_parsing(tmp_path):
    ref = TableRef.parse(str(tmp_path / "x.lancedb" / "videos"))
    assert ref.name == "videos" and ref.db_uri.endswith("x.lancedb")
    assert TableRef.parse("s3://b/idx.lancedb/videos.lance") == TableRef("s3://b/idx.lancedb", "videos")
    with pytest.raises(ConfigError, match="output.table"):
        TableRef.parse("videos")
    with pytest.raises(ConfigError, match="output.table"):
        TableRef.parse("/db/bad name")


def test_round_trip_metadata_and_no_duplicates(tmp_path):
    w = _writer(tmp_path)
    vecs = _unit(10)
    ids = [f"id{i}" for i in range(10)]
    w.write_rows(_rows(ids[:6], vecs[:6]))
    w.write_rows(_rows(ids[4:], vecs[4:]))  # overlaps 4, 5: a replayed batch
    w.write_rows(_rows(ids[4:], vecs[4:]))
    got = w.table.to_arrow()
    assert sorted(got.column(S.VIDEO_ID).to_pylist()) == sorted(ids)
    assert read_metadata(w.table)["model_id"] == "m1"
    # reopening continues the same table and reports what is done
    w2 = _writer(tmp_path)
    assert set(w2.done_ids()) == set(ids) and w2.count() == 10
    stored = {r[S.VIDEO_ID]: np.asarray(r[S.EMBEDDING]) for r in got.to_pylist()}
    np.testing.assert_array_equal(stored["id7"], vecs[7])


def test_other_model_version_is_refused(tmp_path):
    _writer(tmp_path).write_rows(_rows(["a"], _unit(1)))
    with pytest.raises(ConfigError, match="one table per model version"):
        _writer(tmp_path, model_id="m2")
    assert _writer(tmp_path, model_id="m2", overwrite=True).count() == 0


def test_failures_recorded_and_cleared(tmp_path):
    w = _writer(tmp_path)
    now = datetime.now(timezone.utc)
    w.write_failures(pa.table({
        S.VIDEO_ID: ["a", "b"], S.URI: ["/a", "/b"], S.SIZE: pa.array([0, 5], pa.int64()), S.ETAG: ["x", "y"],
        S.MODEL_ID: ["m1", "m1"], S.ERROR_STAGE: ["decode", "decode"], S.ERROR_KIND: ["empty", "corrupt"],
        S.ERROR_MESSAGE: ["zero bytes", "moov atom not found"], S.ATTEMPT: pa.array([1, 2], pa.int32()),
        S.RETRIABLE: [False, False], S.CREATED_AT: pa.array([now, now], pa.timestamp("us", tz="UTC")),
    }))
    state = w.failure_state()
    assert (state["b"].attempts, state["b"].kind, state["b"].retriable) == (2, "corrupt", False)
    w.clear_failures(["a"])
    assert w.failures.to_arrow().column(S.VIDEO_ID).to_pylist() == ["b"]


def test_search_brute_force_exact_and_sorted(tmp_path):
    w = _writer(tmp_path)
    vecs = _unit(50)
    w.write_rows(_rows([f"id{i}" for i in range(50)], vecs))
    q = vecs[17]
    res = search(w.table, q, 5)
    expected = np.argsort(-(vecs @ q))[:5]
    assert res.column(S.VIDEO_ID).to_pylist() == [f"id{i}" for i in expected]
    np.testing.assert_allclose(res.column("score").to_numpy(), (vecs @ q)[expected], atol=1e-5)


def test_ann_index_on_request(tmp_path):
    w = _writer(tmp_path)
    vecs = _unit(600, seed=3)
    w.write_rows(_rows([f"id{i}" for i in range(600)], vecs))
    assert not has_index(w.table)
    for kind in ("IVF_HNSW_SQ", "IVF_PQ"):  # the default, and the small one
        desc = build_index(w.table, **({} if kind == "IVF_HNSW_SQ" else {"index_type": kind}))
        assert kind in desc and has_index(w.table)
        hits = sum(search(w.table, vecs[i], 1).column(S.VIDEO_ID)[0].as_py() == f"id{i}" for i in range(0, 600, 30))
        assert hits >= 18, kind  # ANN with refine: near-perfect self-retrieval on 20 probes


def test_index_refused_on_tiny_tables(tmp_path):
    w = _writer(tmp_path)
    w.write_rows(_rows(["a", "b"], _unit(2)))
    with pytest.raises(ConfigError, match="256"):
        build_index(w.table)


def test_index_policy(tmp_path):
    from tara_batch.index.ann import maintain_index

    w = _writer(tmp_path)
    w.write_rows(_rows([f"id{i}" for i in range(300)], _unit(300, seed=4)))
    assert maintain_index(w.table, mode="auto", threshold=1000, changed=True) == ""  # under threshold: brute force
    assert maintain_index(w.table, mode="never", threshold=10, changed=True) == ""
    assert "IVF_HNSW_SQ" in maintain_index(w.table, mode="auto", threshold=300, changed=True)
    assert maintain_index(w.table, mode="auto", threshold=300, changed=False) == ""  # nothing new: nothing to do
    w.write_rows(_rows([f"new{i}" for i in range(20)], _unit(20, seed=5)))
    assert "updated" in maintain_index(w.table, mode="auto", threshold=300, changed=True)
    assert search(w.table, _unit(20, seed=5)[3], 1).column(S.VIDEO_ID)[0].as_py() == "new3"
