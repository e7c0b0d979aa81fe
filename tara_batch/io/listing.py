"""Listing a source: a local directory (recursive) or file, or an `s3://bucket/prefix`, filtered by extension and
glob, as a `schema.listing_schema()` table sorted by uri (video id, uri, size, etag).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from tara_batch.errors import ConfigError, InputError
from tara_batch.io.s3 import BUCKET_ERROR_CODES, MISSING_ERROR_CODES, S3Options, client_error_code, s3_or_default
from tara_batch.io.uris import canonical_uri, hash_id, is_s3, split_s3
from tara_batch.schema import ETAG, SIZE, URI, VIDEO_ID, listing_schema

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # boto3/pyarrow.fs are imported lazily: local-only runs and `--help` should not pay for them
    import pyarrow.fs


DEFAULT_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp")


def _normalise_extensions(extensions: Sequence[str] | None) -> tuple[str, ...] | None:
    if extensions is None:
        return None
    if isinstance(extensions, str):  # a bare ".mp4" would otherwise be iterated character by character
        extensions = [extensions]
    out = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions if e)
    if not out:
        raise ConfigError("extensions", "empty list of extensions; pass None to accept every file")
    return out


_REGEX_META = frozenset("\\.+*?()|[]{}^$#&-~")


def _escape(c: str) -> str:
    # Escapes exactly the regex meta characters, so the pattern means the same to Python's `re` (listing) and to
    # Rust's `regex` (LanceDB's regexp_like in search filters), which rejects escapes of ordinary characters.
    return "\\" + c if c in _REGEX_META else c


def _glob_regex(pattern: str) -> re.Pattern[str]:
    return re.compile(glob_pattern(pattern), re.DOTALL)


def glob_pattern(pattern: str) -> str:
    """Translate a path glob to a regular expression (unanchored source): ``*``/``?`` stay within one path segment,
    ``**`` spans segments, ``**/`` may be empty."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            c = pattern[i]
            i += 1
            if c == "*":
                out.append("[^/]*")
            elif c == "?":
                out.append("[^/]")
            elif c == "[":
                j = i
                if j < n and pattern[j] == "!":
                    j += 1
                if j < n and pattern[j] == "]":  # a leading "]" is a literal member, as in fnmatch
                    j += 1
                j = pattern.find("]", j)
                if j == -1:  # no closing bracket: a literal "["
                    out.append(_escape(c))
                else:
                    body = pattern[i:j].replace("\\", "\\\\")
                    if body.startswith("!"):
                        body = "^" + body[1:]
                    elif body.startswith("^"):
                        body = "\\" + body
                    out.append(f"[{body}]")
                    i = j + 1
            else:
                out.append(_escape(c))
    return "".join(out)


def _make_glob_matcher(glob: str | None) -> Callable[[str], bool] | None:
    """Match a path relative to the source root.

    A pattern with a ``/`` is matched against the whole relative path (``cam1/*`` = files directly in cam1,
    ``cam1/**`` = anything below it, ``**/*.mp4`` = any depth including the root). A pattern without ``/`` is
    matched against the file name at any depth, like ``find -name`` / .gitignore (``clip_*.mp4``).
    Matching is case-sensitive (S3 keys are).
    """
    if glob is None:
        return None
    pattern = glob[2:] if glob.startswith("./") else glob
    pattern = pattern.lstrip("/")
    if not pattern:
        raise ConfigError("glob", "empty glob pattern")
    rx = _glob_regex(pattern)
    if "/" in pattern:
        return lambda rel: rx.fullmatch(rel) is not None
    return lambda rel: rx.fullmatch(rel.rsplit("/", 1)[-1]) is not None


def _describe_filters(exts: tuple[str, ...] | None, glob: str | None) -> str:
    ext_txt = "any extension" if exts is None else "extensions " + ",".join(exts)
    glob_txt = "" if glob is None else f", glob {glob!r}"
    return ext_txt + glob_txt


def rows_to_table(rows: Iterable[tuple[str, int | None, str | None]]) -> pa.Table:
    uris, sizes, etags = [], [], []
    for uri, size, etag in rows:
        uris.append(uri)
        sizes.append(size)
        etags.append(etag)
    return pa.table(
        {
            VIDEO_ID: pa.array([hash_id(u) for u in uris], pa.string()),
            URI: pa.array(uris, pa.string()),
            SIZE: pa.array(sizes, pa.int64()),
            ETAG: pa.array(etags, pa.string()),
        },
        schema=listing_schema(),
    )


def _local_etag(st: os.stat_result) -> str:
    # No content hash: hashing terabytes to detect changes would cost more than re-embedding. mtime_ns changes on
    # every write and together with the size is what rsync and make rely on.
    return f"mtime:{st.st_mtime_ns}"


def _list_local(
    source: str, exts: tuple[str, ...] | None, match: Callable[[str], bool] | None
) -> tuple[list[tuple[str, int, str]], int]:
    root = Path(canonical_uri(source))
    if not root.exists():
        raise InputError(f"source {source!r} does not exist (resolved to {root})")

    def accept(rel: str) -> bool:
        if exts is not None and not rel.lower().endswith(exts):
            return False
        return match is None or match(rel)

    rows: dict[str, tuple[str, int, str]] = {}
    seen = 0
    if root.is_file():
        seen = 1
        if accept(root.name):
            st = root.stat()
            rows[str(root)] = (str(root), st.st_size, _local_etag(st))
        return list(rows.values()), seen
    if not root.is_dir():
        raise InputError(f"source {source!r} is neither a regular file nor a directory")

    def on_error(err: OSError) -> None:
        # An unreadable sub-directory should not sink a listing of millions of files; it is reported, not hidden.
        log.warning("cannot list %s: %s", err.filename, err.strerror)

    # followlinks=False: symlinked directories could form cycles; symlinked *files* are listed (resolved below).
    for dirpath, dirnames, filenames in os.walk(root, onerror=on_error):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        for name in filenames:
            seen += 1
            rel = rel_dir + name
            if not accept(rel):
                continue
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)  # follows symlinks: size/mtime of the content
            except OSError as e:  # broken symlink or deleted while listing
                log.warning("skipping %s: %s", full, e)
                continue
            if not os.path.isfile(full):
                continue
            uri = os.path.realpath(full)  # same canonical form as canonical_uri()
            rows.setdefault(uri, (uri, st.st_size, _local_etag(st)))
    return list(rows.values()), seen


