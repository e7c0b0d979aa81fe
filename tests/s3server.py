"""A real S3-compatible HTTP endpoint on loopback for tests: moto's server in a background thread.

Real HTTP (not moto's in-process mock) is the point: Ray workers and subprocesses are separate processes, and they
reach the server through ``endpoint_url`` like they would reach MinIO or AWS. Nothing here touches ``os.environ``:
the endpoint and dummy credentials travel explicitly in ``S3Options``.

    with S3Server() as srv:
        srv.create_bucket("videos")
        uris = srv.upload_dir(tmp_path, "videos", "raw/")
        table = list_videos("s3://videos/raw/", s3=srv.options())

As a pytest fixture::

    @pytest.fixture(scope="session")
    def s3_server():
        with S3Server() as srv:
            yield srv

moto keeps its state in process-global backends: every S3Server in one process sees the same buckets (use unique
bucket names per test). ``stop()`` of the last running server resets that state (``reset_on_stop``) so it does not
leak into later servers; while another S3Server is still running in the process, stopping one leaves the data alone.
"""

from __future__ import annotations

import contextlib
import os
import threading
import urllib.request
from pathlib import Path
from typing import Any

from tara_batch.io.s3 import S3Options

REGION = "us-east-1"
ACCESS_KEY = "testing"
SECRET_KEY = "testing"


def s3_overrides(endpoint_url: str) -> list[str]:
    """The `s3.*=` overrides that point a job (CLI, config) at this kind of server with its dummy credentials."""
    return [f"s3.endpoint_url={endpoint_url}", f"s3.region={REGION}", f"s3.access_key_id={ACCESS_KEY}",
            f"s3.secret_access_key={SECRET_KEY}"]


class S3Server:
    """moto's ThreadedMotoServer bound to 127.0.0.1 on a free port (context manager)."""

    _running_count = 0  # servers running in this process; they share moto's global state
    _count_lock = threading.Lock()

    def __init__(self, *, reset_on_stop: bool = True) -> None:
        from moto.server import ThreadedMotoServer

        # port=0: the OS picks a free port, so parallel test runs never collide; the bound port is read back from
        # the werkzeug server after start() (moto 5: ThreadedMotoServer.get_host_and_port()).
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._reset_on_stop = reset_on_stop
        self._running = False
        self.endpoint_url: str = ""

    # --- lifecycle ---------------------------------------------------------------------------------------------------

    def start(self) -> S3Server:
        if not self._running:
            self._server.start()
            host, port = self._server.get_host_and_port()
            self.endpoint_url = f"http://{host}:{port}"
            self._running = True
            with S3Server._count_lock:
                S3Server._running_count += 1
        return self

    def stop(self) -> None:
        if not self._running:
            return
        with S3Server._count_lock:
            S3Server._running_count -= 1
            last = S3Server._running_count == 0
        try:
            if self._reset_on_stop and last:
                self.reset()
        finally:
            self._server.stop()
            self._running = False

    def __enter__(self) -> S3Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def reset(self) -> None:
        """Drop every bucket and object (moto's documented reset endpoint)."""
        # An explicit no-proxy opener: an HTTP(S)_PROXY in the environment must not capture loopback traffic.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST", data=b"")
        with opener.open(req, timeout=10) as resp:
            resp.read()

    # --- clients -------------------------------------------------------------------------------------------------------

    def options(self, **overrides: Any) -> S3Options:
        """S3Options for this server: endpoint, region us-east-1 and dummy credentials "testing"/"testing"."""
        assert self._running, "start the server first"
        kwargs: dict[str, Any] = {
            "endpoint_url": self.endpoint_url,
            "region": REGION,
            "access_key_id": ACCESS_KEY,
            "secret_access_key": SECRET_KEY,
        }
        kwargs.update(overrides)
        return S3Options(**kwargs)

    def overrides(self) -> list[str]:
        return s3_overrides(self.endpoint_url)

    def client(self) -> Any:
        return self.options().boto3_client()

    # --- fixtures ------------------------------------------------------------------------------------------------------

    def create_bucket(self, name: str) -> str:
        """Create a bucket (moto needs names of 3+ characters); returns its name. Existing buckets are kept."""
        client = self.client()
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
        return name

    def put_bytes(self, bucket: str, key: str, data: bytes) -> str:
        self.client().put_object(Bucket=bucket, Key=key, Body=data)
        return f"s3://{bucket}/{key}"

    def upload_dir(self, local_dir: str | os.PathLike[str], bucket: str, prefix: str = "") -> list[str]:
        """Upload every file under local_dir to s3://bucket/prefix<relative path>; returns the sorted URIs.

        ``prefix`` is a folder, like list_videos' prefixes: "raw" and "raw/" both give raw/a.mp4; "" the bucket root.
        """
        root = Path(local_dir)
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        client = self.client()
        uris = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            key = prefix + path.relative_to(root).as_posix()
            client.upload_file(str(path), bucket, key)
            uris.append(f"s3://{bucket}/{key}")
        return sorted(uris)
