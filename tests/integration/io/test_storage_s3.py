"""tara_batch.storage against a real S3 HTTP endpoint on loopback (moto's server), plus a fault-injecting proxy."""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import uuid
from concurrent.futures import ProcessPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tara_batch.errors import InputError
from tara_batch.io.listing import list_videos
from tara_batch.io.manifest import read_manifest
from tara_batch.io.reads import ObjectTooLarge, read_bytes
from tara_batch.io.uris import video_id_for
from tara_batch.schema import ETAG, SIZE, URI, listing_schema
from tests.faults import FaultProxy
from tests.s3server import S3Server

pytestmark = pytest.mark.integration

FILES = {
    "a.mp4": b"A" * 1000,
    "cam1/b.mp4": b"B" * 2000,
    "cam1/deep/c.MKV": b"C" * 3000,
    "cam2/d.webm": b"D" * 4000,
    "cam2/readme.txt": b"not a video",
}


@pytest.fixture()
def server(s3_server: S3Server) -> S3Server:
    # The session-wide server from tests/conftest.py: one moto per test run, shared with the other S3 tests.
    return s3_server


@pytest.fixture()
def bucket(server):
    # moto's state is process-global: a fresh bucket per test keeps tests independent.
    return server.create_bucket(f"tara-{uuid.uuid4().hex[:12]}")


@pytest.fixture()
def videos(server, bucket, tmp_path):
    """FILES under s3://bucket/raw/, plus a decoy under raw2/ that a prefix of "raw" must not match."""
    for rel, data in FILES.items():
        p = tmp_path / "src" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    uris = server.upload_dir(tmp_path / "src", bucket, "raw/")
    server.put_bytes(bucket, "raw2/decoy.mp4", b"x")
    assert len(uris) == len(FILES)
    return bucket


def keys(table: pa.Table, bucket: str) -> list[str]:
    return [u.removeprefix(f"s3://{bucket}/") for u in table[URI].to_pylist()]


# --- listing ------------------------------------------------------------------------------------------------------------


def test_list_prefix_extension_glob(server, videos):
    b, opts = videos, server.options()
    t = list_videos(f"s3://{b}/raw", s3=opts)  # no trailing slash: still the folder raw/, not raw2/
    assert t.schema == listing_schema()
    assert keys(t, b) == ["raw/a.mp4", "raw/cam1/b.mp4", "raw/cam1/deep/c.MKV", "raw/cam2/d.webm"]
    assert t[SIZE].to_pylist() == [1000, 2000, 3000, 4000]
    # moto's ETag for a single-part upload is the MD5 of the content, returned with quotes that we strip.
    assert t[ETAG].to_pylist()[0] == hashlib.md5(FILES["a.mp4"]).hexdigest()
    assert t["video_id"].to_pylist() == [video_id_for(u) for u in t[URI].to_pylist()]

    assert keys(list_videos(f"s3://{b}/raw/", s3=opts, extensions=[".mkv"]), b) == ["raw/cam1/deep/c.MKV"]
    assert keys(list_videos(f"s3://{b}/raw/", s3=opts, glob="cam1/*"), b) == ["raw/cam1/b.mp4"]
    assert keys(list_videos(f"s3://{b}/raw/", s3=opts, glob="**/*.mp4"), b) == ["raw/a.mp4", "raw/cam1/b.mp4"]
    assert keys(list_videos(f"s3://{b}", s3=opts, extensions=None, glob="*.txt"), b) == ["raw/cam2/readme.txt"]
    # Whole bucket (empty prefix); limit keeps the first rows of the sorted listing.
    everything = list_videos(f"s3://{b}/", s3=opts)
    assert keys(everything, b)[-1] == "raw2/decoy.mp4" and everything.num_rows == 5
    assert keys(list_videos(f"s3://{b}", s3=opts, limit=2), b) == ["raw/a.mp4", "raw/cam1/b.mp4"]
    # A single object.
    assert keys(list_videos(f"s3://{b}/raw/cam2/d.webm", s3=opts), b) == ["raw/cam2/d.webm"]


