"""The embed job end to end on a local Ray session: S3 (moto over HTTP on loopback), real H.264 videos, the tiny
Qwen2-VL, LanceDB. Runs the real entry point (`ray_jobs/embed.py main`) in-process."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from ray_jobs.embed import main as embed_main
from tara_batch import schema as S
from tara_batch.index.status import open_failures
from tara_batch.io.listing import list_videos
from tara_batch.models.backend import TransformersEmbedder
from tara_batch.models.profile import get_profile
from tara_batch.search.session import SearchSession
from tara_batch.video.registry import get_sampler

pytestmark = pytest.mark.integration
BUCKET = "archive-embed"


def _open(table_uri: str):
    """The live table of an index (what search uses)."""
    return SearchSession.open(table_uri, load_model=False).table


@pytest.fixture(scope="module")
def s3_archive(s3_server, sample_dir):
    s3_server.create_bucket(BUCKET)
    uris = s3_server.upload_dir(sample_dir, BUCKET, "videos/")
    return uris


@pytest.fixture(scope="module")
def s3_run(ray_session, s3_server, s3_archive, tiny_model_dir, tmp_path_factory):
    table = str(tmp_path_factory.mktemp("out") / "index.lancedb" / "videos")
    rc = embed_main(["--no-progress", f"input.source=s3://{BUCKET}/videos/", f"model.path={tiny_model_dir}",
                     f"output.table={table}", "decode.batch_size=3", "embed.batch_size=4",
                     "embed.preprocess=decode_actors",  # model inputs built on the CPU actors (GPU clusters' default)
                     *s3_server.overrides()])
    assert rc == 0
    return table


@pytest.fixture(scope="module")
def reference(tiny_model_dir, sample_dir):
    """Vectors computed directly, one video at a time, without Ray: file name -> vector."""
    profile = get_profile()
    emb = TransformersEmbedder(tiny_model_dir, profile, threads=1)
    sampler = get_sampler("pyav")
    out = {}
    for path in sorted(sample_dir.glob("*.mp4")):
        video = sampler.sample(path.read_bytes(), profile.num_frames, profile.max_pixels)
        out[path.name] = emb.embed_videos([video.frames])[0]
    return out


def _by_name(table) -> dict[str, np.ndarray]:
    rows = table.to_arrow()
    return {u.rsplit("/", 1)[-1]: np.asarray(v, np.float32)
            for u, v in zip(rows.column(S.URI).to_pylist(), rows.column(S.EMBEDDING).to_pylist(), strict=True)}


def test_one_row_per_video_and_vectors_equal_direct_model(s3_run, s3_archive, s3_server, reference):
    table = _open(s3_run)
    rows = table.to_arrow()
    listing = list_videos(f"s3://{BUCKET}/videos/", s3=s3_server.options())
    assert len(s3_archive) >= 20
    assert rows.num_rows == listing.num_rows == len(reference)
    assert sorted(rows.column(S.VIDEO_ID).to_pylist()) == sorted(listing.column(S.VIDEO_ID).to_pylist())
    got = _by_name(table)
    for name, ref in reference.items():
        assert float(got[name] @ ref) >= 0.9999, name
    # schema and metadata as documented
    assert rows.schema.field(S.EMBEDDING).type.list_size == 128
    assert set(rows.column(S.NUM_FRAMES).to_pylist()) <= set(range(1, 9))
    assert all(e for e in rows.column(S.ETAG).to_pylist())
    meta = SearchSession.open(s3_run, load_model=False).metadata
    assert meta["profile"]["num_frames"] == 8 and len(meta["checkpoint"]["sha256"]) == 64
    assert meta["model_id"] == rows.column(S.MODEL_ID)[0].as_py()


def test_search_by_stored_vector_returns_itself_first(s3_run):
    session = SearchSession.open(s3_run, load_model=False)
    rows = session.table.to_arrow().slice(0, 5).to_pylist()
    for row in rows:
        res = session.by_vector(np.asarray(row[S.EMBEDDING], np.float32), 3)
        assert res.column(S.VIDEO_ID)[0].as_py() == row[S.VIDEO_ID]
        assert res.column("score")[0].as_py() == pytest.approx(1.0, abs=1e-4)


def test_text_search_returns_k_sorted(s3_run):
    session = SearchSession.open(s3_run)
    res = session.by_text("a red circle moves to the right", 7)
    scores = res.column("score").to_pylist()
    assert res.num_rows == 7 and scores == sorted(scores, reverse=True)
    # the scores are the cosines with the query's own embedding
    q = session.embedder.embed_texts(["a red circle moves to the right"])[0]
    stored = {r[S.VIDEO_ID]: np.asarray(r[S.EMBEDDING]) for r in session.table.to_arrow().to_pylist()}
    for vid, score in zip(res.column(S.VIDEO_ID).to_pylist(), scores, strict=True):
        assert float(stored[vid] @ q) == pytest.approx(score, abs=1e-4)


def test_video_search_by_s3_uri_uses_stored_vector(s3_run, s3_server):
    session = SearchSession.open(s3_run, overrides=s3_server.overrides(), load_model=False)
    first = session.table.to_arrow().column(S.URI)[0].as_py()
    res = session.by_video(first, 2)
    assert res.column(S.URI)[0].as_py() == first


def test_rerun_skips_everything(s3_run, s3_server, tiny_model_dir, capsys):
    rc = embed_main(["--no-progress", f"input.source=s3://{BUCKET}/videos/", f"model.path={tiny_model_dir}",
                     f"output.table={s3_run}", *s3_server.overrides()])
    assert rc == 0
    assert "already embedded 22, permanently failed 0, processed 0" in capsys.readouterr().out
    assert _open(s3_run).count_rows() == 22


def test_local_directory_and_manifest_give_the_same_vectors(ray_session, sample_dir, tiny_model_dir, tmp_path,
                                                             reference):
    local_table = str(tmp_path / "db" / "local")
    assert embed_main(["--no-progress", f"input.source={sample_dir}", f"model.path={tiny_model_dir}",
                       f"output.table={local_table}", "decode.backend=decord"]) == 0
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["uri"])
        for p in sorted(sample_dir.glob("*.mp4"))[:10]:
            w.writerow([p.name if p.name.endswith("1.mp4") else str(p)])  # relative and absolute entries
    # relative entries resolve against the manifest's directory: put copies there
    for p in sorted(sample_dir.glob("*1.mp4"))[:10]:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    manifest_table = str(tmp_path / "db" / "manifest")
    assert embed_main(["--no-progress", f"input.manifest={manifest}", f"model.path={tiny_model_dir}",
                       f"output.table={manifest_table}"]) == 0
    local, from_manifest = _by_name(_open(local_table)), _by_name(_open(manifest_table))
    assert len(local) == len(reference) and len(from_manifest) == 10
    for name, vec in list(local.items()) + list(from_manifest.items()):
        assert float(vec @ reference[name]) >= 0.9999, name


def test_bad_videos_become_failure_rows_and_the_job_goes_on(ray_session, sample_dir, tiny_model_dir, tmp_path):
    from tara_batch.video.samples import write_bad_videos

    src = tmp_path / "mixed"
    src.mkdir()
    for p in sorted(sample_dir.glob("*.mp4"))[:3]:
        (src / p.name).write_bytes(p.read_bytes())
    bad = write_bad_videos(src)
    table = str(tmp_path / "db" / "mixed")
    assert embed_main(["--no-progress", f"input.source={src}", f"model.path={tiny_model_dir}",
                       f"output.table={table}", "input.extensions=null"]) == 0
    assert _open(table).count_rows() == 3
    failures = open_failures(table).to_pylist()
    kinds = {f[S.URI].rsplit("/", 1)[-1]: f[S.ERROR_KIND] for f in failures}
    assert len(failures) == len(bad)
    assert kinds["zero_bytes.mp4"] == "empty"
    assert kinds["audio_only.m4a"] == "no_video_stream"
    assert kinds["truncated.mp4"] == "corrupt"
    assert all(f[S.ERROR_MESSAGE] for f in failures)


def test_checkpoint_from_s3_is_fetched_once_and_matches(ray_session, s3_server, sample_dir, tiny_model_dir, tmp_path,
                                                         reference):
    s3_server.create_bucket("models-tiny")
    s3_server.upload_dir(tiny_model_dir, "models-tiny", "tiny/")
    table = str(tmp_path / "db" / "from_s3_model")
    assert embed_main(["--no-progress", f"input.source={sample_dir}", "model.path=s3://models-tiny/tiny/",
                       f"output.table={table}", "input.glob=clip_000[0-3].mp4", *s3_server.overrides()]) == 0
    got = _by_name(_open(table))
    assert len(got) == 4
    for name, vec in got.items():
        assert float(vec @ reference[name]) >= 0.9999


def test_cli_search_and_errors(s3_run, sample_dir, tmp_path, capsys):
    from tara_batch.cli import main

    assert main(["search", "--table", s3_run, "a blue square", "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert "rank" in out and len([ln for ln in out.splitlines() if ln.strip()[:1].isdigit()]) == 3
    assert main(["-q", "embed", "--input", str(sample_dir), "--table", str(tmp_path / "db" / "t")]) == 2
    assert "model.path" in capsys.readouterr().err
    assert main(["-q", "embed", "--input", str(tmp_path / "missing"), "--model", "/nowhere",
                 "--table", str(tmp_path / "db" / "t")]) == 2
