"""Unit tests for tara_batch.storage: no server, local files only."""

from __future__ import annotations

import json
import logging
import os
import pickle

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tara_batch.errors import ConfigError, InputError
from tara_batch.io.listing import DEFAULT_EXTENSIONS, list_videos
from tara_batch.io.manifest import read_manifest
from tara_batch.io.reads import ObjectTooLarge, read_bytes
from tara_batch.io.s3 import S3Options, clear_caches
from tara_batch.io.uris import canonical_uri, is_s3, split_s3, video_id_for
from tara_batch.schema import ETAG, SIZE, URI, VIDEO_ID, listing_schema


@pytest.fixture()
def tree(tmp_path):
    """videos/ with nested folders, mixed-case extensions and non-video files."""
    root = tmp_path / "videos"
    files = {
        "a.mp4": b"a" * 10,
        "B.MOV": b"b" * 20,
        "notes.txt": b"not a video",
        "cam1/c.mp4": b"c" * 30,
        "cam1/deep/d.mkv": b"d" * 40,
        "cam2/e.webm": b"e" * 50,
        "cam2/clip_1.mp4": b"f" * 60,
    }
    for rel, data in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    return root


def rels(table: pa.Table, root) -> list[str]:
    prefix = str(root.resolve()) + "/"
    return [u[len(prefix) :] for u in table[URI].to_pylist()]


# --- ids and URIs -----------------------------------------------------------------------------------------------------


def test_video_id_deterministic_and_unique(tmp_path):
    a = video_id_for("s3://bucket/a.mp4")
    assert a == video_id_for("s3://bucket/a.mp4")
    assert len(a) == 32 and int(a, 16) >= 0
    ids = {video_id_for(f"s3://bucket/v{i}.mp4") for i in range(2000)}
    assert len(ids) == 2000
    # Known value: sha256 of the canonical URI, not of the spelling or of anything process-dependent.
    import hashlib

    assert a == hashlib.sha256(b"s3://bucket/a.mp4").hexdigest()[:32]
    # Different spellings of one local file -> one id.
    f = tmp_path / "x.mp4"
    f.write_bytes(b"x")
    assert video_id_for(str(f)) == video_id_for(f"file://{f}") == video_id_for(str(tmp_path / "." / "x.mp4"))


def test_canonical_uri(tmp_path, monkeypatch):
    assert canonical_uri("s3://bucket/key//with//slashes") == "s3://bucket/key//with//slashes"
    assert canonical_uri("S3://bucket/k") == "s3://bucket/k"
    monkeypatch.chdir(tmp_path)
    assert canonical_uri("rel/v.mp4") == str(tmp_path.resolve() / "rel" / "v.mp4")
    assert canonical_uri("file:///data/a%20b.mp4") == "/data/a b.mp4"
    assert canonical_uri("/data/x/../y.mp4") == "/data/y.mp4"
    # Symlinks are resolved.
    (tmp_path / "real.mp4").write_bytes(b"r")
    (tmp_path / "link.mp4").symlink_to(tmp_path / "real.mp4")
    assert canonical_uri(str(tmp_path / "link.mp4")) == str((tmp_path / "real.mp4").resolve())
    with pytest.raises(InputError, match="unsupported URI scheme"):
        canonical_uri("gs://bucket/x.mp4")


def test_is_s3_split_s3():
    assert is_s3("s3://b/k") and is_s3("S3://b/k") and not is_s3("/tmp/s3://x")
    assert split_s3("s3://bucket/a/b.mp4") == ("bucket", "a/b.mp4")
    assert split_s3("s3://bucket") == ("bucket", "")
    with pytest.raises(InputError):
        split_s3("s3:///key")
    with pytest.raises(InputError):
        split_s3("/local/path")


# --- local listing ------------------------------------------------------------------------------------------------------


def test_list_local_default_extensions_sorted(tree):
    t = list_videos(str(tree))
    assert t.schema == listing_schema()
    assert rels(t, tree) == sorted(
        ["B.MOV", "a.mp4", "cam1/c.mp4", "cam1/deep/d.mkv", "cam2/clip_1.mp4", "cam2/e.webm"]
    )
    assert t[URI].to_pylist() == sorted(t[URI].to_pylist())
    assert t[VIDEO_ID].to_pylist() == [video_id_for(u) for u in t[URI].to_pylist()]
    sizes = dict(zip(rels(t, tree), t[SIZE].to_pylist(), strict=True))
    assert sizes["a.mp4"] == 10 and sizes["cam1/deep/d.mkv"] == 40


