"""LanceDB side: the embeddings table, the failures table, table metadata, idempotent writes, ANN index and search.

A table URI is `<database>/<table>` (`./index.lancedb/videos`, `s3://bucket/index.lancedb/videos`). One table holds
one model version (its `model_id` is recorded in the table metadata); writes are merge-inserts keyed on `video_id`,
so a video can never appear twice, whatever retries or reruns happen. Failures live in `<table>_failures` beside it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tara_batch import schema as S
from tara_batch.errors import ConfigError
from tara_batch.storage import S3Options, is_s3

log = logging.getLogger(__name__)

FAILURES_SUFFIX = "_failures"


@dataclass(frozen=True)
class FailureState:
    etag: str | None
    attempts: int
    retriable: bool
    kind: str
    uri: str


def _in_list(column: str, values: list[str]) -> str:
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


def connect(db_uri: str, s3: S3Options | None = None):
    import lancedb

    if is_s3(db_uri):
        return lancedb.connect(db_uri, storage_options=(s3 or S3Options()).lancedb_storage_options())
    return lancedb.connect(db_uri)


def table_exists(db, name: str) -> bool:
    return name in _table_names(db)


def _table_names(db) -> list[str]:
    names = db.list_tables()
    # lancedb >= 0.30 returns a response object with `.tables`; older versions a list.
    return list(getattr(names, "tables", names))


def read_metadata(table) -> dict[str, Any]:
    raw = (table.schema.metadata or {}).get(S.METADATA_KEY)
    return json.loads(raw) if raw else {}


class VideoTableWriter:
    """Opens (or creates) the embeddings + failures tables for one model version and commits rows to them."""

    def __init__(self, ref: TableRef, *, dim: int, metadata: dict[str, Any], s3: S3Options | None = None,
                 overwrite: bool = False, segments: bool = False) -> None:
        self.ref = ref
        self.segments = segments
        self.key = S.SEGMENT_ID if segments else S.VIDEO_ID
        self.db = connect(ref.db_uri, s3)
        self.metadata = metadata
        model_id = metadata["model_id"]
        sch = S.video_table_schema(dim, {S.METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()},
                                   segments=segments)
        if table_exists(self.db, ref.name) and not overwrite:
            self.table = self.db.open_table(ref.name)
            existing = read_metadata(self.table)
            if existing.get("model_id") != model_id:
                raise ConfigError(
                    "output.table",
                    f"{ref.uri} holds embeddings of model {existing.get('model_id')!r} "
                    f"({existing.get('checkpoint', {}).get('path')}), this job computes {model_id!r}: one table per "
                    "model version; write to a new table name (or pass --overwrite to replace it)",
                )
            if self.table.schema.field(S.EMBEDDING).type.list_size != dim:
                raise ConfigError("output.table", f"{ref.uri} has a different embedding dimension")
        else:
            self.table = self.db.create_table(ref.name, schema=sch, mode="overwrite")
        failures_name = ref.name + FAILURES_SUFFIX
        if table_exists(self.db, failures_name) and not overwrite:
            self.failures = self.db.open_table(failures_name)
        else:
            self.failures = self.db.create_table(failures_name, schema=S.failures_table_schema(), mode="overwrite")

    def done_ids(self, *, complete_only: bool = True) -> dict[str, str]:
        """video_id -> etag of every video already embedded (the job skips these unless the object changed).

        Segment mode: a video counts only once all its windows are in (`segment_count` rows); a job killed between
        two commits of one video's windows leaves it incomplete, and the rerun redoes it (complete_only=False lists
        every video with any row, for pruning)."""
        if not self.table.count_rows():
            return {}
        if not self.segments:
            tbl = self.table.to_arrow().select([S.VIDEO_ID, S.ETAG])
            return dict(zip(tbl.column(S.VIDEO_ID).to_pylist(), tbl.column(S.ETAG).to_pylist(), strict=True))
        tbl = self.table.to_arrow().select([S.VIDEO_ID, S.ETAG, S.SEGMENT_COUNT])
        agg = tbl.group_by([S.VIDEO_ID, S.ETAG]).aggregate([(S.SEGMENT_COUNT, "count"), (S.SEGMENT_COUNT, "max")])
        have = agg.column(f"{S.SEGMENT_COUNT}_count").to_pylist()
        want = agg.column(f"{S.SEGMENT_COUNT}_max").to_pylist()
        return {v: e for v, e, h, w in zip(agg.column(S.VIDEO_ID).to_pylist(), agg.column(S.ETAG).to_pylist(), have,
                                           want, strict=True) if h == w or not complete_only}

    def delete_rows(self, video_ids: list[str]) -> int:
        """Delete every row of these videos (failure records are kept: they carry the attempt count)."""
        before = self.table.count_rows()
        for i in range(0, len(video_ids), 1000):
            self.table.delete(_in_list(S.VIDEO_ID, video_ids[i:i + 1000]))
        return before - self.table.count_rows()

    def failure_state(self) -> dict[str, FailureState]:
        """Latest failure record per video: what a rerun needs to decide whether to retry it."""
        if not self.failures.count_rows():
            return {}
        out: dict[str, FailureState] = {}
        for r in self.failures.to_arrow().sort_by([(S.ATTEMPT, "ascending")]).to_pylist():
            out[r[S.VIDEO_ID]] = FailureState(r[S.ETAG], int(r[S.ATTEMPT] or 1), bool(r[S.RETRIABLE]),
                                              r[S.ERROR_KIND], r[S.URI])
        return out

    def prune_rows(self, video_ids: list[str]) -> int:
        """Delete rows (and failure records) of videos that are gone from the source."""
        if not video_ids:
            return 0
        before = self.table.count_rows()
        for i in range(0, len(video_ids), 1000):
            where = _in_list(S.VIDEO_ID, video_ids[i:i + 1000])
            self.table.delete(where)
            if self.failures.count_rows():
                self.failures.delete(where)
        return before - self.table.count_rows()

    def write_rows(self, rows: pa.Table) -> None:
        """Upsert embedded rows keyed on video_id (segment_id in segment mode): re-running a batch can never create a
        duplicate."""
        if rows.num_rows == 0:
            return
        rows = rows.cast(self.table.schema.remove_metadata()) if rows.schema != self.table.schema else rows
        (self.table.merge_insert(self.key).when_matched_update_all().when_not_matched_insert_all().execute(rows))

    def write_failures(self, rows: pa.Table) -> None:
        if rows.num_rows:
            self.failures.add(rows.cast(S.failures_table_schema()))

    def clear_failures(self, video_ids: list[str]) -> None:
        """Drop the failure records of videos that have now been embedded (the ledger lists open failures)."""
        if video_ids and self.failures.count_rows():
            for i in range(0, len(video_ids), 1000):
                self.failures.delete(_in_list(S.VIDEO_ID, video_ids[i:i + 1000]))

    def count(self) -> int:
        return self.table.count_rows()


def build_index(table, *, index_type: str = "IVF_PQ") -> str:
    """Build a cosine ANN index on the embedding column; returns a description. Brute force stays exact below it."""
    n = table.count_rows()
    dim = table.schema.field(S.EMBEDDING).type.list_size
    # IVF partitions ~ sqrt(n) (Lance's guidance); PQ sub-vectors must divide dim, 16-dim sub-vectors is the default
    # trade-off for 3584-d vectors (224 sub-vectors).
    partitions = max(1, int(np.sqrt(n)))
    sub_vectors = _largest_divisor_at_most(dim, max(1, dim // 16))
    if n < MIN_INDEX_ROWS:
        raise ConfigError("index", f"table has {n} rows; an IVF index needs >= {MIN_INDEX_ROWS} rows (brute force is exact and fast below that)")
    table.create_index(metric="cosine", vector_column_name=S.EMBEDDING, index_type=index_type,
                       num_partitions=partitions, num_sub_vectors=sub_vectors, replace=True)
    desc = f"{index_type} cosine, {partitions} partitions, {sub_vectors} sub-vectors over {n} rows"
    log.info("built index: %s", desc)
    return desc


MIN_INDEX_ROWS = 256  # IVF training needs at least this many rows; below it an index would be empty (stack-notes)


def maintain_index(table, *, mode: str, threshold: int, changed: bool) -> str:
    """Apply the index policy after a run: build once past the threshold, fold new rows into an existing index.

    Returns what was done ("" for nothing). Brute force is exact and fast on small tables, so nothing happens
    below `max(threshold, MIN_INDEX_ROWS)` rows in "auto" mode or below MIN_INDEX_ROWS in "always" mode.
    """
    rows = table.count_rows()
    if mode == "never" or rows < MIN_INDEX_ROWS or (mode == "auto" and rows < threshold):
        return ""
    if has_index(table):
        if not changed:
            return ""
        # Incremental: new fragments are added to the existing index instead of retraining it from scratch.
        table.optimize()
        return f"index updated with new rows ({rows} rows)"
    return build_index(table)


def has_index(table) -> bool:
    try:
        return any(S.EMBEDDING in idx.columns for idx in table.list_indices())
    except Exception:
        return False


def _largest_divisor_at_most(n: int, cap: int) -> int:
    for d in range(min(cap, n), 0, -1):
        if n % d == 0:
            return d
    return 1


def search(table, vector: np.ndarray, k: int = 10, *, nprobes: int = 20, refine_factor: int = 5) -> pa.Table:
    """Top-k rows by cosine similarity (`score` = cosine, descending). Uses the ANN index when one exists."""
    q = np.asarray(vector, dtype=np.float32).reshape(-1)
    query = table.search(q, vector_column_name=S.EMBEDDING).distance_type("cosine").limit(k)
    if has_index(table):
        query = query.nprobes(nprobes).refine_factor(refine_factor)
    segment = [S.SEGMENT_START, S.SEGMENT_END] if S.SEGMENT_START in table.schema.names else []
    res = query.select([S.VIDEO_ID, S.URI, *segment, S.DURATION, S.NUM_FRAMES, "_distance"]).to_arrow()
    score = pc.subtract(pa.scalar(1.0, pa.float32()), res.column("_distance").cast(pa.float32()))
    res = res.drop_columns(["_distance"]).append_column("score", score)
    return res.sort_by([("score", "descending")])
