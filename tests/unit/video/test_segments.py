"""Segment mode (sliding windows for moment retrieval): window placement, per-window sampling, both decoders, the
isolated decoder and the decode stage's fan-out, on real encoded videos."""

from __future__ import annotations

import av
import numpy as np
import pytest

from tara_batch import schema as S
from tara_batch.config import ConfigError, DecodeConfig
from tara_batch.embed.stages import DecodeStage
from tara_batch.io.uris import video_id_for
from tara_batch.video.encode import encode_video
from tara_batch.video.frames import DecodeError, plan_frames, sample_indices, segment_windows
from tara_batch.video.registry import get_sampler
from tara_batch.video.samples import make_clip_frames

FPS = 10


@pytest.fixture(scope="module")
def long_video(tmp_path_factory):
    """7.3 s at 10 fps (73 frames), GOP 12 so windows start between keyframes."""
    path = tmp_path_factory.mktemp("seg") / "long.mp4"
    encode_video(path, make_clip_frames(64, 96, 73, seed=3), FPS, extra_args=["-g", "12"])
    return path


def _all_frames(path, sampler_max_pixels=64 * 96):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_segment_windows_hand_cases():
    np.testing.assert_allclose(segment_windows(10.0, 4.0, 2.0), [[0, 4], [2, 6], [4, 8], [6, 10]])
    # stride does not land on the end: one last full-length window ends at the end
    np.testing.assert_allclose(segment_windows(7.3, 4.0, 2.0), [[0, 4], [2, 6], [3.3, 7.3]])
    # shorter than a window: the whole video
    np.testing.assert_allclose(segment_windows(2.5, 4.0, 2.0), [[0, 2.5]])
    # non-overlapping tiling
    np.testing.assert_allclose(segment_windows(9.0, 3.0, 3.0), [[0, 3], [3, 6], [6, 9]])
    with pytest.raises(ValueError):
        segment_windows(5.0, 0.0, 1.0)
    with pytest.raises(ValueError):
        segment_windows(float("nan"), 4.0, 2.0)


@pytest.mark.parametrize("seed", range(20))
def test_segment_windows_cover_the_video_with_equal_windows(seed):
    rng = np.random.default_rng(seed)
    duration, length = rng.uniform(0.5, 60), rng.uniform(0.5, 10)
    stride = rng.uniform(0.2, length * 1.5)
    w = segment_windows(duration, length, stride)
    assert w[0, 0] == 0 and w[-1, 1] == pytest.approx(duration)
    np.testing.assert_allclose(w[:, 1] - w[:, 0], min(length, duration))
    assert np.all(np.diff(w[:, 0]) > 0)
    if stride <= length:  # overlapping or touching windows leave no gap
        assert np.all(w[1:, 0] <= w[:-1, 1] + 1e-9)


def test_plan_frames_samples_each_window_uniformly():
    plan = plan_frames(73, 10.0, 8, (4.0, 2.0))
    groups, windows = plan.groups, plan.windows
    assert (plan.offset, plan.total) == (0, 3)
    np.testing.assert_allclose(windows, [[0, 4], [2, 6], [3.3, 7.3]])
    np.testing.assert_array_equal(groups[0], sample_indices(40, 8))  # frames 0..39
    np.testing.assert_array_equal(groups[1], 20 + sample_indices(40, 8))  # frames 20..59
    np.testing.assert_array_equal(groups[2], 33 + sample_indices(40, 8))  # frames 33..72
    whole = plan_frames(73, 10.0, 8, None)
    assert whole.windows is None and len(whole.groups) == 1 and np.array_equal(whole.groups[0], sample_indices(73, 8))
    with pytest.raises(DecodeError) as err:
        plan_frames(73, float("nan"), 8, (4.0, 2.0))
    assert err.value.kind == "no_frame_rate"
    # a 2-hour video at 4 s / 2 s windows, all in one call: 3,599 windows in memory at once -> too_large, not OOM
    with pytest.raises(DecodeError) as err:
        plan_frames(7200 * 25, 25.0, 8, (4.0, 2.0))
    assert err.value.kind == "too_large" and "windows=(first, stop)" in str(err.value)
    # ... while ranges of it plan exactly the windows of the whole plan (what the embed job streams)
    part = plan_frames(7200 * 25, 25.0, 8, (4.0, 2.0), windows=(1000, 1064))
    assert (part.offset, part.total, len(part.groups)) == (1000, 3599, 64)
    np.testing.assert_allclose(part.windows[0], [2000.0, 2004.0])
    np.testing.assert_array_equal(part.groups[0], 50_000 + sample_indices(100, 8))
    tail = plan_frames(7200 * 25, 25.0, 8, (4.0, 2.0), windows=(3590, 4000))
    assert len(tail.groups) == 9 and tail.windows[-1, 1] == pytest.approx(7200.0)
    assert plan_frames(73, 10.0, 8, (4.0, 2.0), windows=(5, 9)).groups == []


