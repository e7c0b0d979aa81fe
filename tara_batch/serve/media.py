"""What the page shows of a video: a JPEG thumbnail at a time (PyAV), cached on disk with a size bound; the video
itself (a local file, range requests honoured; an S3 object, a short-lived presigned URL).

Only videos of the index are ever opened, by the URI the index recorded: the client names a video id, never a path.
A local file is served only if it still is that regular file: if its path now resolves elsewhere (a symlink swapped
in after indexing) it is refused.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
from pathlib import Path

import numpy as np

from tara_batch.io.reads import read_bytes
from tara_batch.io.s3 import S3Options
from tara_batch.io.uris import is_s3, split_s3

log = logging.getLogger(__name__)

THUMB_WIDTH = 320
MEDIA_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".mov": "video/quicktime", ".webm": "video/webm",
               ".mkv": "video/x-matroska", ".avi": "video/x-msvideo", ".ts": "video/mp2t"}


class MediaError(Exception):
    """The video cannot be shown (gone, changed into something else, undecodable at that time)."""


def local_path(uri: str) -> Path:
    """The file behind a local URI of the index, if it still is that regular file."""
    path = Path(uri)
    try:
        real = Path(os.path.realpath(path))
    except OSError as exc:
        raise MediaError(f"cannot resolve {uri}: {exc}") from exc
    if real != path or not real.is_file():
        raise MediaError("the indexed file is gone or now resolves elsewhere")
    return real


def thumbnail_jpeg(data: bytes, t: float, width: int = THUMB_WIDTH) -> bytes:
    """The first frame shown at or after `t` seconds (the last one if `t` is past the end), display orientation,
    `width` pixels wide, as JPEG."""
    import av
    from PIL import Image

    from tara_batch.video.frames import rotation_to_quarter_turns

    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.video:
                raise MediaError("no video stream")
            stream = container.streams.video[0]
            stream.codec_context.thread_count = 1
            if t > 0 and stream.time_base:
                container.seek(int(t / stream.time_base), stream=stream, backward=True, any_frame=False)
            picked = None
            for frame in container.decode(stream):
                picked = frame
                if frame.time is None or frame.time >= t - 1e-3:
                    break
            if picked is None:
                raise MediaError(f"no frame at {t:.2f} s")
            rgb = np.rot90(picked.to_ndarray(format="rgb24"), rotation_to_quarter_turns(picked.rotation))
    except MediaError:
        raise
    except Exception as exc:  # PyAV raises many kinds; for a thumbnail they all mean "cannot show this"
        raise MediaError(f"cannot decode a frame at {t:.2f} s: {type(exc).__name__}: {exc}") from exc
    image = Image.fromarray(np.ascontiguousarray(rgb))
    height = max(1, round(image.height * width / image.width))
    out = io.BytesIO()
    image.resize((width, height), Image.Resampling.BILINEAR).save(out, format="JPEG", quality=85)
    return out.getvalue()


class ThumbnailCache:
    """JPEGs on disk under `root`, at most `max_bytes` in all: the least recently used are removed first."""

    def __init__(self, root: str | Path, max_bytes: int) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path:
        return self.root / (hashlib.sha256(key.encode()).hexdigest()[:40] + ".jpg")

    def get(self, key: str) -> bytes | None:
        path = self._path(key)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        os.utime(path)  # recently used
        return data

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        with self._lock:
            tmp = path.with_suffix(".part")
            tmp.write_bytes(data)
            tmp.replace(path)
            files = sorted(self.root.glob("*.jpg"), key=lambda p: p.stat().st_mtime)
            total = sum(p.stat().st_size for p in files)
            while files and total > self.max_bytes:
                victim = files.pop(0)
                total -= victim.stat().st_size
                victim.unlink(missing_ok=True)

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("*.jpg"))


def thumbnail(cache: ThumbnailCache, video_id: str, etag: str | None, uri: str, t: float,
              s3: S3Options | None) -> bytes:
    path = None if is_s3(uri) else local_path(uri)  # checked before the cache: a swapped file gets nothing
    key = f"{video_id}|{etag}|{round(t * 10)}"  # 0.1 s buckets; a changed object (new etag) gets new thumbnails
    hit = cache.get(key)
    if hit is not None:
        return hit
    data = path.read_bytes() if path is not None else read_bytes(uri, s3=s3)
    jpeg = thumbnail_jpeg(data, max(0.0, t))
    cache.put(key, jpeg)
    return jpeg


def presigned_url(uri: str, s3: S3Options, seconds: int) -> str:
    bucket, key = split_s3(uri)
    return s3.boto3_client().generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": key},
                                                    ExpiresIn=seconds)


def media_type(uri: str) -> str:
    return MEDIA_TYPES.get(Path(uri).suffix.lower(), "application/octet-stream")
