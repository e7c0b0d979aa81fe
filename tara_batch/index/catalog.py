"""Model versions of an index and the alias that says which one `search` uses.

An index name (the `<table>` of `--table <db>/<table>`) is an alias. Each model version (checkpoint hash + profile
settings -> `model_id`) gets its own physical table `<alias>__<model_id>` (and `<alias>__<model_id>_failures`).
The catalog, one small JSON document per alias at `<db>/_tara_batch/<alias>.catalog.json`, records the versions,
their state (`building` until every listed video is embedded or permanently failed, then `complete`) and which
version is `live`. Switching the live version is one atomic write of that document (os.replace locally, a single
PUT on S3), so a search never sees a half-built version: it reads the alias once and then queries a complete table.

One writer per alias at a time is assumed (one embed/re-embed job per index); readers may run at any time.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tara_batch.io.s3 import S3Options
from tara_batch.io.uris import is_s3, split_s3

log = logging.getLogger(__name__)

BUILDING = "building"
COMPLETE = "complete"


def physical_name(alias: str, model_id: str) -> str:
    return f"{alias}__{model_id}"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Catalog:
    def __init__(self, db_uri: str, alias: str, s3: S3Options | None = None) -> None:
        self.db_uri = db_uri.rstrip("/")
        self.alias = alias
        self.s3 = s3 or S3Options()
        self.uri = f"{self.db_uri}/_tara_batch/{alias}.catalog.json"

    # --- raw document ---

    def load(self) -> dict[str, Any]:
        try:
            if is_s3(self.uri):
                bucket, key = split_s3(self.uri)
                body = self.s3.boto3_client().get_object(Bucket=bucket, Key=key)["Body"].read()
            else:
                body = Path(self.uri).read_bytes()
        except FileNotFoundError:
            return {}
        except Exception as exc:
            if "NoSuchKey" in type(exc).__name__ or "NoSuchKey" in str(exc) or "404" in str(exc):
                return {}
            raise
        return json.loads(body)

    def exists(self) -> bool:
        return bool(self.load())

    def save(self, doc: dict[str, Any]) -> None:
        """Atomic replace: readers see the old document or the new one, never a mix."""
        doc = dict(doc, alias=self.alias, updated_at=_now())
        body = json.dumps(doc, indent=2, sort_keys=True).encode()
        if is_s3(self.uri):
            bucket, key = split_s3(self.uri)
            self.s3.boto3_client().put_object(Bucket=bucket, Key=key, Body=body)
        else:
            path = Path(self.uri)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(body)
            os.replace(tmp, path)

    # --- versions ---

    def versions(self) -> dict[str, dict[str, Any]]:
        return self.load().get("versions", {})

    def live(self) -> str | None:
        return self.load().get("live")

    def live_table(self) -> str | None:
        doc = self.load()
        live = doc.get("live")
        return doc["versions"][live]["table"] if live else None

    def register(self, model_id: str, info: dict[str, Any]) -> str:
        """Add a version (state `building`) if it is new; returns its physical table name."""
        doc = self.load() or {"versions": {}, "live": None}
        if model_id not in doc["versions"]:
            doc["versions"][model_id] = {"table": physical_name(self.alias, model_id), "state": BUILDING,
                                         "created_at": _now(), **info}
            self.save(doc)
            log.info("registered model version %s of index %r", model_id, self.alias)
        return doc["versions"][model_id]["table"]

    def update(self, model_id: str, **fields: Any) -> None:
        doc = self.load()
        doc["versions"][model_id].update(fields)
        self.save(doc)

    def promote(self, model_id: str) -> None:
        doc = self.load()
        if doc["versions"][model_id]["state"] != COMPLETE:
            raise ValueError(f"version {model_id} is not complete; refusing to make it live")
        previous = doc.get("live")
        doc["live"] = model_id
        doc.setdefault("history", []).append({"live": model_id, "previous": previous, "at": _now()})
        self.save(doc)
        log.info("index %r now serves model version %s (was %s)", self.alias, model_id, previous)

    def forget(self, model_id: str) -> None:
        doc = self.load()
        if doc.get("live") == model_id:
            raise ValueError(f"version {model_id} is live; promote another version before pruning it")
        doc["versions"].pop(model_id, None)
        self.save(doc)


def resolve_table(db_uri: str, name: str, s3: S3Options | None = None, version: str | None = None, *,
                  newest_if_no_live: bool = False) -> str:
    """Physical table behind an index name: the live version, or `version` (a model id or a unique prefix of one).

    A name without a catalog is a plain table (e.g. made by another tool) and is used as is.
    """
    from tara_batch.errors import InputError

    doc = Catalog(db_uri, name, s3).load()
    if not doc:
        if version:
            raise InputError(f"{name!r} is a plain table, not a versioned index: drop --version")
        return name
    versions = doc.get("versions", {})
    if version:
        matches = [m for m in versions if m.startswith(version)]
        if len(matches) != 1:
            raise InputError(f"version {version!r} matches {len(matches)} of the versions of {name!r}: "
                             f"{sorted(versions)}")
        return versions[matches[0]]["table"]
    if not doc.get("live") and newest_if_no_live and versions:
        return max(versions.values(), key=lambda v: v.get("created_at", ""))["table"]
    if not doc.get("live"):
        building = ", ".join(f"{m} ({v.get('rows', 0)} rows)" for m, v in versions.items()) or "none"
        raise InputError(f"index {name!r} has no complete version yet (versions: {building}); search a version "
                         "explicitly with --version, or finish the embed job")
    return versions[doc["live"]]["table"]
