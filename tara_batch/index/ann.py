"""Vector search on a table: the cosine ANN index (build, incremental update) and top-k queries.

Brute force is exact and fast on small tables; an IVF index is built once the table passes a threshold
(`output.index_threshold`) and folded over new rows after each run. Cosine is set explicitly (LanceDB's default is L2).
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tara_batch import schema as S
from tara_batch.errors import ConfigError

log = logging.getLogger(__name__)


DEFAULT_INDEX = "IVF_HNSW_SQ"  # recall@10 1.000 at nprobes 20 / refine 5 where IVF_PQ gave 0.64 (docs/LOG.md)


def build_index(table, *, index_type: str = DEFAULT_INDEX) -> str:
    """Build a cosine ANN index on the embedding column; returns a description. Brute force stays exact below it.

    IVF_HNSW_SQ (the default): IVF partitions, an HNSW graph in each, vectors scalar-quantised to 8 bits (1 byte per
    dimension: 3.6 GB per million 3584-d rows). IVF_PQ: 16-dimension sub-vectors at 8 bits (1/16 of that: 224 MB
    per million 3584-d rows), for when index memory is the constraint; its recall is lower on dense archives
    (benchmarks/scale.py, refine 5: 0.62 at 100k clustered rows, 0.28 at 1M; IVF_HNSW_SQ 0.999-1.000)."""
    n = table.count_rows()
    dim = table.schema.field(S.EMBEDDING).type.list_size
    if n < MIN_INDEX_ROWS:
        raise ConfigError("index", f"table has {n} rows; an IVF index needs >= {MIN_INDEX_ROWS} rows (brute force is exact and fast below that)")
    # IVF partitions ~ sqrt(n) (Lance's guidance).
    partitions = max(1, int(np.sqrt(n)))
    kwargs = {}
    if index_type == "IVF_PQ":  # sub-vectors must divide dim; 16-dim sub-vectors (224 for 3584-d vectors)
        kwargs["num_sub_vectors"] = _largest_divisor_at_most(dim, max(1, dim // 16))
    table.create_index(metric="cosine", vector_column_name=S.EMBEDDING, index_type=index_type,
                       num_partitions=partitions, replace=True, **kwargs)
    desc = f"{index_type} cosine, {partitions} partitions" + \
        (f", {kwargs['num_sub_vectors']} sub-vectors" if kwargs else "") + f" over {n} rows"
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
        # Incremental: new fragments are added to the existing index instead of retraining it from scratch (our
        # optimize: LanceDB's default cleanup would drop the version open readers hold, maintenance.py).
        from tara_batch.index.maintenance import optimize

        optimize(table)
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


def search(table, vector: np.ndarray, k: int = 10, *, nprobes: int = 20, refine_factor: int = 5,
           where: str | None = None) -> pa.Table:
    """Top-k rows by cosine similarity (`score` = cosine, descending). Uses the ANN index when one exists.

    `where`: a filter expression (built by `search.filters`, never by callers from user text), applied before the
    top-k (prefilter), so k rows come back whenever k rows match."""
    q = np.asarray(vector, dtype=np.float32).reshape(-1)
    query = table.search(q, vector_column_name=S.EMBEDDING).distance_type("cosine").limit(k)
    if where:
        query = query.where(where, prefilter=True)
    if has_index(table):
        query = query.nprobes(nprobes).refine_factor(refine_factor)
    segment = [S.SEGMENT_START, S.SEGMENT_END] if S.SEGMENT_START in table.schema.names else []
    res = query.select([S.VIDEO_ID, S.URI, *segment, S.DURATION, S.NUM_FRAMES, S.CREATED_AT, "_distance"]).to_arrow()
    score = pc.subtract(pa.scalar(1.0, pa.float32()), res.column("_distance").cast(pa.float32()))
    res = res.drop_columns(["_distance"]).append_column("score", score)
    return res.sort_by([("score", "descending")])
