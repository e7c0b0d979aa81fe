"""Unit tests for tara_batch.samples: deterministic content, real encoded files with the planned properties."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest

from tara_batch.video.encode import add_display_rotation, available_encoders, encode_video
from tara_batch.video.samples import (
    BAD_VIDEO_KINDS,
    DEFAULT_DURATIONS,
    DEFAULT_FPS,
    DEFAULT_SIZES,
    EDGE_VIDEOS,
    main,
    make_clip_frames,
    write_bad_videos,
    write_edge_videos,
    write_sample_archive,
)


def probe(path: Path) -> dict:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        return {
            "codec": stream.codec_context.name,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "frames": len(frames),
            "fps": float(stream.average_rate),
            "rotation": frames[0].rotation,
            "keyframes": sum(frame.key_frame for frame in frames),
            "rgb": np.stack([frame.to_ndarray(format="rgb24") for frame in frames]),
        }


def test_make_clip_frames_deterministic_and_moving():
    a = make_clip_frames(48, 64, 10, seed=4)
    assert a.shape == (10, 48, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, make_clip_frames(48, 64, 10, seed=4))
    assert not np.array_equal(a, make_clip_frames(48, 64, 10, seed=5))
    # Every frame differs clearly from the next one, so an off-by-one frame index is visible in pixels.
    step = np.abs(np.diff(a.astype(int), axis=0)).mean(axis=(1, 2, 3))
    assert step.min() > 2.0
    # A longer clip starts with different progress-bar lengths but the same moving content otherwise.
    assert make_clip_frames(48, 64, 1, seed=4).shape == (1, 48, 64, 3)


def test_encode_video_roundtrip_is_close_to_source(tmp_path):
    frames = make_clip_frames(64, 96, 12, seed=2)
    path = encode_video(tmp_path / "a.mp4", frames, 12.0, extra_args=["-g", "4"])
    info = probe(path)
    assert (info["codec"], info["width"], info["height"], info["frames"]) == ("h264", 96, 64, 12)
    assert info["fps"] == pytest.approx(12.0)
    assert info["keyframes"] >= 3  # -g 4 reaches the file (x264 may add scene-cut keyframes)
    # Lossy (yuv420p halves chroma on sharp coloured edges) but the same pictures, in the same order.
    errors = np.abs(info["rgb"].astype(int) - frames).mean(axis=(1, 2, 3))
    assert errors.max() < 12.0
    shifted = np.abs(info["rgb"][1:].astype(int) - frames[:-1]).mean(axis=(1, 2, 3))
    assert (shifted > errors[1:]).all()
    # Fast start: the moov box comes before mdat, so a reader can start from the first bytes.
    data = path.read_bytes()
    assert data.index(b"moov") < data.index(b"mdat")


def test_encode_video_is_reproducible(tmp_path):
    frames = make_clip_frames(48, 64, 8, seed=9)
    a = encode_video(tmp_path / "a.mp4", frames, 10.0).read_bytes()
    b = encode_video(tmp_path / "b.mp4", frames, 10.0).read_bytes()
    assert a == b  # single-threaded x264, same binary -> identical bytes


@pytest.mark.parametrize(
    "bad", [np.zeros((2, 47, 64, 3), np.uint8), np.zeros((2, 48, 64), np.uint8), np.zeros((2, 48, 64, 3), np.int16)]
)
def test_encode_video_rejects_bad_frames(tmp_path, bad):
    with pytest.raises(ValueError):
        encode_video(tmp_path / "x.mp4", bad, 10.0)


def test_write_sample_archive_mixes_sizes_lengths_and_is_deterministic(tmp_path):
    paths = write_sample_archive(tmp_path / "a", n=10, seed=1, include_rotated=True)
    names = [path.name for path in paths]
    assert names == [f"clip_{i:04d}.mp4" for i in range(10)] + ["rotated_0000.mp4"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == sorted(names)  # no temporary files left
    infos = [probe(path) for path in paths[:10]]
    assert {(i["width"], i["height"]) for i in infos} == set(DEFAULT_SIZES)
    assert len({i["frames"] for i in infos}) >= 4
    for info in infos:
        assert min(DEFAULT_FPS) <= info["fps"] <= max(DEFAULT_FPS)
        assert min(DEFAULT_DURATIONS) * min(DEFAULT_FPS) - 1 <= info["frames"]
        assert info["frames"] <= max(DEFAULT_DURATIONS) * max(DEFAULT_FPS) + 1
        assert info["rotation"] == 0
    assert any(info["keyframes"] > 1 for info in infos)  # short GOPs present: seeking gets exercised
    rotated = probe(paths[-1])
    assert (rotated["width"], rotated["height"], rotated["rotation"]) == (64, 48, 90)
    # Same seed -> same files; clip i does not depend on n.
    again = write_sample_archive(tmp_path / "b", n=3, seed=1)
    assert [p.read_bytes() for p in again] == [p.read_bytes() for p in paths[:3]]
    other = write_sample_archive(tmp_path / "c", n=3, seed=2)
    assert [p.read_bytes() for p in other] != [p.read_bytes() for p in paths[:3]]


def test_add_display_rotation_keeps_bitstream(tmp_path):
    plain = encode_video(tmp_path / "p.mp4", make_clip_frames(48, 64, 6, seed=1), 10.0)
    rotated = add_display_rotation(plain, tmp_path / "r.mp4", 270)
    a, b = probe(plain), probe(rotated)
    assert (a["rotation"], b["rotation"]) == (0, -90)  # FFmpeg reports 270 ccw as -90
    assert np.array_equal(a["rgb"], b["rgb"])  # stored pixels identical; only the display matrix differs


def test_write_bad_videos(tmp_path):
    paths = write_bad_videos(tmp_path)
    assert set(paths) == set(BAD_VIDEO_KINDS)
    assert paths["zero_bytes.mp4"].stat().st_size == 0
    assert paths["random_bytes.mp4"].stat().st_size == 4096
    for name in ("truncated.mp4", "truncated_720p.mp4"):
        truncated = paths[name].read_bytes()
        assert truncated[4:8] == b"ftyp" and b"moov" in truncated  # a real MP4 header, missing the rest
        with av.open(io.BytesIO(truncated)) as container:  # the index promises more bytes than there are
            entries = container.streams.video[0].index_entries
            assert max(e.pos + e.size for e in entries) > len(truncated)
    with av.open(io.BytesIO(paths["truncated_720p.mp4"].read_bytes())) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height, stream.frames) == (1280, 720, 60)
    with av.open(io.BytesIO(paths["audio_only.m4a"].read_bytes())) as container:
        assert [s.type for s in container.streams] == ["audio"]
    assert b"not a video" in paths["not_a_video.txt"].read_bytes()
    # A well-formed AVI: the demuxer finds one video stream, but no decoder knows its FourCC.
    with av.open(io.BytesIO(paths["unknown_codec.avi"].read_bytes())) as container:
        assert container.format.name == "avi"
        assert [s.type for s in container.streams] == ["video"]
        assert container.streams.video[0].codec_context is None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(BAD_VIDEO_KINDS)  # no temporary files left


def test_write_edge_videos(tmp_path):
    paths = write_edge_videos(tmp_path)
    assert set(paths) <= set(EDGE_VIDEOS)
    assert set(paths) >= {"vfr.mp4", "rotated_90.mp4", "one_frame.mp4", "mpeg4_bframes.avi", "h264.ts"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(paths)  # no temporary files left
    expected_codecs = {
        "vfr.mp4": "h264",
        "rotated_90.mp4": "h264",
        "one_frame.mp4": "h264",
        "hevc.mp4": "hevc",
        "vp9.webm": "vp9",
        "mpeg4_bframes.avi": "mpeg4",
        "av1.mp4": "av1",
        "h264.ts": "h264",
    }
    expected_formats = {".mp4": "mov,mp4,m4a,3gp,3g2,mj2", ".webm": "matroska,webm", ".avi": "avi", ".ts": "mpegts"}
    for name, path in paths.items():
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert stream.codec.canonical_name == expected_codecs[name], name
            assert container.format.name == expected_formats[path.suffix], name
            frames = list(container.decode(stream))
        expected_count = {"one_frame.mp4": 1, "rotated_90.mp4": 12, "av1.mp4": 12}.get(name, 30)
        assert len(frames) == expected_count, name
        assert frames[0].rotation == (90 if name == "rotated_90.mp4" else 0), name
        assert (frames[0].width, frames[0].height) == (64, 48), name
    # Variable frame rate: 0.1 s steps, then gaps of 0.4 and 0.2 s.
    with av.open(str(paths["vfr.mp4"])) as container:
        times = [float(frame.time) for frame in container.decode(video=0)]
    steps = np.round(np.diff(times), 3)
    assert set(steps[:9].tolist()) == {0.1} and set(steps[10:].tolist()) == {0.2, 0.4}
    # B-frames in the AVI (PyAV 18 gives pict_type as FFmpeg's enum value: AV_PICTURE_TYPE_B == 3).
    with av.open(str(paths["mpeg4_bframes.avi"])) as container:
        kinds = {int(frame.pict_type) for frame in container.decode(video=0)}
    assert 3 in kinds


def test_available_encoders_lists_what_the_samples_need():
    encoders = available_encoders()
    assert {"libx264", "mpeg4", "libvpx-vp9"} <= encoders
    assert not any(name.startswith(("pcm_", "aac")) for name in encoders)  # video encoders only


def test_cli_main_and_module_entry_point(tmp_path, capsys):
    assert main([str(tmp_path / "x"), "-n", "2", "--bad", "--edge"]) == 0
    printed = capsys.readouterr().out.split()
    assert len(printed) == 2 + len(BAD_VIDEO_KINDS) + len(write_edge_videos(tmp_path / "again"))
    assert all(Path(p).exists() for p in printed)
    result = subprocess.run(
        [sys.executable, "-m", "tara_batch.video.samples", str(tmp_path / "y"), "-n", "1"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[3],
    )
    assert result.stdout.split() == [str(tmp_path / "y" / "clip_0000.mp4")]
