"""Naming and opening LanceDB tables: `<database>/<table>` references, connections (local or s3://), metadata.

A table URI is `<database>/<table>` (`./index.lancedb/videos`, `s3://bucket/index.lancedb/videos`). The table-level
metadata (`schema.METADATA_KEY`) records the model version, checkpoint and profile of its rows.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from tara_batch import schema as S
from tara_batch.errors import ConfigError
from tara_batch.io.s3 import S3Options
from tara_batch.io.uris import is_s3

log = logging.getLogger(__name__)

FAILURES_SUFFIX = "_failures"


def in_list(column: str, values: list[str]) -> str:
    quoted = ",".join("'" + v.replace("'", "''") + "'" for v in values)
    return f"{column} IN ({quoted})"


@dataclass(frozen=True)
class TableRef:
    db_uri: str
    name: str

    @classmethod
    def parse(cls, uri: str) -> TableRef:
        uri = uri.rstrip("/")
        if "/" not in uri:
            raise ConfigError("output.table", f"{uri!r} needs a database part: use `<database dir>/<table>`, "
                              "e.g. ./index.lancedb/videos")
        db, name = uri.rsplit("/", 1)
        if name.endswith(".lance"):
            name = name[: -len(".lance")]
        if not name or not name.replace("_", "").replace("-", "").isalnum():
            raise ConfigError("output.table", f"table name {name!r} must be letters, digits, '_' or '-'")
        if not is_s3(db):
            from pathlib import Path

            db = str(Path(db).expanduser().resolve())
        return cls(db, name)

    @property
    def uri(self) -> str:
        return f"{self.db_uri}/{self.name}"


def connect(db_uri: str, s3: S3Options | None = None, *, cache_mib: tuple[int, int] | None = None):
    """A LanceDB connection; `cache_mib` = (index cache, metadata cache) caps LanceDB's session caches (default
    6 GiB + 1 GiB), for long-lived processes that commit many versions (the embed driver, see VideoTableWriter)."""
    import lancedb

    kwargs = {}
    if cache_mib is not None:
        kwargs["session"] = lancedb.Session(index_cache_size_bytes=cache_mib[0] * 2**20,
                                            metadata_cache_size_bytes=cache_mib[1] * 2**20)
    if is_s3(db_uri):
        kwargs["storage_options"] = (s3 or S3Options()).lancedb_storage_options()
    return lancedb.connect(db_uri, **kwargs)


def table_exists(db, name: str) -> bool:
    return name in _table_names(db)


def _table_names(db) -> list[str]:
    names = db.list_tables()
    # lancedb >= 0.30 returns a response object with `.tables`; older versions a list.
    return list(getattr(names, "tables", names))


def read_metadata(table) -> dict[str, Any]:
    raw = (table.schema.metadata or {}).get(S.METADATA_KEY)
    return json.loads(raw) if raw else {}


def read_columns(table, columns: list[str], where: str | None = None):
    """Some columns of every row (or of the rows matching `where`), as Arrow, reading only those columns
    (`table.to_arrow()` would read the embeddings too: 14 GB at a million 3584-d rows, where the ids and ETags are
    about 60 MB)."""
    query = table.search()
    if where:
        query = query.where(where)
    return query.select(list(columns)).limit(None).to_arrow()
