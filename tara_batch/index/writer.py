"""Idempotent writes of one model version: the embeddings table and its failure ledger.

One table holds one model version (its `model_id` is in the table metadata); rows are merge-inserted keyed on
`video_id` (`segment_id` in segment mode), so a video can never appear twice whatever retries or reruns happen.
Failures live in `<table>_failures` beside it, one record per (video, attempt).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from tara_batch import schema as S
from tara_batch.errors import ConfigError
from tara_batch.index.maintenance import MaintenancePolicy, maybe_optimize
from tara_batch.index.tables import (
    FAILURES_SUFFIX,
    TableRef,
    connect,
    in_list,
    read_columns,
    read_metadata,
    table_exists,
)
from tara_batch.io.s3 import S3Options


@dataclass(frozen=True)
class FailureState:
    etag: str | None
    attempts: int
    retriable: bool
    kind: str
    uri: str


class VideoTableWriter:
    """Opens (or creates) the embeddings + failures tables for one model version and commits rows to them."""

    CHECK_EVERY = 16  # commits between maintenance checks (key index, fragments)
    # LanceDB's session caches, capped: every commit is a new version whose manifest and index metadata the default
    # session (6 GiB index + 1 GiB metadata) keeps, so the driver grew to 1.8 GiB at 1M rows and still climbing;
    # capped, 1.05 GiB and flat (benchmarks/scale.py's growth loop without its queries, docs/LOG.md). The writer needs
    # only the key index and the latest manifest hot.
    CACHE_MIB = (256, 128)

    def __init__(self, ref: TableRef, *, dim: int, metadata: dict[str, Any], s3: S3Options | None = None,
                 overwrite: bool = False, segments: bool = False, vector_dtype: str = "float32",
                 policy: MaintenancePolicy | None = None) -> None:
        self.ref = ref
        self.policy = policy or MaintenancePolicy()
        self.commits = 0
        self.optimized = 0  # times the writer optimized on its own (run summary)
        self.last_maintenance_s = 0.0  # time the last write_rows spent in maintenance (benchmarks/scale.py splits it)
        self.segments = segments
        self.key = S.SEGMENT_ID if segments else S.VIDEO_ID
        self.db = connect(ref.db_uri, s3, cache_mib=self.CACHE_MIB)
        self.metadata = metadata
        model_id = metadata["model_id"]
        sch = S.video_table_schema(dim, {S.METADATA_KEY: json.dumps(metadata, sort_keys=True).encode()},
                                   segments=segments, vector_dtype=vector_dtype)
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
            stored = self.table.schema.field(S.EMBEDDING).type.value_type
            if stored != S.VECTOR_DTYPES[vector_dtype]:
                raise ConfigError("output.vector_dtype", f"{ref.uri} stores {stored} vectors, this job writes "
                                  f"{vector_dtype}; keep the table's dtype or write a new table")
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
            tbl = read_columns(self.table, [S.VIDEO_ID, S.ETAG])
            return dict(zip(tbl.column(S.VIDEO_ID).to_pylist(), tbl.column(S.ETAG).to_pylist(), strict=True))
        tbl = read_columns(self.table, [S.VIDEO_ID, S.ETAG, S.SEGMENT_COUNT])
        agg = tbl.group_by([S.VIDEO_ID, S.ETAG]).aggregate([(S.SEGMENT_COUNT, "count"), (S.SEGMENT_COUNT, "max")])
        have = agg.column(f"{S.SEGMENT_COUNT}_count").to_pylist()
        want = agg.column(f"{S.SEGMENT_COUNT}_max").to_pylist()
        return {v: e for v, e, h, w in zip(agg.column(S.VIDEO_ID).to_pylist(), agg.column(S.ETAG).to_pylist(), have,
                                           want, strict=True) if h == w or not complete_only}

    def resume_windows(self, todo: dict[str, str]) -> tuple[dict[str, int], list[str], list[str]]:
        """Segment mode, before a rerun: for each video to do (video_id -> etag now), where to start.

        Returns (first_window, drop_all, drop_from): a video whose committed rows carry the same etag keeps its
        contiguous prefix of windows 0..k-1 and restarts at window k (`first_window[v] = k`, any stray rows past the
        prefix go in `drop_from`); a video whose object changed (other etag) loses all its rows (`drop_all`), since
        its windows may differ in number and times."""
        if not todo or not self.table.count_rows():
            return {}, [], []
        tbl = read_columns(self.table, [S.VIDEO_ID, S.ETAG, S.SEGMENT_INDEX],
                           where=in_list(S.VIDEO_ID, list(todo)) if len(todo) <= 1000 else None)
        seen: dict[str, tuple[set[str], set[int]]] = {}
        for v, e, i in zip(tbl.column(S.VIDEO_ID).to_pylist(), tbl.column(S.ETAG).to_pylist(),
                           tbl.column(S.SEGMENT_INDEX).to_pylist(), strict=True):
            if v in todo:
                etags, idx = seen.setdefault(v, (set(), set()))
                etags.add(e)
                idx.add(int(i))
        first, drop_all, drop_from = {}, [], []
        for v, (etags, idx) in seen.items():
            if etags != {todo[v]}:
                drop_all.append(v)
                continue
            k = 0
            while k in idx:
                k += 1
            first[v] = k
            if len(idx) > k:
                drop_from.append(v)
        return first, drop_all, drop_from

    def delete_windows_from(self, first_window: dict[str, int], video_ids: list[str]) -> int:
        """Delete the windows at or past each video's resume point (rows a partial commit left out of order)."""
        before = self.table.count_rows()
        for v in video_ids:
            self.table.delete(f"{in_list(S.VIDEO_ID, [v])} AND {S.SEGMENT_INDEX} >= {int(first_window[v])}")
        return before - self.table.count_rows()

    def delete_rows(self, video_ids: list[str]) -> int:
        """Delete every row of these videos (failure records are kept: they carry the attempt count)."""
        before = self.table.count_rows()
        for i in range(0, len(video_ids), 1000):
            self.table.delete(in_list(S.VIDEO_ID, video_ids[i:i + 1000]))
        return before - self.table.count_rows()

    def failure_state(self) -> dict[str, FailureState]:
        """Latest failure record per video: what a rerun needs to decide whether to retry it."""
        if not self.failures.count_rows():
            return {}
        out: dict[str, FailureState] = {}
        for r in read_columns(self.failures, [S.VIDEO_ID, S.ETAG, S.ATTEMPT, S.RETRIABLE, S.ERROR_KIND, S.URI]).sort_by([(S.ATTEMPT, "ascending")]).to_pylist():
            out[r[S.VIDEO_ID]] = FailureState(r[S.ETAG], int(r[S.ATTEMPT] or 1), bool(r[S.RETRIABLE]),
                                              r[S.ERROR_KIND], r[S.URI])
        return out

    def prune_rows(self, video_ids: list[str]) -> int:
        """Delete rows (and failure records) of videos that are gone from the source."""
        if not video_ids:
            return 0
        before = self.table.count_rows()
        for i in range(0, len(video_ids), 1000):
            where = in_list(S.VIDEO_ID, video_ids[i:i + 1000])
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
        self.commits += 1
        self.last_maintenance_s = 0.0
        if self.commits % self.CHECK_EVERY == 1:  # the first commit too: the key index exists from then on
            t0 = time.perf_counter()
            self.maintain()
            self.last_maintenance_s = time.perf_counter() - t0

    def maintain(self):
        """Key index on the merge key, and `optimize` when fragments or unindexed rows pile up (maintenance.py)."""
        report = maybe_optimize(self.table, self.key, self.policy)
        self.optimized += report is not None
        return report

    def write_failures(self, rows: pa.Table) -> None:
        if rows.num_rows:
            self.failures.add(rows.cast(S.failures_table_schema()))

    def clear_failures(self, video_ids: list[str]) -> None:
        """Drop the failure records of videos that have now been embedded (the ledger lists open failures)."""
        if video_ids and self.failures.count_rows():
            for i in range(0, len(video_ids), 1000):
                self.failures.delete(in_list(S.VIDEO_ID, video_ids[i:i + 1000]))

    def count(self) -> int:
        return self.table.count_rows()
