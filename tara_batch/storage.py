"""Object storage: S3 settings shared by boto3, pyarrow and LanceDB; listing sources; manifests; whole-object reads.

Everything here works on plain URIs (``s3://bucket/key`` or an absolute local path) so that a listing made on the
driver can be shipped to Ray workers as data and resolved there. No Ray imports: this module is used by the CLI, the
driver and the workers alike.

Credentials are never logged. ``S3Options`` masks them in its repr, and log lines only ever mention *where*
credentials came from (botocore's ``method``), not their values.
"""

from __future__ import annotations

import csv
import hashlib
import http.client
import io
import json
import logging
import os
import posixpath
import random
import re
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlparse

import pyarrow as pa

from tara_batch.errors import ConfigError, InputError
from tara_batch.schema import ETAG, SIZE, URI, VIDEO_ID, listing_schema

if TYPE_CHECKING:  # boto3/pyarrow.fs are imported lazily: local-only runs and `--help` should not pay for them
    import pyarrow.fs

log = logging.getLogger(__name__)

DEFAULT_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".flv", ".wmv", ".3gp")

# Body reads that fail half-way (connection reset, truncated body) are retried by us, because botocore only retries
# the request itself, not the streaming of the body after the response headers arrived.
BODY_READ_ATTEMPTS = 5
BODY_BACKOFF_BASE_S = 0.2
BODY_BACKOFF_CAP_S = 5.0
_READ_CHUNK = 8 * 1024 * 1024

# Credential sources that LanceDB (object_store) and pyarrow (AWS C++ SDK) resolve *and refresh* on their own. For
# these we do not export a snapshot of the keys: a snapshot of instance-role credentials would expire mid-job.
_SELF_REFRESHING_METHODS = frozenset({"iam-role", "container-role", "assume-role-with-web-identity"})

_SECRET_FIELDS = frozenset({"access_key_id", "secret_access_key", "session_token"})
_RETRY_MODES = ("standard", "adaptive", "legacy")


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


# --------------------------------------------------------------------------------------------------------------------
# S3 settings
# --------------------------------------------------------------------------------------------------------------------

# boto3 sessions and clients are expensive to build (they parse ~/.aws files and the service model), so one per
# process and per options. The pid is part of the key so a forked child never reuses its parent's connection pool.
_CACHE_LOCK = threading.Lock()
_SESSIONS: dict[tuple[int, S3Options], Any] = {}
_CLIENTS: dict[tuple[int, S3Options], Any] = {}


