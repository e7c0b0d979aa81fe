"""Still images among the videos (input.stills): a PNG or JPEG renamed .mp4 is a `not_a_video` failure by default,
or a one-frame clip when stills are embedded; real motion-JPEG video is never mistaken for a still."""

from __future__ import annotations

import av
import numpy as np
import pytest

from tara_batch import schema as S
from tara_batch.config import ConfigError, InputConfig
from tara_batch.embed.stages import DecodeStage
from tara_batch.io.uris import video_id_for
from tara_batch.video.encode import encode_video
from tara_batch.video.frames import DecodeError
from tara_batch.video.registry import get_sampler
from tara_batch.video.samples import make_clip_frames

IMAGE = make_clip_frames(64, 96, 1, seed=5)[0]


def _still(path, codec: str, pix_fmt: str):
    with av.open(str(path), "w", format="image2") as c:
        stream = c.add_stream(codec)
        stream.width, stream.height, stream.pix_fmt = IMAGE.shape[1], IMAGE.shape[0], pix_fmt
        frame = av.VideoFrame.from_ndarray(IMAGE, format="rgb24").reformat(format=pix_fmt)
        for packet in [*stream.encode(frame), *stream.encode()]:
            c.mux(packet)
    return path


@pytest.fixture(scope="module")
def stills(tmp_path_factory):
    d = tmp_path_factory.mktemp("stills")
    png = _still(d / "poster.png", "png", "rgb24")
    jpg = _still(d / "poster.jpg", "mjpeg", "yuvj420p")
    (d / "png_named.mp4").write_bytes(png.read_bytes())  # the case that bites: a picture with a video's name
    return {"png": d / "png_named.mp4", "jpeg": jpg}


@pytest.mark.parametrize("backend", ["pyav", "decord"])
@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_still_is_not_a_video_by_default(stills, kind, backend):
    with pytest.raises(DecodeError) as err:
        get_sampler(backend).sample(stills[kind].read_bytes(), 8, 64 * 96)
    assert err.value.kind == "not_a_video" and "input.stills=embed" in str(err.value)


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_still_embeds_as_one_frame_clip_when_allowed(stills, kind):
    video = get_sampler("pyav", allow_stills=True).sample(stills[kind].read_bytes(), 8, 64 * 96)
    # one frame, like any clip shorter than the profile's frame count (tara-method: all frames when N <= n)
    assert video.frames.shape[0] == 1 and video.source_frames == 1
    tol = 0 if kind == "png" else 40  # lossless vs JPEG
    assert np.abs(video.frames[0].astype(int) - IMAGE.astype(int)).mean() <= max(tol, 1)


def test_motion_jpeg_video_is_a_video(tmp_path):
    path = tmp_path / "mjpeg.avi"
    encode_video(path, make_clip_frames(64, 96, 12, seed=1), 10, codec="mjpeg", extra_args=["-pix_fmt", "yuvj420p"])
    assert get_sampler("pyav").sample(path.read_bytes(), 8, 64 * 96).source_frames == 12


def test_decode_stage_policy(stills):
    uri = str(stills["png"])
    batch = {S.VIDEO_ID: np.array([video_id_for(uri)], dtype=object), S.URI: np.array([uri], dtype=object),
             S.SIZE: np.array([1]), S.ETAG: np.array(["e"], dtype=object)}
    [rejected] = list(DecodeStage(backend="pyav", num_frames=8, max_pixels=64 * 96)(batch))
    assert rejected[S.STATUS].tolist() == ["failed"] and rejected[S.ERROR_KIND].tolist() == ["not_a_video"]
    [embedded] = list(DecodeStage(backend="pyav", num_frames=8, max_pixels=64 * 96, allow_stills=True)(batch))
    assert embedded[S.STATUS].tolist() == ["ok"] and embedded[S.FRAMES][0].shape[0] == 1


def test_stills_config():
    assert InputConfig(source="x").stills == "reject"
    with pytest.raises(ConfigError, match="input.stills"):
        InputConfig(source="x", stills="maybe")
