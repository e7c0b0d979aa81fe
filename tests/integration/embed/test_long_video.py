"""A two-hour video in segment mode: windows stream a chunk at a time with flat memory, every window exactly once.

Slow tier (about a minute): ffmpeg's test source, 2 hours at 320x180 and 2 fps, 2 s windows every 2 s (3,600
windows); the decode stage is driven directly, as the CPU actor drives it, sampling RSS after every yielded batch.
Resume mid-video after a kill is `test_segments_job.py`'s (the same code path, on short videos)."""

from __future__ import annotations

import numpy as np
import pytest

from tara_batch import schema as S
from tara_batch.embed.stages import DecodeStage
from tara_batch.io.uris import video_id_for
from tara_batch.video.encode import run_ffmpeg

pytestmark = [pytest.mark.integration, pytest.mark.slow]

HOURS = 2
FPS = 2


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


@pytest.fixture(scope="module")
def two_hours(tmp_path_factory):
    path = tmp_path_factory.mktemp("long") / "film.mp4"
    run_ffmpeg(["-f", "lavfi", "-i", f"testsrc2=size=320x180:rate={FPS}:duration={HOURS * 3600}", "-c:v", "libx264",
                "-preset", "ultrafast", "-crf", "35", "-g", "20", "-pix_fmt", "yuv420p", "-threads", "1", str(path)])
    return path


def test_two_hour_video_streams_with_flat_memory(two_hours):
    uri = str(two_hours)
    batch = {S.VIDEO_ID: np.array([video_id_for(uri)], dtype=object), S.URI: np.array([uri], dtype=object),
             S.SIZE: np.array([two_hours.stat().st_size]), S.ETAG: np.array(["e"], dtype=object)}
    stage = DecodeStage(backend="pyav", num_frames=8, max_pixels=320 * 180, segments=(2.0, 2.0), window_chunk=64)
    indices: list[int] = []
    rss: list[float] = []
    sizes: list[int] = []
    for out in stage(batch):
        assert out[S.STATUS].tolist() == ["ok"] * len(out[S.URI]), out[S.ERROR_MESSAGE][:1]
        indices += out[S.SEGMENT_INDEX].tolist()
        sizes.append(len(out[S.URI]))
        rss.append(_rss_mib())
        del out
    total = HOURS * 3600 // 2
    assert indices == list(range(total))  # every window, once, in order
    assert max(sizes) <= 64
    # flat: after the first few chunks (allocator warm-up), the resident set does not grow with the windows done
    warm, late = rss[5], max(rss[len(rss) // 2:])
    print(f"{len(sizes)} batches, RSS after batch 5 {warm:.0f} MiB, max over the second half {late:.0f} MiB")
    assert late - warm < 64, (warm, late)
