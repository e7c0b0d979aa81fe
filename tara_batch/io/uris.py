"""URIs and ids: the one spelling of a source (`canonical_uri`) and the video id derived from it.

`s3://bucket/key` or an absolute, symlink-resolved local path; `video_id_for(uri)` = sha256 of that spelling, first
32 hex chars, so the same object gets the same id on every run, machine and Ray worker.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from tara_batch.errors import InputError

if TYPE_CHECKING:  # boto3/pyarrow.fs are imported lazily: local-only runs and `--help` should not pay for them
    pass


def is_s3(uri: str) -> bool:
    return uri[:5].lower() == "s3://"


def split_s3(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ("bucket", "key"). The key is returned exactly (no slash normalisation: keys are exact)."""
    if not is_s3(uri):
        raise InputError(f"not an s3:// URI: {uri!r}")
    rest = uri[5:]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise InputError(f"S3 URI without a bucket name: {uri!r}")
    return bucket, key


def canonical_uri(path_or_uri: str) -> str:
    """The one spelling of a source used for ids and joins.

    ``s3://bucket/key`` is kept as is (only the scheme is lower-cased); ``file://`` URIs are decoded to paths; local
    paths become absolute and symlink-resolved (so two spellings of one file get one id).
    """
    if is_s3(path_or_uri):
        return "s3://" + path_or_uri[5:]
    path = path_or_uri
    if path[:7].lower() == "file://":
        parsed = urlparse(path)
        if parsed.netloc not in ("", "localhost"):
            raise InputError(f"file:// URI with a remote host is not supported: {path_or_uri!r}")
        path = unquote(parsed.path)
    elif re.match(r"^[A-Za-z][A-Za-z0-9+.-]+://", path):
        raise InputError(f"unsupported URI scheme in {path_or_uri!r}: use s3:// or a local path")
    if not path:
        raise InputError("empty path")
    return str(Path(path).expanduser().resolve())


def hash_id(canonical: str) -> str:
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def video_id_for(uri: str) -> str:
    """sha256 of the canonical URI, hex, first 32 chars (128 bits): stable across runs, machines and Ray workers."""
    return hash_id(canonical_uri(uri))
