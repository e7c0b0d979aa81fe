"""Triplet data for training: read, mix, split, fingerprint, and a reproducible sharded order.

Reading: CSV / Parquet / JSONL, local or s3://, through Ray Data (`read_csv` / `read_parquet` / `read_json`, with
the job's `S3Options.pyarrow_filesystem()` for s3://) on the driver, with order preserved. Columns are configurable
(default sent0, sent1, hard_neg, optional source). Rows with an empty member are dropped and counted.

Mixing: each source contributes all its rows, `count` rows or `ratio x data.total` rows, drawn with a permutation
seeded by (seed, source index). A per-source held-out `validation.fraction` is taken first from that same
permutation (so it never overlaps the training rows of the source), or `validation.path` is read whole.

Holding: the mixture is small (the paper's NLI-Nuance is 20K triplets, a few MB of text), so the driver puts it in
the object store once and every worker holds the whole table in memory; sharding is by index. This keeps the order
fully determined by (data, seed, epoch, world size) - what resume needs - which Ray Data's streaming split does not
give.

Order: epoch e is `default_rng([seed, e]).permutation(n)`. Global micro-batch m of the epoch is rows
[m*G, (m+1)*G) of it with G = micro_batch x world_size; rank r takes its slice [r*micro, (r+1)*micro), so workers
get disjoint micro-batches of equal size (the loss's all-gather needs equal shards). An optimizer step is
`grad_accum` consecutive micro-batches; the incomplete tail of an epoch is dropped. Step s therefore lives at
epoch s // steps_per_epoch, micro-batches (s % steps_per_epoch) * grad_accum ...: resume needs only the step.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from tara_batch.errors import ConfigError, InputError
from tara_batch.io.s3 import S3Options
from tara_batch.io.uris import is_s3, split_s3
from tara_batch.train.config import SourceConfig, TrainDataConfig, ValidationConfig

log = logging.getLogger(__name__)

_EXT_FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".json": "jsonl",
                ".ndjson": "jsonl"}


@dataclass
class Triplets:
    """Columnar triplets: row i = (anchor[i], positive[i], negative[i]) from source[i]."""

    anchor: list[str] = field(default_factory=list)
    positive: list[str] = field(default_factory=list)
    negative: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.anchor)

    def take(self, idx) -> Triplets:
        idx = [int(i) for i in idx]
        return Triplets([self.anchor[i] for i in idx], [self.positive[i] for i in idx],
                        [self.negative[i] for i in idx], [self.source[i] for i in idx])

    def extend(self, other: Triplets) -> None:
        self.anchor += other.anchor
        self.positive += other.positive
        self.negative += other.negative
        self.source += other.source

    def sources(self) -> list[str]:
        return sorted(set(self.source))

    def keys(self) -> list[str]:
        """What identifies a row for the held-out overlap check: the anchor."""
        return list(self.anchor)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for row in zip(self.anchor, self.positive, self.negative, self.source, strict=True):
            digest.update("\x1f".join(row).encode() + b"\x1e")
        return digest.hexdigest()


@dataclass
class TripletData:
    """What the workers receive: training rows, held-out rows, and how they were made."""

    train: Triplets
    val: Triplets
    info: dict[str, Any]

    def fingerprint(self) -> str:
        return hashlib.sha256((self.train.fingerprint() + self.val.fingerprint()).encode()).hexdigest()


# --------------------------------------------------------------------------------------------------------------------
# reading
# --------------------------------------------------------------------------------------------------------------------

def detect_format(path: str, fmt: str = "auto") -> str:
    if fmt != "auto":
        return fmt
    found = _EXT_FORMATS.get(PurePosixPath(path.rstrip("/")).suffix.lower())
    if not found:
        raise ConfigError("data.sources.format", f"cannot tell the format of {path} from its extension; set "
                                                 "`format: csv|parquet|jsonl` on that source")
    return found


def read_table(path: str, fmt: str = "auto", s3: S3Options | None = None):
    """A whole triplet file (or Parquet directory) as one pyarrow Table, rows in file order, via Ray Data."""
    import pyarrow as pa
    import ray

    fmt = detect_format(path, fmt)
    kwargs: dict[str, Any] = {}
    target = path
    if is_s3(path):
        # Our S3 settings (endpoint, region, credentials) rather than pyarrow's defaults; the path loses its scheme.
        kwargs["filesystem"] = (s3 or S3Options()).pyarrow_filesystem()
        bucket, key = split_s3(path)
        target = f"{bucket}/{key}"
    elif not Path(path).exists():
        raise InputError(f"triplet file {path} does not exist")
    reader = {"csv": ray.data.read_csv, "parquet": ray.data.read_parquet, "jsonl": ray.data.read_json}[fmt]
    ctx = ray.data.DataContext.get_current()
    old = ctx.execution_options.preserve_order
    ctx.execution_options.preserve_order = True  # row order is part of the data's identity (seeded sampling)
    try:
        ds = reader(target, **kwargs)
        tables = ray.get(ds.to_arrow_refs())
    finally:
        ctx.execution_options.preserve_order = old
    tables = [t for t in tables if t.num_rows]
    if not tables:
        raise InputError(f"{path} holds no rows")
    return pa.concat_tables(tables, promote_options="permissive")


def column(table, name: str, path: str, field_: str | None = None) -> list[str | None] | None:
    """Column `name` as Python strings; None when absent and optional (no `field_` to blame)."""
    import pyarrow as pa

    if name not in table.column_names:
        if field_ is None:
            return None
        raise ConfigError(field_, f"{path} has no column {name!r} (columns: {table.column_names}); set `{field_}`")
    col = table.column(name)
    if col.type != pa.string():
        col = col.cast(pa.string())
    return col.to_pylist()


def read_triplets(spec: SourceConfig, columns: TrainDataConfig, s3: S3Options | None = None) -> tuple[Triplets, int]:
    """(triplets of one source file, rows dropped for an empty member)."""
    table = read_table(spec.path, spec.format, s3)
    a = column(table, columns.anchor_column, spec.path, "data.anchor_column")
    p = column(table, columns.positive_column, spec.path, "data.positive_column")
    n = column(table, columns.negative_column, spec.path, "data.negative_column")
    src = column(table, columns.source_column, spec.path)
    default = spec.name or PurePosixPath(spec.path.rstrip("/")).stem
    out, dropped = Triplets(), 0
    for i in range(table.num_rows):
        row = (a[i], p[i], n[i])
        if any(x is None or not x.strip() for x in row):
            dropped += 1
            continue
        out.anchor.append(row[0])
        out.positive.append(row[1])
        out.negative.append(row[2])
        out.source.append(spec.name or (src[i] if src is not None and src[i] else default))
    if dropped:
        log.warning("%s: dropped %d row(s) with an empty anchor, positive or hard negative", spec.path, dropped)
    return out, dropped


def file_hashes(paths: list[str], s3: S3Options | None = None) -> dict[str, str]:
    """sha256 of every data file (a directory or s3 prefix: every object under it), keyed by URI."""
    from tara_batch.io.reads import read_bytes

    out: dict[str, str] = {}
    for path in paths:
        if is_s3(path):
            client = (s3 or S3Options()).boto3_client()
            bucket, key = split_s3(path)
            keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=key)
                    for o in page.get("Contents", [])]
            for k in sorted(keys):
                uri = f"s3://{bucket}/{k}"
                out[uri] = hashlib.sha256(read_bytes(uri, s3=s3)).hexdigest()
            continue
        root = Path(path)
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for f in files:
            digest = hashlib.sha256()
            with open(f, "rb") as fh:
                for chunk in iter(lambda fh=fh: fh.read(1 << 22), b""):
                    digest.update(chunk)
            out[str(f)] = digest.hexdigest()
    return out


# --------------------------------------------------------------------------------------------------------------------
# mixing and splitting
# --------------------------------------------------------------------------------------------------------------------

def load_triplet_data(data: TrainDataConfig, validation: ValidationConfig, seed: int,
                      s3: S3Options | None = None) -> TripletData:
    """Read every source, draw the mixture, split off the held-out rows. Deterministic in (files, config, seed)."""
    train, val, info = mix_sources(data, validation, seed, s3, read_triplets, Triplets)
    return TripletData(train, val, info)


def mix_sources(data: TrainDataConfig, validation: ValidationConfig, seed: int, s3: S3Options | None, reader,
                rows_type) -> tuple[Any, Any, dict[str, Any]]:
    """(train rows, held-out rows, info) for any row type: `reader(spec, data, s3) -> (rows, dropped)`, rows with
    `take`, `extend`, `keys`, `source` and `len` (triplets here, caption tasks in caption.py)."""
    train, val = rows_type(), rows_type()
    per_source: list[dict[str, Any]] = []
    fraction = validation.effective_fraction
    for i, spec in enumerate(data.sources):
        rows, dropped = reader(spec, data, s3)
        n = len(rows)
        if spec.count is not None:
            want = spec.count
        elif spec.ratio is not None:
            want = round(spec.ratio * (data.total or 0))
        else:
            want = n
        n_val = round(fraction * want)
        if want + n_val > n:
            if want > n:
                field_ = "data.sources.count" if spec.count is not None else "data.sources.ratio"
                raise ConfigError(field_, f"{spec.path} has {n} usable rows, fewer than the {want} asked for")
            log.warning("%s: %d rows cannot give %d training + %d held-out rows; training gets %d", spec.path, n,
                        want, n_val, n - n_val)
        perm = np.random.default_rng([seed, i]).permutation(n)
        val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:n_val + want])
        val.extend(rows.take(val_idx))
        train.extend(rows.take(train_idx))
        per_source.append({"path": spec.path, "rows": n, "dropped": dropped, "train": len(train_idx),
                           "val": len(val_idx)})
    if validation.path:
        vrows, _ = reader(SourceConfig(path=validation.path), data, s3)
        val.extend(vrows)
    if validation.max_rows is not None and len(val) > validation.max_rows:
        keep = np.sort(np.random.default_rng([seed, 1_000_003]).permutation(len(val))[: validation.max_rows])
        val = val.take(keep)
    if not len(train):
        raise InputError("the mixture has no training rows")
    overlap = len(set(val.keys()) & set(train.keys()))
    if overlap:
        log.warning("%d held-out row(s) also appear among the training rows", overlap)
    info = {
        "sources": per_source,
        "train_rows": len(train),
        "val_rows": len(val),
        "train_per_source": _counts(train.source),
        "val_per_source": _counts(val.source),
        "val_anchor_overlap": overlap,
    }
    return train, val, info


def _counts(labels: list[str]) -> dict[str, int]:
    names, counts = np.unique(np.asarray(labels, dtype=object), return_counts=True) if labels else ([], [])
    return {str(k): int(v) for k, v in zip(names, counts, strict=True)}


# --------------------------------------------------------------------------------------------------------------------
# order
# --------------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Schedule:
    """How many steps the data gives, for one world size."""

    n_train: int
    micro_batch: int
    world_size: int
    grad_accum: int
    epochs: int

    @property
    def global_micro(self) -> int:
        return self.micro_batch * self.world_size

    @property
    def micro_per_epoch(self) -> int:
        return self.n_train // self.global_micro

    @property
    def steps_per_epoch(self) -> int:
        return self.micro_per_epoch // self.grad_accum

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.epochs

    def check(self) -> None:
        if self.steps_per_epoch < 1:
            raise ConfigError("train.micro_batch", f"{self.n_train} training triplets give no optimizer step with "
                                                   f"micro_batch {self.micro_batch} x {self.world_size} workers x "
                                                   f"grad_accum {self.grad_accum}; lower them or add data")

    def epoch_order(self, seed: int, epoch: int) -> np.ndarray:
        return np.random.default_rng([seed, epoch]).permutation(self.n_train)

    def micro_batch_rows(self, order: np.ndarray, micro_index: int, rank: int) -> np.ndarray:
        """Row indices of this rank's share of global micro-batch `micro_index` of an epoch."""
        start = micro_index * self.global_micro + rank * self.micro_batch
        return order[start:start + self.micro_batch]

    def step_rows(self, seed: int, step: int, rank: int) -> list[np.ndarray]:
        """The `grad_accum` micro-batches of optimizer step `step` (0-based, global) for `rank`."""
        epoch, within = divmod(step, self.steps_per_epoch)
        order = self.epoch_order(seed, epoch)
        first = within * self.grad_accum
        return [self.micro_batch_rows(order, first + k, rank) for k in range(self.grad_accum)]