def test_list_errors(server, videos):
    opts = server.options()
    with pytest.raises(InputError, match="NoSuchBucket"):
        list_videos("s3://no-such-bucket-here/x", s3=opts)
    with pytest.raises(InputError, match="no files under"):
        list_videos(f"s3://{videos}/nothing/here", s3=opts)
    with pytest.raises(InputError, match=r"none of the 5 files.*extensions \.avi"):
        list_videos(f"s3://{videos}/raw/", s3=opts, extensions=[".avi"])


# --- manifests ----------------------------------------------------------------------------------------------------------


def test_manifest_in_s3(server, videos):
    b, opts = videos, server.options()
    csv = (
        "uri,label\n"
        f"s3://{b}/raw/a.mp4,x\n"
        "cam1/b.mp4,y\n"  # relative: resolves against the manifest's folder (raw/)
        f"s3://{b}/raw/a.mp4,dup\n"
    )
    server.put_bytes(b, "raw/manifest.csv", csv.encode())
    t = read_manifest(f"s3://{b}/raw/manifest.csv", s3=opts)
    assert keys(t, b) == ["raw/a.mp4", "raw/cam1/b.mp4"]
    assert t[SIZE].to_pylist() == [1000, 2000]  # filled by HEAD
    assert t[ETAG].to_pylist() == [
        hashlib.md5(FILES["a.mp4"]).hexdigest(),
        hashlib.md5(FILES["cam1/b.mp4"]).hexdigest(),
    ]

    # Parquet manifest with a missing object.
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"path": [f"s3://{b}/raw/cam2/d.webm", f"s3://{b}/raw/ghost.mp4"]}), sink)
    server.put_bytes(b, "lists/m.parquet", sink.getvalue().to_pybytes())
    with pytest.raises(InputError, match=r"ghost\.mp4"):
        read_manifest(f"s3://{b}/lists/m.parquet", s3=opts)
    assert keys(read_manifest(f"s3://{b}/lists/m.parquet", s3=opts, on_missing="skip"), b) == ["raw/cam2/d.webm"]
    with pytest.raises(InputError, match="does not exist"):
        read_manifest(f"s3://{b}/lists/none.csv", s3=opts)


# --- reads --------------------------------------------------------------------------------------------------------------


def test_read_bytes(server, videos):
    b, opts = videos, server.options()
    assert read_bytes(f"s3://{b}/raw/cam1/b.mp4", s3=opts) == FILES["cam1/b.mp4"]
    assert read_bytes(f"s3://{b}/raw/a.mp4", s3=opts, max_bytes=1000) == FILES["a.mp4"]
    with pytest.raises(ObjectTooLarge) as exc:
        read_bytes(f"s3://{b}/raw/a.mp4", s3=opts, max_bytes=999)
    assert exc.value.size == 1000
    with pytest.raises(FileNotFoundError):
        read_bytes(f"s3://{b}/raw/ghost.mp4", s3=opts)


def test_pyarrow_filesystem_reads(server, videos):
    fs = server.options().pyarrow_filesystem()
    with fs.open_input_file(f"{videos}/raw/cam2/d.webm") as f:
        assert f.read() == FILES["cam2/d.webm"]
    info = fs.get_file_info(f"{videos}/raw/a.mp4")
    assert info.size == 1000


def test_lancedb_roundtrip(server, bucket):
    lancedb = pytest.importorskip("lancedb")
    so = server.options().lancedb_storage_options()
    assert so["allow_http"] == "true" and so["aws_endpoint"] == server.endpoint_url
    db = lancedb.connect(f"s3://{bucket}/db", storage_options=so)
    data = pa.table(
        {
            "video_id": ["a", "b", "c"],
            "embedding": pa.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], pa.list_(pa.float32(), 2)),
        }
    )
    db.create_table("videos", data=data)
    back = lancedb.connect(f"s3://{bucket}/db", storage_options=so).open_table("videos").to_arrow()
    assert sorted(back["video_id"].to_pylist()) == ["a", "b", "c"]
    # Lance really wrote to the bucket (not to some local fallback).
    listed = server.client().list_objects_v2(Bucket=bucket, Prefix="db/videos.lance/")
    assert listed["KeyCount"] > 0


