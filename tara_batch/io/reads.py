"""Whole-object reads (local file or s3://) into memory, with retries that botocore does not do.

botocore retries a request, not the streaming of its body after the headers arrived: a body cut half-way is resumed
here with a ranged GET tied to the ETag (`IfMatch`), so two versions of an object are never stitched together.
"""

from __future__ import annotations

import http.client
import logging
import os
import random
import time
from typing import TYPE_CHECKING

from tara_batch.errors import ConfigError
from tara_batch.io.s3 import MISSING_ERROR_CODES, S3Options, client_error_code, s3_or_default
from tara_batch.io.uris import canonical_uri, is_s3, split_s3

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # boto3/pyarrow.fs are imported lazily: local-only runs and `--help` should not pay for them
    pass


# Body reads that fail half-way (connection reset, truncated body) are retried by us, because botocore only retries
# the request itself, not the streaming of the body after the response headers arrived.
BODY_READ_ATTEMPTS = 5

BODY_BACKOFF_BASE_S = 0.2

BODY_BACKOFF_CAP_S = 5.0

_READ_CHUNK = 8 * 1024 * 1024


class ObjectTooLarge(Exception):
    """The object is larger than the caller's ``max_bytes``; raised before its body is read."""

    def __init__(self, uri: str, size: int, max_bytes: int) -> None:
        self.uri = uri
        self.size = size
        self.max_bytes = max_bytes
        super().__init__(f"{uri} is {size} bytes, more than the limit of {max_bytes} bytes")

    def __reduce__(self) -> tuple[type[ObjectTooLarge], tuple[str, int, int]]:
        # Exceptions pickle as cls(*self.args); ours takes three arguments, and Ray pickles task exceptions.
        return (ObjectTooLarge, (self.uri, self.size, self.max_bytes))


def _transient_body_errors() -> tuple[type[BaseException], ...]:
    import botocore.exceptions as bce
    import urllib3.exceptions

    return (
        bce.ResponseStreamingError,
        bce.IncompleteReadError,
        bce.ReadTimeoutError,
        bce.ConnectionClosedError,
        urllib3.exceptions.ProtocolError,
        urllib3.exceptions.ReadTimeoutError,
        http.client.IncompleteRead,
        ConnectionError,  # ConnectionResetError, BrokenPipeError, ...
    )


def _backoff(attempt: int) -> float:
    # Full jitter: many workers retrying the same throttled prefix must not retry in lock-step.
    return random.uniform(0, min(BODY_BACKOFF_CAP_S, BODY_BACKOFF_BASE_S * (2**attempt)))


def _read_local(uri: str, max_bytes: int | None) -> bytes:
    path = canonical_uri(uri)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if max_bytes is not None and size > max_bytes:
            raise ObjectTooLarge(path, size, max_bytes)
        if max_bytes is None:
            return f.read()
        data = f.read(max_bytes + 1)  # the file may have grown since fstat
        if len(data) > max_bytes:
            raise ObjectTooLarge(path, len(data), max_bytes)
        return data


def _read_s3(uri: str, opts: S3Options, max_bytes: int | None) -> bytes:
    import botocore.exceptions

    bucket, key = split_s3(uri)
    client = opts.boto3_client()
    transient = _transient_body_errors()
    chunks: list[bytes] = []
    received = 0
    total: int | None = None
    etag: str | None = None
    last_error: BaseException | None = None
    for attempt in range(BODY_READ_ATTEMPTS):
        kwargs: dict[str, str] = {}
        if received:
            # Resume where the broken stream stopped; IfMatch makes S3 refuse (412) if the object changed meanwhile,
            # so we never stitch two versions together.
            kwargs = {"Range": f"bytes={received}-", "IfMatch": etag or "*"}
        try:
            resp = client.get_object(Bucket=bucket, Key=key, **kwargs)
        except botocore.exceptions.ClientError as e:
            code = client_error_code(e)
            if code in MISSING_ERROR_CODES:
                raise FileNotFoundError(f"no such object: {uri}") from e
            if code in ("PreconditionFailed", "412") and received:
                log.warning("%s changed while being read; restarting from the beginning", uri)
                chunks, received, total, etag = [], 0, None, None
                continue
            raise
        body = resp["Body"]
        try:
            status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if received and status != 206:  # the server ignored Range: it sent the whole object again
                chunks, received = [], 0
            if total is None:
                total = int(resp["ContentLength"])
                etag = resp.get("ETag")
                if max_bytes is not None and total > max_bytes:
                    raise ObjectTooLarge(uri, total, max_bytes)  # before reading the body
            for chunk in body.iter_chunks(_READ_CHUNK):
                chunks.append(chunk)
                received += len(chunk)
            if received != total:
                raise http.client.IncompleteRead(b"", total - received)
            if attempt:
                log.info("%s: read completed after %d body retries", uri, attempt)
            return b"".join(chunks)
        except transient as e:
            last_error = e
            delay = _backoff(attempt)
            log.warning(
                "%s: body read failed after %d of %s bytes (%s: %s); retry %d/%d in %.2fs",
                uri,
                received,
                total,
                type(e).__name__,
                e,
                attempt + 1,
                BODY_READ_ATTEMPTS - 1,
                delay,
            )
            if attempt + 1 < BODY_READ_ATTEMPTS:
                time.sleep(delay)
        finally:
            body.close()
    assert last_error is not None
    raise last_error


def read_bytes(uri: str, *, s3: S3Options | None = None, max_bytes: int | None = None) -> bytes:
    """The whole object (local file or s3://) in memory.

    max_bytes: raise ObjectTooLarge (before downloading) if the object is larger.
    Missing objects raise FileNotFoundError for both local and S3 URIs. S3 requests are retried by botocore
    (throttling, 5xx, connection errors); a body stream that breaks half-way is resumed with a ranged GET, up to
    BODY_READ_ATTEMPTS times with exponential backoff and jitter.
    """
    if max_bytes is not None and max_bytes < 0:
        raise ConfigError("max_bytes", f"must be >= 0, got {max_bytes}")
    if is_s3(uri):
        return _read_s3(uri, s3_or_default(s3), max_bytes)
    return _read_local(uri, max_bytes)
