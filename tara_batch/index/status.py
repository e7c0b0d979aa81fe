"""What an index holds: its versions (rows, failures, coverage, state, which is live) and its open failures."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from tara_batch import schema as S
from tara_batch.errors import InputError
from tara_batch.index.catalog import Catalog, resolve_table
from tara_batch.index.tables import FAILURES_SUFFIX, TableRef, connect, read_columns, table_exists
from tara_batch.io.s3 import S3Options


def index_status(table_uri: str, s3: S3Options | None = None) -> dict[str, Any]:
    ref = TableRef.parse(table_uri)
    db = connect(ref.db_uri, s3)
    doc = Catalog(ref.db_uri, ref.name, s3).load()
    if not doc:
        raise InputError(f"no versioned index {ref.name!r} in {ref.db_uri} (no catalog); was it made by tara-batch?")
    versions = []
    for model_id, info in sorted(doc.get("versions", {}).items(), key=lambda kv: kv[1].get("created_at", "")):
        name = info["table"]
        rows = db.open_table(name).count_rows() if table_exists(db, name) else 0
        fname = name + FAILURES_SUFFIX
        kinds: dict[str, int] = {}
        if table_exists(db, fname):
            f = read_columns(db.open_table(fname), [S.VIDEO_ID, S.ERROR_KIND, S.ATTEMPT]).sort_by(
                [(S.ATTEMPT, "ascending")]).to_pylist()
            latest = {r[S.VIDEO_ID]: r[S.ERROR_KIND] for r in f}
            for k in latest.values():
                kinds[k] = kinds.get(k, 0) + 1
        listed = info.get("listed") or 0
        versions.append({
            "model_id": model_id, "table": name, "live": doc.get("live") == model_id, "state": info.get("state"),
            "rows": rows, "failed": sum(kinds.values()), "failures_by_kind": kinds, "listed_at_last_run": listed,
            "coverage": rows / listed if listed else None, "pending": info.get("pending"),
            "checkpoint": info.get("checkpoint", {}).get("path"), "created_at": info.get("created_at"),
            "completed_at": info.get("completed_at"), "last_run": info.get("last_run"),
        })
    return {"index": ref.uri, "live": doc.get("live"), "versions": versions, "history": doc.get("history", [])}


def render_status(st: dict[str, Any]) -> str:
    lines = [f"index {st['index']}  live version: {st['live'] or '(none yet)'}",
             f"{'':2}{'version':<17}{'state':<10}{'rows':>8}{'failed':>8}{'listed':>8}{'coverage':>10}  checkpoint"]
    for v in st["versions"]:
        cov = f"{v['coverage']:.1%}" if v["coverage"] is not None else "-"
        mark = "* " if v["live"] else "  "
        lines.append(f"{mark}{v['model_id']:<17}{v['state'] or '-':<10}{v['rows']:>8}{v['failed']:>8}"
                     f"{v['listed_at_last_run']:>8}{cov:>10}  {v['checkpoint']}")
        if v["failures_by_kind"]:
            lines.append(" " * 19 + "failures: " + ", ".join(f"{k}={n}" for k, n in sorted(v["failures_by_kind"].items())))
    lines.append("(* = live: what search uses; coverage = rows / objects listed at the version's last run)")
    return "\n".join(lines)


def open_failures(table_uri: str, s3: S3Options | None = None, version: str | None = None) -> pa.Table:
    """Open failures (latest attempt per video) of the live version, or of `version`."""
    ref = TableRef.parse(table_uri)
    db = connect(ref.db_uri, s3)
    name = resolve_table(ref.db_uri, ref.name, s3, version, newest_if_no_live=True) + FAILURES_SUFFIX
    if not table_exists(db, name):
        return pa.table({S.URI: pa.array([], pa.string())})
    rows = db.open_table(name).to_arrow().sort_by([(S.ATTEMPT, "ascending")]).to_pylist()
    latest = {r[S.VIDEO_ID]: r for r in rows}
    cols = [S.URI, S.ERROR_STAGE, S.ERROR_KIND, S.ATTEMPT, S.RETRIABLE, S.ERROR_MESSAGE, S.CREATED_AT, S.VIDEO_ID]
    return pa.Table.from_pylist([{c: r[c] for c in cols} for r in latest.values()]) if latest else \
        pa.table({c: pa.array([], pa.string()) for c in cols})