def test_other_process_reads_over_http(server, videos):
    """Separate processes (as Ray workers are) reach the server through the endpoint URL in pickled S3Options."""
    opts = server.options()
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        data = pool.submit(read_bytes, f"s3://{videos}/raw/cam1/b.mp4", s3=opts).result(timeout=60)
        table = pool.submit(list_videos, f"s3://{videos}/raw/", s3=opts).result(timeout=60)
    assert data == FILES["cam1/b.mp4"]
    assert table.num_rows == 4


def test_ray_workers_read_over_http(server, videos, ray_session):
    """The real use: Ray worker processes get S3Options as a task argument and read from the loopback endpoint."""
    ray = ray_session
    opts = server.options()
    # Library functions, not test-local closures: workers import them from the installed package.
    listing = ray.get(ray.remote(list_videos).remote(f"s3://{videos}/raw/", s3=opts))
    blobs = ray.get([ray.remote(read_bytes).remote(u, s3=opts) for u in listing[URI].to_pylist()])
    assert [len(b) for b in blobs] == [1000, 2000, 3000, 4000]


# --- transient errors: a fault-injecting proxy in front of moto (tests/faults.py) ---------------------------------------


def test_throttling_503_is_retried(server, videos):
    with FaultProxy(server.endpoint_url) as proxy:
        opts = server.options(endpoint_url=proxy.endpoint_url, max_attempts=4)
        proxy.fail_next = 2
        assert read_bytes(f"s3://{videos}/raw/a.mp4", s3=opts) == FILES["a.mp4"]
        assert proxy.statuses() == [503, 503, 200]

        proxy.requests.clear()
        proxy.fail_next = 1  # listing pages are retried too
        assert list_videos(f"s3://{videos}/raw/", s3=opts).num_rows == 4
        assert proxy.statuses()[:2] == [503, 200]


def test_throttling_gives_up_after_max_attempts(server, videos):
    import botocore.exceptions

    with FaultProxy(server.endpoint_url) as proxy:
        opts = server.options(endpoint_url=proxy.endpoint_url, max_attempts=2)
        proxy.fail_next = 10
        with pytest.raises(botocore.exceptions.ClientError, match="SlowDown"):
            read_bytes(f"s3://{videos}/raw/a.mp4", s3=opts)
        assert proxy.statuses() == [503, 503]  # bounded: max_attempts counts the first try


def test_broken_body_is_resumed(server, videos, caplog):
    with FaultProxy(server.endpoint_url) as proxy:
        opts = server.options(endpoint_url=proxy.endpoint_url)
        proxy.truncate_next_get = 2
        with caplog.at_level(logging.WARNING, logger="tara_batch.io"):
            data = read_bytes(f"s3://{videos}/raw/cam2/d.webm", s3=opts)
        assert data == FILES["cam2/d.webm"]
        # Two broken streams, each resumed where it stopped with a ranged GET (206), not restarted from zero.
        assert [r[2] for r in proxy.requests if r[0] == "GET"] == [200, 206, 206]
        assert "body read failed" in caplog.text


def test_object_replaced_mid_read_is_not_stitched(server, videos):
    """If the object changes between a broken stream and its resume, IfMatch fails (412) and the read restarts."""
    b = videos
    new = b"N" * 5000
    with FaultProxy(server.endpoint_url) as proxy:
        opts = server.options(endpoint_url=proxy.endpoint_url)
        proxy.truncate_next_get = 1
        proxy.after_truncate = lambda: server.put_bytes(b, "raw/a.mp4", new)
        assert read_bytes(f"s3://{b}/raw/a.mp4", s3=opts) == new
        assert [r[2] for r in proxy.requests if r[0] == "GET"] == [200, 412, 200]