@pytest.mark.parametrize("backend", ["pyav", "decord"])
def test_sampler_windows_are_the_planned_frames(long_video, backend):
    data = long_video.read_bytes()
    video = get_sampler(backend).sample(data, 4, 64 * 96, (2.0, 1.5))
    plan = plan_frames(73, 10.0, 4, (2.0, 1.5))
    groups, windows = plan.groups, plan.windows
    np.testing.assert_allclose(video.windows, windows)
    assert video.window_frames.tolist() == [len(g) for g in groups]
    assert np.array_equal(video.indices, np.concatenate(groups))
    full = _all_frames(long_video)
    parts = video.split()
    assert len(parts) == len(windows)
    for part, group in zip(parts, groups, strict=True):
        np.testing.assert_array_equal(part, np.stack([full[i] for i in group]))
    # whole-video sampling is unchanged
    plain = get_sampler(backend).sample(data, 4, 64 * 96)
    assert plain.windows is None and len(plain.split()) == 1
    # a range of windows is that slice of the whole, and says where it sits
    sampler = get_sampler(backend)
    chunks = [sampler.sample(data, 4, 64 * 96, (2.0, 1.5), windows=(a, a + 3)) for a in range(0, len(windows), 3)]
    assert [c.window_offset for c in chunks] == list(range(0, len(windows), 3))
    assert {c.window_total for c in chunks} == {len(windows)}
    assert [p.tobytes() for c in chunks for p in c.split()] == [p.tobytes() for p in parts]


def test_decoders_and_isolation_agree_on_windows(long_video):
    data = long_video.read_bytes()
    ref = get_sampler("pyav").sample(data, 8, 64 * 96, (4.0, 2.0))
    iso = get_sampler("pyav", isolate=True, timeout_s=60)
    try:
        got = iso.sample(data, 8, 64 * 96, (4.0, 2.0))
    finally:
        iso.close()
    for other in (got, get_sampler("decord").sample(data, 8, 64 * 96, (4.0, 2.0))):
        np.testing.assert_array_equal(other.frames, ref.frames)
        np.testing.assert_allclose(other.windows, ref.windows)


def _concat(batches) -> dict:
    """The decode stage is a generator (a long video streams a chunk of windows at a time): join its batches."""
    batches = list(batches)
    return {k: np.concatenate([np.asarray(b[k]) for b in batches]) if k != S.FRAMES else
            [f for b in batches for f in b[k]] for k in batches[0]}


def _batch(uris, etags=None, first_window=None):
    batch = {S.VIDEO_ID: np.array([video_id_for(u) for u in uris], dtype=object), S.URI: np.array(uris, dtype=object),
             S.SIZE: np.arange(1, len(uris) + 1), S.ETAG: np.array(etags or ["e"] * len(uris), dtype=object)}
    if first_window is not None:
        batch[S.FIRST_WINDOW] = np.array(first_window, np.int64)
    return batch


def test_decode_stage_fans_a_video_out_into_windows(long_video, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    uris = [str(long_video), str(bad)]
    batch = _batch(uris)
    out = _concat(DecodeStage(backend="pyav", num_frames=8, max_pixels=64 * 96, segments=(4.0, 2.0))(batch))
    assert out[S.STATUS].tolist() == ["ok", "ok", "ok", "failed"]
    assert out[S.URI].tolist() == [uris[0]] * 3 + [uris[1]]
    assert out[S.SEGMENT_INDEX].tolist() == [0, 1, 2, -1]
    assert out[S.SEGMENT_COUNT].tolist() == [3, 3, 3, 0]
    np.testing.assert_allclose(out[S.SEGMENT_START][:3], [0, 2, 3.3])
    np.testing.assert_allclose(out[S.SEGMENT_END][:3], [4, 6, 7.3])
    assert np.isnan(out[S.SEGMENT_START][3])
    assert [f.shape[0] for f in out[S.FRAMES]] == [8, 8, 8, 0]
    plain = _concat(DecodeStage(backend="pyav", num_frames=8, max_pixels=64 * 96)(batch))
    assert S.SEGMENT_INDEX not in plain and len(plain[S.URI]) == 2


def test_decode_stage_streams_windows_in_bounded_chunks(long_video):
    """window_chunk=1: every yielded batch holds at most one window, together the same windows and frames as one
    unchunked pass, each exactly once."""
    stage = dict(backend="pyav", num_frames=8, max_pixels=64 * 96, segments=(2.0, 1.0))
    whole = _concat(DecodeStage(**stage, window_chunk=1000)(_batch([str(long_video)])))
    chunks = list(DecodeStage(**stage, window_chunk=2)(_batch([str(long_video)])))
    assert len(whole[S.URI]) == 7 and all(len(c[S.URI]) <= 2 for c in chunks) and len(chunks) == 4
    got = _concat(chunks)
    assert got[S.SEGMENT_INDEX].tolist() == list(range(7)) and set(got[S.SEGMENT_COUNT].tolist()) == {7}
    for a, b in zip(got[S.FRAMES], whole[S.FRAMES], strict=True):
        np.testing.assert_array_equal(a, b)


def test_decode_stage_resumes_at_first_window(long_video):
    """A video whose first windows are committed starts at `first_window`: only the rest, same frames as before."""
    stage = dict(backend="pyav", num_frames=8, max_pixels=64 * 96, segments=(2.0, 1.0), window_chunk=3)
    whole = _concat(DecodeStage(**stage)(_batch([str(long_video)])))
    rest = _concat(DecodeStage(**stage)(_batch([str(long_video)], first_window=[4])))
    assert rest[S.SEGMENT_INDEX].tolist() == [4, 5, 6]
    for a, b in zip(rest[S.FRAMES], whole[S.FRAMES][4:], strict=True):
        np.testing.assert_array_equal(a, b)


def test_segment_config():
    assert DecodeConfig().segments is None
    assert DecodeConfig(segment_s=4).segments == (4, 2)
    assert DecodeConfig(segment_s=4, segment_stride_s=1).segments == (4, 1)
    with pytest.raises(ConfigError, match="decode.segment_stride_s"):
        DecodeConfig(segment_stride_s=2)
    with pytest.raises(ConfigError, match="decode.segment_s"):
        DecodeConfig(segment_s=-1)