@dataclass(frozen=True)
class S3Options:
    """How to reach S3 (or an S3-compatible store). All fields optional: ``S3Options()`` means "boto3 defaults".

    Unset fields fall back to boto3's standard resolution (env vars incl. ``AWS_ENDPOINT_URL``/``AWS_PROFILE``,
    ``~/.aws/credentials``, ``~/.aws/config``, container/instance metadata). The same effective settings are
    handed to pyarrow and LanceDB so that all three talk to the same endpoint with the same credentials.
    Frozen and picklable: it travels to Ray workers as part of task arguments.
    """

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None  # AWS config profile name
    access_key_id: str | None = None  # explicit creds; else the standard chain (env, ~/.aws, config, IMDS)
    secret_access_key: str | None = None
    session_token: str | None = None
    max_attempts: int = 8  # total attempts (first try included) on throttling / 5xx / connection resets
    retry_mode: str = "standard"  # botocore retry mode: "standard" or "adaptive" (client-side rate limiting)
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    max_pool_connections: int = 32  # >= read_manifest's HEAD thread pool, so threads never wait for a connection

    def __post_init__(self) -> None:
        if self.endpoint_url is not None and not re.match(r"^https?://[^/]+", self.endpoint_url):
            raise ConfigError("s3.endpoint_url", f"must look like http(s)://host[:port], got {self.endpoint_url!r}")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ConfigError("s3.access_key_id", "set both access_key_id and secret_access_key, or neither")
        if self.session_token is not None and self.access_key_id is None:
            raise ConfigError("s3.session_token", "a session token needs access_key_id and secret_access_key too")
        if self.max_attempts < 1:
            raise ConfigError("s3.max_attempts", f"must be >= 1, got {self.max_attempts}")
        if self.retry_mode not in _RETRY_MODES:
            raise ConfigError("s3.retry_mode", f"must be one of {_RETRY_MODES}, got {self.retry_mode!r}")
        if self.connect_timeout <= 0 or self.read_timeout <= 0:
            raise ConfigError("s3.read_timeout", "timeouts must be positive")
        if self.max_pool_connections < 1:
            raise ConfigError("s3.max_pool_connections", f"must be >= 1, got {self.max_pool_connections}")

    def __repr__(self) -> str:
        # Secrets are masked so options can be logged, printed in errors and shown in Ray's dashboards safely.
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRET_FIELDS and value is not None:
                parts.append(f"{f.name}='***'")
            else:
                parts.append(f"{f.name}={value!r}")
        return f"S3Options({', '.join(parts)})"

    __str__ = __repr__

    # --- boto3 ---------------------------------------------------------------------------------------------------

    def boto3_session(self) -> Any:
        """The boto3 Session for these options (cached per process)."""
        key = (os.getpid(), self)
        session = _SESSIONS.get(key)
        if session is not None:
            return session
        import boto3
        import botocore.exceptions

        with _CACHE_LOCK:  # boto3.Session() is not thread-safe to construct; building twice would just waste time
            session = _SESSIONS.get(key)
            if session is None:
                try:
                    session = boto3.session.Session(
                        profile_name=self.profile,
                        aws_access_key_id=self.access_key_id,
                        aws_secret_access_key=self.secret_access_key,
                        aws_session_token=self.session_token,
                        region_name=self.region,
                    )
                except botocore.exceptions.ProfileNotFound as e:
                    raise ConfigError("s3.profile", f"AWS profile {self.profile!r} not found: {e}") from e
                _SESSIONS[key] = session
        return session

    def boto3_client(self) -> Any:
        """A low-level boto3 S3 client (cached per process and options; boto3 clients are thread-safe)."""
        key = (os.getpid(), self)
        client = _CLIENTS.get(key)
        if client is not None:
            return client
        from botocore.config import Config

        session = self.boto3_session()
        with _CACHE_LOCK:
            client = _CLIENTS.get(key)
            if client is None:
                config = Config(
                    # total_max_attempts counts the first try, like pyarrow's max_attempts (botocore's own
                    # "max_attempts" would count retries only, an off-by-one between our two clients).
                    retries={"total_max_attempts": self.max_attempts, "mode": self.retry_mode},
                    connect_timeout=self.connect_timeout,
                    read_timeout=self.read_timeout,
                    max_pool_connections=self.max_pool_connections,
                    tcp_keepalive=True,
                )
                # endpoint_url=None lets botocore apply AWS_ENDPOINT_URL(_S3) and the config file's endpoint_url.
                client = session.client("s3", endpoint_url=self.endpoint_url, config=config)
                _CLIENTS[key] = client
                log.debug("created S3 client for %r (endpoint %s)", self, client.meta.endpoint_url)
        return client

    # --- effective settings for the non-boto3 consumers ------------------------------------------------------------

    def effective_endpoint_url(self) -> str | None:
        """The custom endpoint in force: explicit, else what boto3 would pick from env/config; None for AWS itself."""
        if self.endpoint_url:
            return self.endpoint_url
        try:
            # Same provider botocore uses for AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL / config-file endpoint_url.
            from botocore.configprovider import EndpointConfigProvider

            bc = self.boto3_session()._session
            if bc.get_config_variable("ignore_configured_endpoint_urls"):
                return None
            return EndpointConfigProvider(
                full_config=bc.full_config, scoped_config=bc.get_scoped_config(), client_name="s3"
            ).provide()
        except ConfigError:
            raise
        except Exception:  # private-ish botocore API: fall back to the documented env vars
            return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None

    def effective_region(self) -> str | None:
        region = self.region or self.boto3_session().region_name
        if region is None and self.effective_endpoint_url():
            # S3-compatible stores ignore the region but SigV4 needs one, and pyarrow/LanceDB would otherwise try
            # to discover it (pyarrow via a HEAD to AWS). us-east-1 is what boto3 signs with by default.
            region = "us-east-1"
        return region

    def exported_credentials(self) -> tuple[str, str, str | None] | None:
        """(access key, secret, token) to hand to pyarrow/LanceDB, or None to let them use their own chain.

        Explicit keys always; otherwise boto3's resolved credentials, so a ``profile`` (or SSO, or a credentials
        file) is honoured by LanceDB and pyarrow too, which do not read all of those sources themselves. Instance /
        container / web-identity roles are left to them: they refresh those, a snapshot would expire.
        """
        if self.access_key_id is not None and self.secret_access_key is not None:
            return self.access_key_id, self.secret_access_key, self.session_token
        creds = self.boto3_session().get_credentials()
        if creds is None:
            log.debug("no AWS credentials found by boto3; LanceDB/pyarrow will use their own default chain")
            return None
        method = getattr(creds, "method", "unknown")
        if method in _SELF_REFRESHING_METHODS:
            log.debug("AWS credentials from %s: left to LanceDB/pyarrow to resolve and refresh", method)
            return None
        from botocore.credentials import RefreshableCredentials

        if isinstance(creds, RefreshableCredentials):
            log.warning(
                "AWS credentials from %s are temporary; LanceDB/pyarrow get a snapshot that is not refreshed, "
                "so a job that outlives them will fail with expired-token errors",
                method,
            )
        frozen = creds.get_frozen_credentials()
        return frozen.access_key, frozen.secret_key, frozen.token

    def lancedb_storage_options(self) -> dict[str, str]:
        """``storage_options`` for ``lancedb.connect("s3://...", storage_options=...)`` matching the boto3 client.

        Keys are object_store / Lance names: ``aws_endpoint``, ``allow_http`` (required for http:// endpoints),
        ``aws_region``, ``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token``.
        The result contains secrets: pass it on, never log it.
        """
        opts: dict[str, str] = {}
        endpoint = self.effective_endpoint_url()
        if endpoint:
            opts["aws_endpoint"] = endpoint
            if endpoint.lower().startswith("http://"):
                opts["allow_http"] = "true"
        region = self.effective_region()
        if region:
            opts["aws_region"] = region
        creds = self.exported_credentials()
        if creds is not None:
            opts["aws_access_key_id"], opts["aws_secret_access_key"] = creds[0], creds[1]
            if creds[2]:
                opts["aws_session_token"] = creds[2]
        return opts

    def pyarrow_filesystem(self) -> pyarrow.fs.S3FileSystem:
        """A ``pyarrow.fs.S3FileSystem`` with the same endpoint, region, credentials and retry budget."""
        from pyarrow import fs as pafs

        kwargs: dict[str, Any] = {
            "connect_timeout": self.connect_timeout,
            "request_timeout": self.read_timeout,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=self.max_attempts),
        }
        endpoint = self.effective_endpoint_url()
        if endpoint:
            parsed = urlparse(endpoint)
            # pyarrow wants "host:port" plus a separate scheme; a path part (rare, e.g. behind a gateway) is kept.
            kwargs["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
            kwargs["scheme"] = parsed.scheme
        region = self.effective_region()
        if region:
            kwargs["region"] = region
        creds = self.exported_credentials()
        if creds is not None:
            kwargs["access_key"], kwargs["secret_key"] = creds[0], creds[1]
            if creds[2]:
                kwargs["session_token"] = creds[2]
        return pafs.S3FileSystem(**kwargs)


def clear_caches() -> None:
    """Forget cached boto3 sessions/clients, e.g. after changing AWS_* environment variables in tests."""
    with _CACHE_LOCK:
        _SESSIONS.clear()
        _CLIENTS.clear()


def _opts(s3: S3Options | None) -> S3Options:
    return s3 if s3 is not None else S3Options()


# --------------------------------------------------------------------------------------------------------------------
# URIs and ids
# --------------------------------------------------------------------------------------------------------------------


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


def _hash_id(canonical: str) -> str:
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]