def test_list_local_etag_is_mtime_ns(tree):
    t = list_videos(str(tree))
    for uri, etag in zip(t[URI].to_pylist(), t[ETAG].to_pylist(), strict=True):
        assert etag == f"mtime:{os.stat(uri).st_mtime_ns}"
    # Rewriting a file changes its etag.
    f = tree / "a.mp4"
    os.utime(f, ns=(1, 1_000_000_123))
    t2 = list_videos(str(tree), extensions=[".mp4"], glob="a.mp4")
    assert t2[ETAG].to_pylist() == ["mtime:1000000123"]


def test_list_local_extension_filter(tree):
    assert rels(list_videos(str(tree), extensions=[".MP4"]), tree) == ["a.mp4", "cam1/c.mp4", "cam2/clip_1.mp4"]
    assert rels(list_videos(str(tree), extensions=["mov"]), tree) == ["B.MOV"]  # dot optional, case-insensitive
    assert "notes.txt" in rels(list_videos(str(tree), extensions=None), tree)
    with pytest.raises(ConfigError):
        list_videos(str(tree), extensions=[])


@pytest.mark.parametrize(
    ("glob", "expected"),
    [
        ("**/*.mp4", ["a.mp4", "cam1/c.mp4", "cam2/clip_1.mp4"]),  # ** may match zero folders
        ("cam1/*", ["cam1/c.mp4"]),  # * does not cross folders
        ("cam1/**", ["cam1/c.mp4", "cam1/deep/d.mkv"]),
        ("clip_*", ["cam2/clip_1.mp4"]),  # no "/" -> file name at any depth
        ("*/e.webm", ["cam2/e.webm"]),
        ("cam[12]/*.mp4", ["cam1/c.mp4", "cam2/clip_1.mp4"]),
    ],
)
def test_list_local_glob(tree, glob, expected):
    assert rels(list_videos(str(tree), glob=glob), tree) == expected


def test_list_local_single_file_and_limit(tree):
    t = list_videos(str(tree / "cam1" / "c.mp4"))
    assert t.num_rows == 1 and t[SIZE][0].as_py() == 30
    t = list_videos(f"file://{tree}", limit=2)
    assert rels(t, tree) == ["B.MOV", "a.mp4"]  # first rows of the sorted listing
    with pytest.raises(ConfigError):
        list_videos(str(tree), limit=0)


def test_list_local_symlinks_deduplicated(tree):
    (tree / "alias.mp4").symlink_to(tree / "a.mp4")
    t = list_videos(str(tree), extensions=[".mp4"])
    assert rels(t, tree).count("a.mp4") == 1 and "alias.mp4" not in rels(t, tree)


