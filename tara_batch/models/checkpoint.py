"""Locate a checkpoint (local directory or s3:// prefix), fetch it once per node, and fingerprint its content.

A remote checkpoint is downloaded once per node into a cache directory keyed by its URI and guarded by a file lock,
so N actors on one node share one copy. The content hash (sha256 over file names and bytes, cached by
(path, size, mtime)) identifies the weights; together with the profile it forms the model id of every row.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path

from tara_batch.errors import ConfigError

log = logging.getLogger(__name__)

# Files that carry no weights or settings that change embeddings; skipped by the hash so that, e.g., a README edit
# does not create a new model version.
_HASH_SKIP = {"README.md", ".gitattributes", "tara_batch_convert.json", "tara_batch_tiny.json"}
_REQUIRED = ("config.json",)


def cache_root() -> Path:
    return Path(os.environ.get("TARA_BATCH_CACHE", Path.home() / ".cache" / "tara-batch"))


@contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def resolve_checkpoint(uri: str, s3=None) -> Path:
    """Return a local directory holding the checkpoint at `uri`, downloading an s3:// prefix once per node."""
    from tara_batch.io.s3 import S3Options
    from tara_batch.io.uris import is_s3, split_s3

    if not is_s3(uri):
        path = Path(uri).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError("model.path", f"checkpoint directory {path} does not exist; pass a local directory or an s3:// prefix")
        _check_layout(path)
        return path
    bucket, prefix = split_s3(uri.rstrip("/") + "/")
    target = cache_root() / "models" / hashlib.sha256(uri.encode()).hexdigest()[:24]
    done = target / ".complete"
    with _file_lock(target.with_suffix(".lock")):
        if not done.exists():
            client = (s3 or S3Options()).boto3_client()
            paginator = client.get_paginator("list_objects_v2")
            keys = [o["Key"] for page in paginator.paginate(Bucket=bucket, Prefix=prefix) for o in page.get("Contents", [])]
            if not keys:
                raise ConfigError("model.path", f"no objects under {uri}; check the prefix and credentials")
            log.info("fetching checkpoint %s (%d files) to %s", uri, len(keys), target)
            for key in keys:
                dest = target / key[len(prefix):]
                dest.parent.mkdir(parents=True, exist_ok=True)
                client.download_file(bucket, key, str(dest) + ".part")
                os.replace(str(dest) + ".part", dest)
            done.write_text(uri + "\n")
    _check_layout(target)
    return target


def _check_layout(path: Path) -> None:
    for name in _REQUIRED:
        if not (path / name).exists():
            raise ConfigError("model.path", f"{path} has no {name}: not a transformers checkpoint directory")
    check_config(json.loads((path / "config.json").read_text()), str(path))


def check_config(config: dict, where: str) -> None:
    """Refuse layouts we cannot load, saying what to do about them."""
    model_type = config.get("model_type")
    if model_type != "qwen2_vl":
        raise ConfigError(
            "model.path",
            f"{where} is a {model_type!r} checkpoint; tara-batch loads the Qwen2-VL layout (model_type 'qwen2_vl'). "
            "A Tarsier2/TARA checkpoint (model_type 'llava') must be converted first: "
            "`tara-batch convert SRC DST`, then pass DST.",
        )


def content_hash(path: str | Path) -> str:
    """sha256 over (relative name, bytes) of every file in the checkpoint; cached by (path, size, mtime)."""
    root = Path(path)
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name not in _HASH_SKIP and not p.name.startswith("."))
    stamp = hashlib.sha256(
        json.dumps([(str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns) for p in files]).encode()
    ).hexdigest()
    cache_file = cache_root() / "hashes" / f"{stamp}.txt"
    if cache_file.exists():
        return cache_file.read_text().strip()
    digest = hashlib.sha256()
    for p in files:
        digest.update(str(p.relative_to(root)).encode() + b"\0")
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
    result = digest.hexdigest()
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_text(result + "\n")
    except OSError:  # a read-only home must not stop a job; the hash is just recomputed next time
        log.debug("could not cache checkpoint hash in %s", cache_file)
    return result


def model_id(checkpoint_hash: str, profile_settings_json: str) -> str:
    """The model version of a row: weights hash + profile settings, short enough to read in a table."""
    return hashlib.sha256((checkpoint_hash + "\n" + profile_settings_json).encode()).hexdigest()[:16]