def video_id_for(uri: str) -> str:
    """sha256 of the canonical URI, hex, first 32 chars (128 bits): stable across runs, machines and Ray workers."""
    return _hash_id(canonical_uri(uri))


# --------------------------------------------------------------------------------------------------------------------
# Filters
# --------------------------------------------------------------------------------------------------------------------


def _normalise_extensions(extensions: Sequence[str] | None) -> tuple[str, ...] | None:
    if extensions is None:
        return None
    if isinstance(extensions, str):  # a bare ".mp4" would otherwise be iterated character by character
        extensions = [extensions]
    out = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions if e)
    if not out:
        raise ConfigError("extensions", "empty list of extensions; pass None to accept every file")
    return out


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a path glob: ``*``/``?`` stay within one path segment, ``**`` spans segments, ``**/`` may be empty."""
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
                    out.append(re.escape(c))
                else:
                    body = pattern[i:j].replace("\\", "\\\\")
                    if body.startswith("!"):
                        body = "^" + body[1:]
                    elif body.startswith("^"):
                        body = "\\" + body
                    out.append(f"[{body}]")
                    i = j + 1
            else:
                out.append(re.escape(c))
    return re.compile("".join(out), re.DOTALL)


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


# --------------------------------------------------------------------------------------------------------------------
# Listing
# --------------------------------------------------------------------------------------------------------------------


def _rows_to_table(rows: Iterable[tuple[str, int | None, str | None]]) -> pa.Table:
    uris, sizes, etags = [], [], []
    for uri, size, etag in rows:
        uris.append(uri)
        sizes.append(size)
        etags.append(etag)
    return pa.table(
        {
            VIDEO_ID: pa.array([_hash_id(u) for u in uris], pa.string()),
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


def _client_error_code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
_BUCKET_CODES = frozenset({"NoSuchBucket", "InvalidBucketName", "AccessDenied", "AllAccessDisabled", "403"})


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
                if _client_error_code(e) not in _MISSING_CODES:
                    raise
            else:
                seen = 1
                if accept(prefix.rsplit("/", 1)[-1]):
                    rows.append((f"s3://{bucket}/{prefix}", int(head["ContentLength"]), head["ETag"].strip('"')))
    except botocore.exceptions.ClientError as e:
        code = _client_error_code(e)
        if code in _BUCKET_CODES:
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
        rows, seen = _list_s3(source, _opts(s3), exts, match, limit)
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
    return _rows_to_table(rows)


# --------------------------------------------------------------------------------------------------------------------
# Manifests
# --------------------------------------------------------------------------------------------------------------------

_MANIFEST_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
    ".txt": "txt",
}


def _looks_like_path(s: str) -> bool:
    return "/" in s or "\\" in s or bool(re.search(r"\.[A-Za-z0-9]{1,5}$", s))


def _parse_manifest(data: bytes, fmt: str, path: str) -> dict[str, list[Any]]:
    """Manifest bytes -> columns as Python lists (manifests are small next to the videos they list)."""
    try:
        if fmt in ("csv", "tsv"):
            from pyarrow import csv as pacsv

            delimiter = "\t" if fmt == "tsv" else ","
            parse = pacsv.ParseOptions(delimiter=delimiter)
            # Every column as a string: type inference would turn a file named "007" into the integer 7 and
            # all-digit etags into numbers. Sizes are converted by us, blanks included.
            first_line = data.split(b"\n", 1)[0].decode("utf-8-sig").rstrip("\r")
            names = next(csv.reader([first_line], delimiter=delimiter), [])
            if len(names) == 1 and _looks_like_path(names[0]):
                # A header-less single-column file: its first line is a URI, not a column name.
                read = pacsv.ReadOptions(column_names=[URI])
                names = [URI]
            else:
                read = pacsv.ReadOptions()
            convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names})
            table = pacsv.read_csv(io.BytesIO(data), parse_options=parse, read_options=read, convert_options=convert)
            return table.to_pydict()
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(io.BytesIO(data)).to_pydict()
        if fmt == "txt":
            lines = [ln.strip() for ln in data.decode("utf-8").splitlines()]
            return {URI: [ln for ln in lines if ln and not ln.startswith("#")]}
        # JSON: a JSON array, or JSON Lines; records may be objects or bare strings.
        text = data.decode("utf-8")
        stripped = text.lstrip()
        if stripped.startswith("["):
            records = json.loads(stripped)
        else:
            records = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
        cols: dict[str, list[Any]] = {}
        for i, rec in enumerate(records):
            if isinstance(rec, str):
                rec = {URI: rec}
            if not isinstance(rec, dict):
                raise InputError(f"manifest {path}: record {i} is {type(rec).__name__}, expected an object or string")
            for k in rec.keys() - cols.keys():
                cols[k] = [None] * i
            for k, col in cols.items():
                col.append(rec.get(k))
        return cols
    except InputError:
        raise
    except (pa.ArrowInvalid, ValueError, UnicodeDecodeError) as e:
        raise InputError(f"cannot parse manifest {path} as {fmt}: {e}") from e


def _resolve_entry(entry: str, base: str) -> str:
    """A manifest entry -> canonical URI. Relative entries are relative to the manifest's own folder."""
    if is_s3(entry) or entry[:7].lower() == "file://" or os.path.isabs(entry) or entry.startswith("~"):
        return canonical_uri(entry)
    if is_s3(base):
        rel = entry[2:] if entry.startswith("./") else entry
        if rel.startswith("../") or "/../" in rel:
            raise InputError(f"relative entry {entry!r} in an S3 manifest may not climb with '..'")
        return base + rel
    return canonical_uri(os.path.join(base, entry))


