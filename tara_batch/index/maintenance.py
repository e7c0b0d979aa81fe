"""Keeping a growing table fast: the key index that keeps commits flat, compaction, index updates, old versions.

Measured (benchmarks/scale.py, docs/LOG.md): every commit is a merge-insert keyed on `video_id` (`segment_id`), and
without an index on the key LanceDB joins each batch against a scan of the key column of the whole table, so commit
time grows with the table. A BTREE index on the key makes the join a lookup; rows committed after the index was
built are scanned until the index is updated, so `optimize` (which also folds new rows into the indices) runs
whenever too many rows are unindexed or too many fragments have accumulated. Each commit adds a fragment; a week of
incremental runs leaves thousands, and scans and queries pay per fragment: compaction merges them.

Old versions: `optimize` also removes versions *superseded* more than `retention` ago (LanceDB's own cleanup goes by
a version's creation time, which would drop the months-old version every reader holds the moment compaction replaces
it; `cleanup_age` turns one into the other). The live (latest) version is never removed, and a reader that re-reads
the latest version at least once per `retention` (the search session does, every minute) never holds a removed one.
The default retention is a week; `retention=0` removes every old version at once (only safe with no reader open).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_RETENTION = timedelta(days=7)


@dataclass
class OptimizeReport:
    fragments_before: int
    fragments_after: int
    rows: int
    versions_before: int
    versions_after: int
    seconds: float

    def render(self) -> str:
        return (f"{self.rows} rows: fragments {self.fragments_before} -> {self.fragments_after}, versions "
                f"{self.versions_before} -> {self.versions_after}, indices updated, {self.seconds:.1f} s")


def fragments(table) -> int:
    return int(table.stats()["fragment_stats"]["num_fragments"])


def key_index(table, key: str) -> Any | None:
    return next((i for i in table.list_indices() if list(i.columns) == [key] and "btree" in str(i.index_type).lower()),
                None)


def unindexed_rows(table, key: str) -> int:
    """Rows the key index does not cover yet (all rows when there is no key index)."""
    idx = key_index(table, key)
    return table.count_rows() if idx is None else int(table.index_stats(idx.name).num_unindexed_rows)


def ensure_key_index(table, key: str) -> bool:
    """A BTREE index on the merge key (created once the table has rows); True when it was created now."""
    if key_index(table, key) is not None or table.count_rows() == 0:
        return False
    from lancedb.index import BTree

    t0 = time.perf_counter()
    table.create_index(key, config=BTree())
    log.info("key index on %s created over %d rows in %.2f s", key, table.count_rows(), time.perf_counter() - t0)
    return True


# Versions made within this many seconds of the cut-off version are kept with it (clock slack between our reading of
# the version list and LanceDB's own "now").
_SLACK = timedelta(seconds=5)
_KEEP_ALL = timedelta(days=365 * 100)


def cleanup_age(versions: list[dict[str, Any]], retention: timedelta, now: datetime) -> timedelta | None:
    """The `older_than` for LanceDB's cleanup that removes exactly the versions *superseded* more than `retention`
    ago (None: nothing to remove).

    LanceDB removes by a version's own timestamp, but what makes a version safe to drop is how long ago a newer one
    replaced it: the version that was latest until this compaction may be months old and still be what every open
    reader holds. So: j = the newest version made at least `retention` ago; versions before j were superseded by
    then (by j at the latest) and go; j and everything after stay."""
    old = [v for v in sorted(versions, key=lambda v: v["version"]) if now - v["timestamp"] >= retention]
    if len(old) < 2:  # at most one version that old: it is the one to keep
        return None
    return now - old[-1]["timestamp"] + _SLACK  # LanceDB drops versions made before now - age: j itself stays


def optimize(table, *, retention: timedelta = DEFAULT_RETENTION) -> OptimizeReport:
    """Compact fragments, fold new rows into every index, remove versions superseded more than `retention` ago
    (never the live one, never one that was live within `retention`: a reader may hold it)."""
    if retention.total_seconds() < 0:
        raise ValueError("retention must be >= 0")
    t0 = time.perf_counter()
    before, versions = fragments(table), len(table.list_versions())
    table.optimize(cleanup_older_than=_KEEP_ALL)  # compaction + index update; old versions handled below
    age = cleanup_age(table.list_versions(), retention, datetime.now())  # naive local time, like list_versions()
    if age is not None:
        # LanceDB's `optimize` is the one cleanup entry point without pylance (`cleanup_old_versions` needs it);
        # right after a compaction its compaction and index steps find nothing to do.
        table.optimize(cleanup_older_than=age)
    report = OptimizeReport(before, fragments(table), table.count_rows(), versions, len(table.list_versions()),
                            time.perf_counter() - t0)
    log.info("optimized: %s", report.render())
    return report


@dataclass(frozen=True)
class MaintenancePolicy:
    """When the writer and the embed job optimize on their own."""

    max_fragments: int = 64  # compact past this many fragments
    max_unindexed_rows: int = 100_000  # update the key index past this many unindexed rows
    retention: timedelta = DEFAULT_RETENTION
    enabled: bool = True  # False: neither key index nor compaction (benchmarks/scale.py --no-maintenance)


def maybe_optimize(table, key: str, policy: MaintenancePolicy) -> OptimizeReport | None:
    """The writer's periodic check: key index present, and `optimize` when fragments or unindexed rows pile up."""
    if not policy.enabled:
        return None
    ensure_key_index(table, key)
    if fragments(table) > policy.max_fragments or unindexed_rows(table, key) > policy.max_unindexed_rows:
        return optimize(table, retention=policy.retention)
    return None
