"""Reading and writing tables of sentences and triplets: CSV, TSV, JSONL, Parquet, TXT; optionally .gz; local or
s3://. Output files are byte-identical for the same rows (deterministic generators, deterministic files).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

from tara_batch.errors import ConfigError, InputError
from tara_batch.io.reads import read_bytes
from tara_batch.io.s3 import S3Options
from tara_batch.io.uris import is_s3, split_s3
from tara_batch.train.triplets.common import SOURCE_COLUMN, TRIPLET_COLUMNS, Triplet, clean_text

_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
            ".parquet": "parquet", ".pq": "parquet", ".txt": "txt"}


def _format(path: str) -> tuple[str, bool]:
    name = PurePosixPath(path.rstrip("/")).name.lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    fmt = _FORMATS.get(PurePosixPath(name).suffix)
    if fmt is None or (gz and fmt == "parquet"):
        raise ConfigError("make-triplets.path", f"cannot tell the format of {path}: use .csv, .tsv, .jsonl, "
                                                ".parquet or .txt (text formats may end in .gz)")
    return fmt, gz


def read_table(path: str, *, s3: S3Options | None = None) -> list[dict[str, Any]]:
    """All rows of a table file as dicts, in file order. CSV/TSV values are strings; a .txt file is one row per
    non-blank line, in column "text"."""
    fmt, gz = _format(path)
    try:
        data = read_bytes(path, s3=s3) if is_s3(path) else Path(path).read_bytes()
    except FileNotFoundError as e:
        raise InputError(f"{path} does not exist") from e
    if gz:
        data = gzip.decompress(data)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(data)).to_pylist()
    text = data.decode("utf-8-sig")
    if fmt in ("csv", "tsv"):
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="," if fmt == "csv" else "\t")
        return [{k: ("" if v is None else v) for k, v in row.items() if k is not None} for row in reader]
    if fmt == "txt":
        return [{"text": line.strip()} for line in text.splitlines() if line.strip()]
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{n}: not a JSON object per line ({e})") from e
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
        rows.append(obj)
    return rows


def write_table(rows: Iterable[Mapping[str, Any]], path: str, *, columns: Sequence[str] | None = None,
                s3: S3Options | None = None) -> int:
    """Write rows (dicts) to `path` by its extension; columns: their order (default: keys in first-seen order).
    Local files are written atomically (temp file + rename); s3:// objects with one PUT. Returns the row count."""
    fmt, gz = _format(path)
    rows = [dict(r) for r in rows]
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    columns = list(columns)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays = {c: pa.array([r.get(c) for r in rows], type=pa.string() if all(
            isinstance(r.get(c), str | None) for r in rows) else None) for c in columns}
        buf = io.BytesIO()
        pq.write_table(pa.table(arrays), buf)
        data = buf.getvalue()
    else:
        out = io.StringIO(newline="")
        if fmt in ("csv", "tsv"):
            writer = csv.DictWriter(out, fieldnames=columns, delimiter="," if fmt == "csv" else "\t",
                                    lineterminator="\n", extrasaction="ignore")
            writer.writeheader()
            writer.writerows({c: ("" if r.get(c) is None else r.get(c)) for c in columns} for r in rows)
        elif fmt == "txt":
            if len(columns) != 1:
                raise ConfigError("make-triplets.output", f"a .txt file holds one column, not {columns}")
            out.writelines(clean_text(r.get(columns[0], "")) + "\n" for r in rows)
        else:
            out.writelines(json.dumps({c: r.get(c) for c in columns}, ensure_ascii=False) + "\n" for r in rows)
        data = out.getvalue().encode("utf-8")
    if gz:
        data = gzip.compress(data, mtime=0)  # mtime=0: same rows -> same bytes
    write_output_bytes(path, data, s3)
    return len(rows)


def write_output_bytes(path: str, data: bytes, s3: S3Options | None) -> None:
    if is_s3(path):
        bucket, key = split_s3(path)
        (s3 or S3Options()).boto3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def read_triplets(
    path: str,
    columns: Sequence[str] = TRIPLET_COLUMNS,
    *,
    source_column: str | None = SOURCE_COLUMN,
    default_source: str = "",
    s3: S3Options | None = None,
) -> list[Triplet]:
    """Triplets from a table with the given (anchor, positive, hard negative) columns; `source` from
    source_column when the file has it, else default_source."""
    rows = read_table(path, s3=s3)
    if rows:
        missing = [c for c in columns if c not in rows[0]]
        if missing:
            raise InputError(f"{path} has no column(s) {missing} (columns: {list(rows[0])}); "
                             "name the triplet columns with --in-columns")
    a, p, n = columns
    return [Triplet(clean_text(r.get(a)), clean_text(r.get(p)), clean_text(r.get(n)),
                    clean_text(r.get(source_column)) if source_column and r.get(source_column) else default_source)
            for r in rows]


def write_triplets(
    rows: Iterable[Triplet],
    path: str,
    columns: Sequence[str] = TRIPLET_COLUMNS,
    *,
    source_column: str | None = SOURCE_COLUMN,
    s3: S3Options | None = None,
) -> int:
    """Write triplets with the trainer's columns (sent0, sent1, hard_neg, source by default). Each text is written
    on one line (whitespace collapsed): the trainer's CSV reader (pyarrow) does not accept line breaks in fields."""
    if len(columns) != 3:
        raise ConfigError("make-triplets.columns", f"give three column names, got {list(columns)}")
    names = [*columns, source_column] if source_column else list(columns)
    return write_table((dict(zip(names, map(clean_text, r), strict=False)) for r in rows), path, columns=names, s3=s3)


def read_sentences(path: str, column: str | None = None, *, group_column: str | None = None,
                   s3: S3Options | None = None) -> tuple[list[str], list[Any] | None]:
    """One text column of a table (and optionally a group column): `column` or the first of text, narration,
    narration_text, sentence, caption, txt present."""
    rows = read_table(path, s3=s3)
    if not rows:
        return [], [] if group_column else None
    names = list(rows[0])
    if column is None:
        column = next((c for c in ("text", "narration", "narration_text", "sentence", "caption", "txt")
                       if c in names), None)
        if column is None:
            raise InputError(f"{path}: which column holds the sentences? columns: {names}; pass --text-column")
    for c in (column, group_column):
        if c is not None and c not in names:
            raise InputError(f"{path} has no column {c!r} (columns: {names})")
    texts = [clean_text(r.get(column)) for r in rows]
    return texts, ([r.get(group_column) for r in rows] if group_column else None)
