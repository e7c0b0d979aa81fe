"""Checks before a job starts anything: can we reach and read the input, and reach the output location?

One cheap request per location (a one-key listing), with a short timeout and no retry storm, so a typo in a bucket
name, missing credentials or an unreachable endpoint is a one-line `ConfigError` naming the setting to fix, raised
before Ray starts and before any index version is registered, instead of a botocore traceback minutes later.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from tara_batch.errors import ConfigError
from tara_batch.io.s3 import S3Options, client_error_code, s3_or_default
from tara_batch.io.uris import is_s3, split_s3

# What S3 says when the bucket lives in another region than the one we signed for.
_REGION_CODES = frozenset({"PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException",
                           "301"})
_CREDENTIAL_CODES = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
                               "TokenRefreshRequired"})


def _where(opts: S3Options) -> str:
    return f" at {opts.endpoint_url}" if opts.endpoint_url else ""


def check_s3(uri: str, opts: S3Options, *, field: str) -> None:
    """List at most one key under `uri` (the bucket must exist; an empty prefix is fine); turn every way that can
    fail into a ConfigError on the setting to fix."""
    import botocore.exceptions as bx

    bucket, key = split_s3(uri)
    # Two attempts and a short connect timeout: an unreachable endpoint should fail in seconds, not after the
    # eight-attempt backoff that protects a running job from throttling.
    quick = dataclasses.replace(opts, max_attempts=2, connect_timeout=min(opts.connect_timeout, 5.0),
                                read_timeout=min(opts.read_timeout, 20.0))
    try:
        client = quick.boto3_client()
        client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    except bx.NoCredentialsError as exc:
        raise ConfigError("s3.access_key_id", f"no AWS credentials found to read {uri}: set AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or s3.access_key_id and s3.secret_access_key"
                          ) from exc
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as exc:
        raise ConfigError("s3.endpoint_url", f"cannot reach the S3 endpoint{_where(opts) or ' (AWS default)'} to "
                          f"read {uri} ({type(exc).__name__}): check s3.endpoint_url (or AWS_ENDPOINT_URL) and the "
                          "network") from exc
    except bx.ClientError as exc:
        code = client_error_code(exc)
        if code in ("NoSuchBucket", "404"):
            raise ConfigError(field, f"bucket {bucket!r} does not exist{_where(opts)}: check the bucket name in "
                              f"{uri}") from exc
        if code in ("AccessDenied", "403", "AllAccessDisabled"):
            raise ConfigError(field, f"access denied listing {uri}{_where(opts)}: the credentials in use need "
                              f"s3:ListBucket and s3:GetObject on bucket {bucket!r} (check s3.profile / "
                              "AWS_PROFILE)") from exc
        if code in _CREDENTIAL_CODES:
            raise ConfigError("s3.access_key_id", f"the S3 credentials were rejected ({code}) reading {uri}: check "
                              "s3.access_key_id / s3.secret_access_key (or the AWS profile in use)") from exc
        if code in _REGION_CODES:
            raise ConfigError("s3.region", f"bucket {bucket!r} is in another region than "
                              f"{opts.effective_region() or 'the default'} ({code}): set s3.region") from exc
        if code == "InvalidBucketName":
            raise ConfigError(field, f"{bucket!r} is not a valid bucket name ({uri})") from exc
        raise ConfigError(field, f"cannot list {uri}: {code or type(exc).__name__}: {exc}") from exc
    except ValueError as exc:  # botocore rejects malformed endpoints / bucket names before any request
        raise ConfigError(field, f"cannot list {uri}: {exc}") from exc


def check_local(path: str, *, field: str) -> None:
    p = Path(path)
    if not p.exists():
        raise ConfigError(field, f"no such file or directory: {path}")
    if not os.access(p, os.R_OK):
        raise ConfigError(field, f"{path} is not readable by this user")


def check_output(uri: str, opts: S3Options | None, *, field: str) -> None:
    """The index location: an S3 bucket we can list, or a local directory we can create and write in."""
    if is_s3(uri):
        check_s3(uri, s3_or_default(opts), field=field)
        return
    p = Path(uri)
    parent = next((q for q in (p, *p.parents) if q.exists()), None)
    if parent is None or not os.access(parent, os.W_OK):
        raise ConfigError(field, f"cannot create or write {uri}: {parent} is not writable by this user")


def check_input(uri: str, opts: S3Options | None, *, field: str) -> None:
    if is_s3(uri):
        check_s3(uri, s3_or_default(opts), field=field)
    else:
        check_local(uri, field=field)
