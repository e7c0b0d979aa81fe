"""Segment mode of the embed job end to end (local Ray, real videos, the tiny model, LanceDB): one row per sliding
window with start/end times and the same vectors as embedding each window directly; a video whose windows were
only partly committed (a job killed between commits) is redone whole on resume, with no duplicate or missing
window; search shows where in the video a hit is."""

from __future__ import annotations

import numpy as np
import pytest

from tara_batch import schema as S
from tara_batch.cli import main as cli
from tara_batch.models.backend import TransformersEmbedder
from tara_batch.models.profile import get_profile
from tara_batch.search.session import SearchSession
from tara_batch.video.encode import encode_video
from tara_batch.video.frames import segment_windows
from tara_batch.video.registry import get_sampler
from tara_batch.video.samples import make_clip_frames

pytestmark = pytest.mark.integration
SEG = ["decode.segment_s=3", "decode.segment_stride_s=1.5"]


@pytest.fixture(scope="module")
def long_videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("long")
    for i, (frames, fps) in enumerate([(60, 8), (45, 10), (20, 8)]):  # 7.5 s, 4.5 s, 2.5 s (< one window)
        encode_video(d / f"long_{i}.mp4", make_clip_frames(48, 64, frames, seed=10 + i), fps)
    (d / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 truncated")
    return d


def _embed(src, table, model, *extra):
    return cli(["-q", "embed", "--input", str(src), "--model", str(model), "--table", str(table), "--no-progress",
                *SEG, "decode.batch_size=2", "embed.batch_size=3", "output.commit_rows=2", *extra])


def _rows(table_uri):
    return SearchSession.open(table_uri, load_model=False).table.to_arrow().sort_by(
        [(S.URI, "ascending"), (S.SEGMENT_INDEX, "ascending")])


def test_segment_rows_vectors_and_resume(ray_session, long_videos, tiny_model_dir, tmp_path, capsys):
    table = tmp_path / "index.lancedb" / "moments"
    assert _embed(long_videos, table, tiny_model_dir) == 0
    rows = _rows(str(table))

    # one row per window, windows as segment_windows places them, keyed by segment_id
    sampler, prof = get_sampler("pyav"), get_profile()
    expected = {}
    for path in sorted(long_videos.glob("long_*.mp4")):
        video = sampler.sample(path.read_bytes(), prof.num_frames, prof.max_pixels, (3.0, 1.5))
        np.testing.assert_allclose(video.windows, segment_windows(video.source_frames / video.fps, 3.0, 1.5))
        expected[str(path)] = video
    assert rows.num_rows == sum(len(v.windows) for v in expected.values()) == 4 + 2 + 1
    ids = rows.column(S.SEGMENT_ID).to_pylist()
    assert len(set(ids)) == len(ids)
    emb = TransformersEmbedder(tiny_model_dir, prof, threads=1)
    got = {(r[S.URI], r[S.SEGMENT_INDEX]): r for r in rows.to_pylist()}
    for uri, video in expected.items():
        direct = emb.embed_videos(video.split())
        for w, (start, end) in enumerate(video.windows):
            r = got[(uri, w)]
            assert r[S.SEGMENT_COUNT] == len(video.windows)
            assert (r[S.SEGMENT_START], r[S.SEGMENT_END]) == pytest.approx((start, end))
            assert np.dot(np.asarray(r[S.EMBEDDING]), direct[w]) > 0.9999

    # the broken file is one failure row, not a crash
    assert cli(["failures", "--table", str(table)]) == 0
    assert "broken.mp4" in capsys.readouterr().out

    # a kill between two commits of one video's windows: only window 0 of long_0 survives, and the rerun starts
    # at window 1 (a two-hour video is not redone from the start)
    session = SearchSession.open(str(table), load_model=False)
    long0 = str(long_videos / "long_0.mp4")
    session.table.delete(f"{S.URI} = '{long0}' AND {S.SEGMENT_INDEX} > 0")
    before = {r[S.SEGMENT_ID]: r[S.EMBEDDING] for r in _rows(str(table)).to_pylist()}
    capsys.readouterr()
    assert _embed(long_videos, table, tiny_model_dir) == 0
    out = capsys.readouterr().out
    # resumed mid-video: window 0 kept, windows 1-3 embedded, nothing replaced
    assert "embedded 1 (3 windows)" in out and "1 videos resumed mid-video" in out and "replaced" not in out
    after = _rows(str(table))
    assert after.num_rows == 7 and len(set(after.column(S.SEGMENT_ID).to_pylist())) == 7
    for r in after.to_pylist():  # the untouched videos kept their rows; long_0's windows are back, same vectors
        if r[S.SEGMENT_ID] in before:
            np.testing.assert_allclose(r[S.EMBEDDING], before[r[S.SEGMENT_ID]], atol=1e-6)

    # nothing left to do; search lists windows with their times
    capsys.readouterr()
    assert _embed(long_videos, table, tiny_model_dir) == 0
    assert "processed 0" in capsys.readouterr().out
    assert cli(["search", "--table", str(table), "a shape moving", "-k", "3"]) == 0
    res = capsys.readouterr().out
    assert "window" in res and "long_" in res