def test_list_local_errors(tmp_path, tree):
    with pytest.raises(InputError, match="does not exist"):
        list_videos(str(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no files under"):
        list_videos(str(empty))
    with pytest.raises(InputError, match=r"none of the 7 files .*extensions \.flv.*glob 'cam1/\*'"):
        list_videos(str(tree), extensions=[".flv"], glob="cam1/*")


def test_default_extensions():
    assert ".mp4" in DEFAULT_EXTENSIONS and all(e == e.lower() and e.startswith(".") for e in DEFAULT_EXTENSIONS)


# --- manifests ----------------------------------------------------------------------------------------------------------


def test_manifest_csv_relative_paths_and_stat(tree, tmp_path):
    m = tree / "list.csv"
    m.write_text("uri,label\na.mp4,x\ncam1/c.mp4,y\n" + f"{tree / 'cam2' / 'e.webm'},z\n")
    t = read_manifest(str(m))
    assert t.schema == listing_schema()
    assert rels(t, tree) == ["a.mp4", "cam1/c.mp4", "cam2/e.webm"]  # manifest order kept
    assert t[SIZE].to_pylist() == [10, 30, 50]
    assert t[ETAG][0].as_py() == f"mtime:{(tree / 'a.mp4').stat().st_mtime_ns}"
    assert t[VIDEO_ID].to_pylist() == [video_id_for(u) for u in t[URI].to_pylist()]


def test_manifest_csv_values_stay_strings(tmp_path):
    # Type inference must not turn a file named "007" into 7, nor numeric-looking etags into numbers.
    (tmp_path / "007").write_bytes(b"x")
    m = tmp_path / "m.csv"
    m.write_text("uri,size,etag\n007,5,1e10\n")
    t = read_manifest(str(m))
    assert t[URI].to_pylist() == [str((tmp_path / "007").resolve())]
    assert t[SIZE].to_pylist() == [5] and t[ETAG].to_pylist() == ["1e10"]


def test_manifest_relative_to_manifest_dir_not_cwd(tree, tmp_path, monkeypatch):
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    monkeypatch.chdir(sub)
    m = tree / "cam1" / "m.csv"
    m.write_text("path\nc.mp4\ndeep/d.mkv\n")  # column "path" accepted when "uri" is absent
    assert rels(read_manifest(str(m)), tree) == ["cam1/c.mp4", "cam1/deep/d.mkv"]


def test_manifest_parquet_with_size_etag(tree):
    m = tree / "m.parquet"
    pq.write_table(
        pa.table({"uri": ["a.mp4", "s3://bkt/x.mp4"], "size": [111, 222], "etag": ['"abc"', "def"]}),
        m,
    )
    # size/etag present for every row: no stat/HEAD happens (the s3 object does not exist and is never asked for).
    t = read_manifest(str(m))
    assert t[URI].to_pylist() == [str((tree / "a.mp4").resolve()), "s3://bkt/x.mp4"]
    assert t[SIZE].to_pylist() == [111, 222]
    assert t[ETAG].to_pylist() == ["abc", "def"]


def test_manifest_jsonl_and_json_array_and_custom_column(tree):
    m = tree / "m.jsonl"
    m.write_text(json.dumps({"video": "a.mp4"}) + "\n\n" + json.dumps({"video": "B.MOV", "extra": 1}) + "\n")
    assert rels(read_manifest(str(m), column="video"), tree) == ["a.mp4", "B.MOV"]
    m2 = tree / "m.json"
    m2.write_text(json.dumps(["cam1/c.mp4", {"uri": "a.mp4"}]))
    assert rels(read_manifest(str(m2)), tree) == ["cam1/c.mp4", "a.mp4"]


def test_manifest_single_column_without_header_and_txt(tree):
    m = tree / "bare.csv"
    m.write_text("a.mp4\ncam1/c.mp4\n")
    assert rels(read_manifest(str(m)), tree) == ["a.mp4", "cam1/c.mp4"]
    m2 = tree / "list.txt"
    m2.write_text("# comment\na.mp4\n\ncam2/e.webm\n")
    assert rels(read_manifest(str(m2)), tree) == ["a.mp4", "cam2/e.webm"]


def test_manifest_missing_column_names_columns(tree):
    m = tree / "m.csv"
    m.write_text("file,label\na.mp4,x\n")
    with pytest.raises(InputError, match=r"no column 'uri'.*\['file', 'label'\]"):
        read_manifest(str(m))


def test_manifest_duplicates_dropped_and_logged(tree, caplog):
    m = tree / "m.csv"
    m.write_text(f"uri\na.mp4\n./a.mp4\n{tree / 'a.mp4'}\ncam1/c.mp4\n")
    with caplog.at_level(logging.WARNING, logger="tara_batch.io"):
        t = read_manifest(str(m))
    assert rels(t, tree) == ["a.mp4", "cam1/c.mp4"]
    assert "dropped 2 duplicate" in caplog.text


def test_manifest_missing_objects(tree):
    m = tree / "m.csv"
    m.write_text("uri\na.mp4\nghost.mp4\n")
    with pytest.raises(InputError, match=r"1 of 2 listed objects do not exist: .*ghost\.mp4"):
        read_manifest(str(m))
    assert rels(read_manifest(str(m), on_missing="skip"), tree) == ["a.mp4"]
    kept = read_manifest(str(m), on_missing="keep")
    assert kept[SIZE].to_pylist() == [10, None]


def test_manifest_errors(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_manifest(str(tmp_path / "nope.csv"))
    (tmp_path / "m.xml").write_text("<x/>")
    with pytest.raises(InputError, match="unknown format"):
        read_manifest(str(tmp_path / "m.xml"))
    (tmp_path / "empty.txt").write_text("\n")
    with pytest.raises(InputError, match="lists no URIs"):
        read_manifest(str(tmp_path / "empty.txt"))


# --- reads --------------------------------------------------------------------------------------------------------------


def test_read_bytes_local_and_max_bytes(tree):
    assert read_bytes(str(tree / "a.mp4")) == b"a" * 10
    assert read_bytes(f"file://{tree / 'a.mp4'}", max_bytes=10) == b"a" * 10
    with pytest.raises(ObjectTooLarge) as exc:
        read_bytes(str(tree / "a.mp4"), max_bytes=9)
    assert exc.value.size == 10 and exc.value.max_bytes == 9
    # Survives pickling (Ray ships task exceptions between processes).
    again = pickle.loads(pickle.dumps(exc.value))
    assert (again.uri, again.size, again.max_bytes, str(again)) == (exc.value.uri, 10, 9, str(exc.value))
    with pytest.raises(FileNotFoundError):
        read_bytes(str(tree / "ghost.mp4"))


# --- S3Options ----------------------------------------------------------------------------------------------------------

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
TOKEN = "FQoGZXIvYXdzEXAMPLE-session-token-value"
KEY_ID = "AKIAEXAMPLEKEYID1234"


def test_s3options_repr_hides_secrets(caplog):
    opts = S3Options(
        endpoint_url="http://127.0.0.1:9",
        region="eu-west-1",
        access_key_id=KEY_ID,
        secret_access_key=SECRET,
        session_token=TOKEN,
    )
    with caplog.at_level(logging.DEBUG):
        text = repr(opts) + str(opts) + f"{opts}" + f"{opts!r}" + repr([opts])
        logging.getLogger("test").info("options: %s %r", opts, opts)
        opts.boto3_client()  # client creation logs at DEBUG: must not leak either
        opts.lancedb_storage_options()
        opts.pyarrow_filesystem()
    for secret in (SECRET, TOKEN, KEY_ID):
        assert secret not in text
        assert secret not in caplog.text
    assert "eu-west-1" in text and "'***'" in text
    # Still a value object: picklable for Ray, equal after the round trip.
    assert pickle.loads(pickle.dumps(opts)) == opts


def test_s3options_validation():
    with pytest.raises(ConfigError, match="both"):
        S3Options(access_key_id="x")
    with pytest.raises(ConfigError):
        S3Options(endpoint_url="localhost:9000")
    with pytest.raises(ConfigError):
        S3Options(max_attempts=0)
    with pytest.raises(ConfigError):
        S3Options(retry_mode="yolo")


def test_s3options_exports_explicit_settings():
    opts = S3Options(endpoint_url="http://127.0.0.1:9000", access_key_id="a", secret_access_key="b")
    so = opts.lancedb_storage_options()
    assert so == {
        "aws_endpoint": "http://127.0.0.1:9000",
        "allow_http": "true",
        "aws_region": "us-east-1",  # defaulted for custom endpoints
        "aws_access_key_id": "a",
        "aws_secret_access_key": "b",
    }
    client = opts.boto3_client()
    assert client is opts.boto3_client()  # cached
    assert client.meta.endpoint_url == "http://127.0.0.1:9000"
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 8}
    fs = opts.pyarrow_filesystem()
    assert fs.region == "us-east-1"


@pytest.fixture()
def fresh_caches():
    # boto3 sessions are cached per options: drop those built before/under a test's env changes.
    clear_caches()
    yield
    clear_caches()


def test_s3options_honours_aws_endpoint_url_env(monkeypatch, fresh_caches):
    # boto3 picks up AWS_ENDPOINT_URL by itself; LanceDB/pyarrow must be told the same endpoint.
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9999")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "envkey")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "envsecret")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    opts = S3Options()
    assert opts.boto3_client().meta.endpoint_url == "http://127.0.0.1:9999"
    so = opts.lancedb_storage_options()
    assert so["aws_endpoint"] == "http://127.0.0.1:9999" and so["allow_http"] == "true"
    assert so["aws_access_key_id"] == "envkey" and so["aws_secret_access_key"] == "envsecret"


def test_s3options_profile(tmp_path, monkeypatch, fresh_caches):
    creds = tmp_path / "credentials"
    creds.write_text("[media]\naws_access_key_id = profkey\naws_secret_access_key = profsecret\n")
    config = tmp_path / "config"
    config.write_text("[profile media]\nregion = eu-central-1\n")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(creds))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    so = S3Options(profile="media").lancedb_storage_options()
    assert so == {"aws_region": "eu-central-1", "aws_access_key_id": "profkey", "aws_secret_access_key": "profsecret"}
    with pytest.raises(ConfigError, match="profile"):
        S3Options(profile="no-such-profile").boto3_client()