def _list_s3(
    source: str,
    opts: S3Options,
    exts: tuple[str, ...] | None,
    match: Callable[[str], bool] | None,
    limit: int | None,
) -> tuple[list[tuple[str, int, str]], int]:
    import botocore.exceptions

    bucket, prefix = split_s3(source)
    client = opts.boto3_client()
    # A prefix names a "folder": s3://b/videos lists videos/..., not videos2/... . Use a glob for finer selection.
    root = prefix if (not prefix or prefix.endswith("/")) else prefix + "/"
    rows: list[tuple[str, int, str]] = []
    seen = 0

    def accept(rel: str) -> bool:
        if exts is not None and not rel.lower().endswith(exts):
            return False
        return match is None or match(rel)

    try:
        paginator = client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=root):
            for obj in page.get("Contents", ()):
                key = obj["Key"]
                if key.endswith("/"):  # zero-byte "folder" markers made by consoles and some tools
                    continue
                seen += 1
                if accept(key[len(root) :]):
                    rows.append((f"s3://{bucket}/{key}", int(obj["Size"]), obj["ETag"].strip('"')))
                    # S3 lists keys in UTF-8 byte order, which is also Python's str order for these URIs, so the
                    # first `limit` matches are exactly the first `limit` of the sorted result: stop paging early.
                    if limit is not None and len(rows) >= limit:
                        return rows, seen
        if seen == 0 and prefix and not prefix.endswith("/"):
            # Not a folder: maybe the source names a single object.
            try:
                head = client.head_object(Bucket=bucket, Key=prefix)
            except botocore.exceptions.ClientError as e:
                if client_error_code(e) not in MISSING_ERROR_CODES:
                    raise
            else:
                seen = 1
                if accept(prefix.rsplit("/", 1)[-1]):
                    rows.append((f"s3://{bucket}/{prefix}", int(head["ContentLength"]), head["ETag"].strip('"')))
    except botocore.exceptions.ClientError as e:
        code = client_error_code(e)
        if code in BUCKET_ERROR_CODES:
            raise InputError(f"cannot list {source} ({code}): {e}") from e
        raise
    return rows, seen


def list_videos(
    source: str,
    *,
    s3: S3Options | None = None,
    extensions: Sequence[str] | None = DEFAULT_EXTENSIONS,
    glob: str | None = None,
    limit: int | None = None,
) -> pa.Table:
    """List the videos under a source, as a ``listing_schema()`` table sorted by uri.

    source: a local directory (recursive), a single local file, or ``s3://bucket/prefix`` (prefix may be empty; a
    prefix is a folder: ``s3://b/v`` lists ``v/...`` and, if there is none, the single object ``v``).
    Filters: extension (case-insensitive; None = all) AND optional glob on the path relative to the source root
    (see ``_make_glob_matcher``: ``*`` stays within a folder, ``**`` crosses folders, no ``/`` = file name).
    etag: the S3 ETag without quotes, or ``mtime:<st_mtime_ns>`` for local files.
    limit: the first ``limit`` rows of the sorted listing (deterministic).
    Raises InputError if the source does not exist, the bucket is missing/forbidden, or nothing matched.
    """
    exts = _normalise_extensions(extensions)
    match = _make_glob_matcher(glob)
    if limit is not None and limit < 1:
        raise ConfigError("limit", f"must be >= 1 (or None for no limit), got {limit}")
    t0 = time.monotonic()
    if is_s3(source):
        rows, seen = _list_s3(source, s3_or_default(s3), exts, match, limit)
    else:
        rows, seen = _list_local(source, exts, match)
    if not rows:
        what = "no files" if seen == 0 else f"none of the {seen} files"
        raise InputError(f"{what} under {source} matched ({_describe_filters(exts, glob)})")
    rows.sort(key=lambda r: r[0])
    if limit is not None:
        rows = rows[:limit]
    log.info(
        "listed %s: %d of %d files matched (%s) in %.2fs",
        source,
        len(rows),
        seen,
        _describe_filters(exts, glob),
        time.monotonic() - t0,
    )
    return rows_to_table(rows)


def stat_object(uri: str, opts: S3Options) -> tuple[int, str] | None:
    """(size, etag) of an object, or None if it does not exist."""
    if is_s3(uri):
        import botocore.exceptions

        bucket, key = split_s3(uri)
        try:
            head = opts.boto3_client().head_object(Bucket=bucket, Key=key)
        except botocore.exceptions.ClientError as e:
            if client_error_code(e) in MISSING_ERROR_CODES:
                return None
            raise
        return int(head["ContentLength"]), head["ETag"].strip('"')
    try:
        st = os.stat(uri)
    except FileNotFoundError:
        return None
    if not os.path.isfile(uri):
        return None
    return st.st_size, _local_etag(st)
