"""Preflight: a wrong bucket, denied access, missing credentials, an unreachable endpoint or a missing local input is
a one-line error naming the setting, exit code 2, before Ray starts and before any index version is registered."""

from __future__ import annotations

import socket
import uuid

import pytest

from tara_batch.cli import main as cli
from tara_batch.errors import ConfigError
from tara_batch.io.preflight import check_input, check_output
from tara_batch.io.s3 import S3Options, clear_caches
from tests.faults import FaultProxy
from tests.s3server import s3_overrides

pytestmark = pytest.mark.integration


def _embed(capsys, tmp_path, tiny_model_dir, source, *extra, verbose="-q"):
    table = tmp_path / "index.lancedb" / "videos"
    rc = cli([verbose, "embed", "--input", source, "--model", str(tiny_model_dir), "--table", str(table),
              "--no-progress", *extra])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert not (tmp_path / "index.lancedb").exists()  # nothing registered, nothing created
    return err


def _one_line(err: str) -> str:
    lines = [x for x in err.strip().splitlines() if x.startswith("tara-batch:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture()
def bucket(s3_server):
    name = s3_server.create_bucket(f"pre-{uuid.uuid4().hex[:10]}")
    s3_server.put_bytes(name, "raw/a.mp4", b"x")
    return name


def test_missing_bucket(s3_server, capsys, tmp_path, tiny_model_dir):
    line = _one_line(_embed(capsys, tmp_path, tiny_model_dir, "s3://no-such-bucket-here/raw/", *s3_server.overrides()))
    assert "`input.source`" in line and "'no-such-bucket-here' does not exist" in line


def test_access_denied(s3_server, bucket, capsys, tmp_path, tiny_model_dir):
    with FaultProxy(s3_server.endpoint_url) as proxy:
        proxy.deny = True
        line = _one_line(_embed(capsys, tmp_path, tiny_model_dir, f"s3://{bucket}/raw/",
                                *s3_overrides(proxy.endpoint_url)))
    assert "`input.source`" in line and "access denied" in line and "s3:ListBucket" in line


def test_traceback_only_with_vv(s3_server, capsys, tmp_path, tiny_model_dir):
    err = _embed(capsys, tmp_path, tiny_model_dir, "s3://no-such-bucket-here/raw/", *s3_server.overrides(),
                 verbose="-vv")
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("tara-batch: config error in `input.source`")


def test_no_credentials(s3_server, bucket, monkeypatch, tmp_path):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    clear_caches()
    try:
        with pytest.raises(ConfigError) as err:
            check_input(f"s3://{bucket}/raw/", S3Options(endpoint_url=s3_server.endpoint_url, region="us-east-1"),
                        field="input.source")
    finally:
        clear_caches()
    assert err.value.field == "s3.access_key_id" and "no AWS credentials" in str(err.value)


def test_unreachable_endpoint(capsys, tmp_path, tiny_model_dir):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    line = _one_line(_embed(capsys, tmp_path, tiny_model_dir, "s3://videos/raw/",
                            *s3_overrides(f"http://127.0.0.1:{port}")))
    assert "`s3.endpoint_url`" in line and "cannot reach the S3 endpoint" in line


def test_missing_local_input(capsys, tmp_path, tiny_model_dir):
    line = _one_line(_embed(capsys, tmp_path, tiny_model_dir, str(tmp_path / "no-videos-here")))
    assert "`input.source`" in line and "no such file or directory" in line


def test_existing_locations_pass(s3_server, bucket, tmp_path):
    check_input(f"s3://{bucket}/raw/", s3_server.options(), field="input.source")
    check_output(f"s3://{bucket}/index.lancedb", s3_server.options(), field="output.table")  # prefix need not exist
    check_output(str(tmp_path / "new" / "index.lancedb"), None, field="output.table")
    with pytest.raises(ConfigError, match="output.table"):
        check_output("s3://no-such-bucket-here/index.lancedb", s3_server.options(), field="output.table")
