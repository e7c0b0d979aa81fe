"""The embed job on one directory of normal, unusual and broken files, with each decode backend.

Normal clips, the good-but-unusual files of `write_edge_videos` (variable frame rate, rotation, one frame, HEVC, VP9,
MPEG-4 Part 2 AVI with B-frames, AV1, MPEG-TS) and the bad inputs of `write_bad_videos` (including the truncated MP4
that segfaults decord 0.6 when read from memory) go through the real entry point (`ray_jobs/embed.py main`) on a
local Ray session. With PyAV and with decord alike: the job succeeds, every good file has exactly one row whose
vector equals a direct single-video embedding of PyAV's frames (decord hands the formats it gets wrong to PyAV, so
its vectors match too), and every bad file is one failure with its expected error kind and a message.
"""

from __future__ import annotations

import numpy as np
import pytest

from ray_jobs.embed import main as embed_main
from tara_batch import schema as S
from tara_batch.index.status import open_failures
from tara_batch.models.backend import TransformersEmbedder
from tara_batch.models.profile import get_profile
from tara_batch.search.session import SearchSession
from tara_batch.video.registry import SAMPLERS, get_sampler
from tara_batch.video.samples import BAD_VIDEO_KINDS, write_bad_videos, write_edge_videos, write_sample_archive

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """(directory, good file names, {bad file name: expected error kind}), all files side by side."""
    src = tmp_path_factory.mktemp("corpus")
    normal = write_sample_archive(src, n=3, seed=4)
    edge = write_edge_videos(src)
    bad = write_bad_videos(src)
    assert {"hevc.mp4", "vp9.webm", "mpeg4_bframes.avi"} <= set(edge)  # the bundled ffmpeg has these encoders
    good = sorted([p.name for p in normal] + list(edge))
    assert sorted(p.name for p in src.iterdir()) == sorted(good + list(bad))
    return src, good, {name: BAD_VIDEO_KINDS[name] for name in bad}


@pytest.fixture(scope="module")
def reference(corpus, tiny_model_dir):
    """File name -> (vector, frames sampled), computed directly (PyAV frames, one video per call, no Ray)."""
    src, good, _ = corpus
    profile = get_profile()
    embedder = TransformersEmbedder(tiny_model_dir, profile, threads=1)
    sampler = get_sampler("pyav")
    out = {}
    for name in good:
        video = sampler.sample((src / name).read_bytes(), profile.num_frames, profile.max_pixels)
        out[name] = (embedder.embed_videos([video.frames])[0], len(video.frames))
    return out


def _run(src, tiny_model_dir, table, *extra: str) -> None:
    # failures.max_rate=1: nearly half of this corpus is bad on purpose; the job must not stop for it.
    args = ["--no-progress", f"input.source={src}", f"model.path={tiny_model_dir}", f"output.table={table}",
            "input.extensions=null", "failures.max_rate=1", "decode.batch_size=4", *extra]  # fmt: skip
    assert embed_main(args) == 0


@pytest.fixture(scope="module")
def runs(ray_session, corpus, tiny_model_dir, tmp_path_factory) -> dict[str, str]:
    """Decode backend -> output table of one job over the corpus."""
    src, _, _ = corpus
    out = {}
    for backend in SAMPLERS:
        table = str(tmp_path_factory.mktemp(f"out-{backend}") / "db" / "videos")
        _run(src, tiny_model_dir, table, f"decode.backend={backend}")
        out[backend] = table
    return out


def _check(table: str, corpus, reference) -> None:
    _, good, bad = corpus
    rows = SearchSession.open(table, load_model=False).table.to_arrow()
    names = [uri.rsplit("/", 1)[-1] for uri in rows.column(S.URI).to_pylist()]
    assert sorted(names) == good  # every good and unusual file exactly once, nothing else
    vectors = dict(zip(names, rows.column(S.EMBEDDING).to_pylist(), strict=True))
    frames = dict(zip(names, rows.column(S.NUM_FRAMES).to_pylist(), strict=True))
    for name in good:
        vector, num_frames = reference[name]
        cosine = float(np.asarray(vectors[name], np.float32) @ vector)
        assert cosine >= 0.9999, (name, cosine)
        assert frames[name] == num_frames, name
    assert frames["one_frame.mp4"] == 1
    failures = open_failures(table).to_pylist()
    by_name = {f[S.URI].rsplit("/", 1)[-1]: f for f in failures}
    assert len(failures) == len(by_name) == len(bad)
    assert {name: f[S.ERROR_KIND] for name, f in by_name.items()} == bad
    for name, failure in by_name.items():
        assert failure[S.ERROR_STAGE] == "decode", name
        assert failure[S.ERROR_MESSAGE].strip(), name


@pytest.mark.parametrize("backend", SAMPLERS)
def test_every_file_is_embedded_once_or_failed_with_its_kind(runs, corpus, reference, backend):
    _check(runs[backend], corpus, reference)


def test_isolated_decord_gives_the_same_result(ray_session, corpus, reference, tiny_model_dir, tmp_path):
    # The decoder runs in a child process of each decode actor (tara_batch.isolation): same rows, same failures.
    table = str(tmp_path / "db" / "videos")
    _run(corpus[0], tiny_model_dir, table, "decode.backend=decord", "decode.isolate=true")
    _check(table, corpus, reference)
