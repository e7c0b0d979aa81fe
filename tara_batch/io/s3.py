"""S3 settings shared by boto3, pyarrow and LanceDB, and the per-process boto3 client cache.

`S3Options` is frozen and picklable (it travels to Ray workers inside task arguments). Unset fields fall back to
boto3's standard resolution; the same effective endpoint, region and credentials are handed to pyarrow and LanceDB.
Credentials are never logged: the repr masks them, and log lines only say *where* credentials came from.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from tara_batch.errors import ConfigError

if TYPE_CHECKING:  # boto3/pyarrow.fs are imported lazily: local-only runs and `--help` should not pay for them
    import pyarrow.fs


log = logging.getLogger(__name__)

# Credential sources that LanceDB (object_store) and pyarrow (AWS C++ SDK) resolve *and refresh* on their own. For
# these we do not export a snapshot of the keys: a snapshot of instance-role credentials would expire mid-job.
_SELF_REFRESHING_METHODS = frozenset({"iam-role", "container-role", "assume-role-with-web-identity"})

_SECRET_FIELDS = frozenset({"access_key_id", "secret_access_key", "session_token"})

_RETRY_MODES = ("standard", "adaptive", "legacy")

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


def s3_or_default(s3: S3Options | None) -> S3Options:
    return s3 if s3 is not None else S3Options()


def client_error_code(err: Exception) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


MISSING_ERROR_CODES = frozenset({"404", "NoSuchKey", "NotFound"})

BUCKET_ERROR_CODES = frozenset({"NoSuchBucket", "InvalidBucketName", "AccessDenied", "AllAccessDisabled", "403"})