def _stat(uri: str, opts: S3Options) -> tuple[int, str] | None:
    """(size, etag) of an object, or None if it does not exist."""
    if is_s3(uri):
        import botocore.exceptions

        bucket, key = split_s3(uri)
        try:
            head = opts.boto3_client().head_object(Bucket=bucket, Key=key)
        except botocore.exceptions.ClientError as e:
            if _client_error_code(e) in _MISSING_CODES:
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


def read_manifest(
    path: str,
    *,
    s3: S3Options | None = None,
    column: str = "uri",
    on_missing: Literal["error", "skip", "keep"] = "error",
    stat: bool = True,
    max_workers: int = 16,
) -> pa.Table:
    """Read a manifest of video URIs into a ``listing_schema()`` table, in manifest order.

    Format by extension: .csv, .tsv, .parquet/.pq, .jsonl/.ndjson/.json (JSON Lines or a JSON array; records are
    objects or bare strings), .txt (one URI per line, ``#`` comments). The manifest itself may be local or s3://.
    The URI column is ``column``, else ``path`` (when ``column`` is the default), else the only column.
    Relative entries resolve against the manifest's folder (local or S3). Optional ``size``/``etag`` columns are
    used when present; missing values are filled by a stat/HEAD in a small thread pool (``stat=False`` skips that,
    leaving them null). Duplicate URIs are dropped (first kept, logged).
    on_missing: listed objects that do not exist -> "error" (InputError naming them), "skip", or "keep" with null
    size/etag (the fetch stage then records them as failures).
    """
    if on_missing not in ("error", "skip", "keep"):
        raise ConfigError("on_missing", f"must be 'error', 'skip' or 'keep', got {on_missing!r}")
    opts = _opts(s3)
    lower = path.lower()
    fmt = next((f for ext, f in _MANIFEST_FORMATS.items() if lower.endswith(ext)), None)
    if fmt is None:
        raise InputError(f"manifest {path}: unknown format; use one of {', '.join(_MANIFEST_FORMATS)}")

    if is_s3(path):
        bucket, key = split_s3(path)
        import botocore.exceptions

        try:
            data = read_bytes(path, s3=opts)
        except FileNotFoundError as e:
            raise InputError(f"manifest {path} does not exist") from e
        except botocore.exceptions.ClientError as e:
            if _client_error_code(e) in _BUCKET_CODES:
                raise InputError(f"cannot read manifest {path} ({_client_error_code(e)}): {e}") from e
            raise
        base = f"s3://{bucket}/{posixpath.dirname(key)}"
        base = base if base.endswith("/") else base + "/"
    else:
        local = Path(canonical_uri(path))
        if not local.is_file():
            raise InputError(f"manifest {path} does not exist or is not a file (resolved to {local})")
        data = local.read_bytes()
        base = str(local.parent)

    cols = _parse_manifest(data, fmt, path)
    names = list(cols)
    if column in cols:
        col = column
    elif column == "uri" and "path" in cols:
        col = "path"
    elif len(names) == 1:
        col = names[0]
    else:
        raise InputError(f"manifest {path} has no column {column!r} (columns found: {names}); pass column=...")

    entries = cols[col]
    sizes_in = cols.get(SIZE) if col != SIZE else None
    etags_in = cols.get(ETAG) if col != ETAG else None
    uris: list[str] = []
    sizes: list[int | None] = []
    etags: list[str | None] = []
    seen: set[str] = set()
    blanks = dups = 0
    for i, entry in enumerate(entries):
        if entry is None or not str(entry).strip():
            blanks += 1
            continue
        uri = _resolve_entry(str(entry).strip(), base)
        if uri in seen:
            dups += 1
            continue
        seen.add(uri)
        uris.append(uri)
        size = sizes_in[i] if sizes_in is not None else None
        try:
            sizes.append(int(size) if size is not None and str(size).strip() != "" else None)
        except ValueError as e:
            raise InputError(f"manifest {path}: row {i} has a non-integer size {size!r}") from e
        etag = etags_in[i] if etags_in is not None else None
        etags.append(str(etag).strip('"') if etag is not None and str(etag) != "" else None)
    if blanks:
        log.warning("manifest %s: ignored %d blank entries", path, blanks)
    if dups:
        log.warning("manifest %s: dropped %d duplicate URIs (kept the first occurrence)", path, dups)
    if not uris:
        raise InputError(f"manifest {path} lists no URIs (column {col!r})")

    todo = [i for i in range(len(uris)) if sizes[i] is None or etags[i] is None] if stat else []
    missing: list[int] = []
    if todo:
        t0 = time.monotonic()
        workers = max(1, min(max_workers, len(todo)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tara-stat") as pool:
            results = list(pool.map(lambda i: _stat(uris[i], opts), todo))
        for i, res in zip(todo, results, strict=True):
            if res is None:
                missing.append(i)
                continue
            if sizes[i] is None:
                sizes[i] = res[0]
            if etags[i] is None:
                etags[i] = res[1]
        log.info("manifest %s: stat of %d objects in %.2fs", path, len(todo), time.monotonic() - t0)
    if missing:
        sample = ", ".join(uris[i] for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
        if on_missing == "error":
            raise InputError(f"manifest {path}: {len(missing)} of {len(uris)} listed objects do not exist: {sample}")
        log.warning("manifest %s: %d listed objects do not exist (%s): %s", path, len(missing), on_missing, sample)
        if on_missing == "skip":
            drop = set(missing)
            keep = [i for i in range(len(uris)) if i not in drop]
            uris, sizes, etags = [uris[i] for i in keep], [sizes[i] for i in keep], [etags[i] for i in keep]
            if not uris:
                raise InputError(f"manifest {path}: none of the listed objects exist")
    return _rows_to_table(zip(uris, sizes, etags, strict=True))


# --------------------------------------------------------------------------------------------------------------------
# Reads
# --------------------------------------------------------------------------------------------------------------------


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
            code = _client_error_code(e)
            if code in _MISSING_CODES:
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
        return _read_s3(uri, _opts(s3), max_bytes)
    return _read_local(uri, max_bytes)
