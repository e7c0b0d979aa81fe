"""Manifests: a CSV / TSV / Parquet / JSON(L) / TXT file of video URIs (local or s3://) read into a listing table.

Relative entries resolve against the manifest's own folder; missing sizes and ETags are filled by a stat/HEAD in a
small thread pool; duplicates are dropped.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import posixpath
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from tara_batch.errors import ConfigError, InputError
from tara_batch.io.listing import rows_to_table, stat_object
from tara_batch.io.reads import read_bytes
from tara_batch.io.s3 import BUCKET_ERROR_CODES, S3Options, client_error_code, s3_or_default
from tara_batch.io.uris import canonical_uri, is_s3, split_s3
from tara_batch.schema import ETAG, SIZE, URI

log = logging.getLogger(__name__)

if TYPE_CHECKING:  # boto3/pyarrow.fs are imported lazily: local-only runs and `--help` should not pay for them
    import pyarrow.fs


_MANIFEST_FORMATS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "json",
    ".ndjson": "json",
    ".json": "json",
    ".txt": "txt",
}


def _looks_like_path(s: str) -> bool:
    return "/" in s or "\\" in s or bool(re.search(r"\.[A-Za-z0-9]{1,5}$", s))


def _parse_manifest(data: bytes, fmt: str, path: str) -> dict[str, list[Any]]:
    """Manifest bytes -> columns as Python lists (manifests are small next to the videos they list)."""
    try:
        if fmt in ("csv", "tsv"):
            from pyarrow import csv as pacsv

            delimiter = "\t" if fmt == "tsv" else ","
            parse = pacsv.ParseOptions(delimiter=delimiter)
            # Every column as a string: type inference would turn a file named "007" into the integer 7 and
            # all-digit etags into numbers. Sizes are converted by us, blanks included.
            first_line = data.split(b"\n", 1)[0].decode("utf-8-sig").rstrip("\r")
            names = next(csv.reader([first_line], delimiter=delimiter), [])
            if len(names) == 1 and _looks_like_path(names[0]):
                # A header-less single-column file: its first line is a URI, not a column name.
                read = pacsv.ReadOptions(column_names=[URI])
                names = [URI]
            else:
                read = pacsv.ReadOptions()
            convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names})
            table = pacsv.read_csv(io.BytesIO(data), parse_options=parse, read_options=read, convert_options=convert)
            return table.to_pydict()
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return pq.read_table(io.BytesIO(data)).to_pydict()
        if fmt == "txt":
            lines = [ln.strip() for ln in data.decode("utf-8").splitlines()]
            return {URI: [ln for ln in lines if ln and not ln.startswith("#")]}
        # JSON: a JSON array, or JSON Lines; records may be objects or bare strings.
        text = data.decode("utf-8")
        stripped = text.lstrip()
        if stripped.startswith("["):
            records = json.loads(stripped)
        else:
            records = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
        cols: dict[str, list[Any]] = {}
        for i, rec in enumerate(records):
            if isinstance(rec, str):
                rec = {URI: rec}
            if not isinstance(rec, dict):
                raise InputError(f"manifest {path}: record {i} is {type(rec).__name__}, expected an object or string")
            for k in rec.keys() - cols.keys():
                cols[k] = [None] * i
            for k, col in cols.items():
                col.append(rec.get(k))
        return cols
    except InputError:
        raise
    except (pa.ArrowInvalid, ValueError, UnicodeDecodeError) as e:
        raise InputError(f"cannot parse manifest {path} as {fmt}: {e}") from e


def _resolve_entry(entry: str, base: str) -> str:
    """A manifest entry -> canonical URI. Relative entries are relative to the manifest's own folder."""
    if is_s3(entry) or entry[:7].lower() == "file://" or os.path.isabs(entry) or entry.startswith("~"):
        return canonical_uri(entry)
    if is_s3(base):
        rel = entry[2:] if entry.startswith("./") else entry
        if rel.startswith("../") or "/../" in rel:
            raise InputError(f"relative entry {entry!r} in an S3 manifest may not climb with '..'")
        return base + rel
    return canonical_uri(os.path.join(base, entry))


def read_manifest(
    path: str,
    *,
    s3: S3Options | None = None,
    column: str = "uri",
    on_missing: Literal["error", "skip", "keep"] = "error",
    stat: bool = True,
    max_workers: int = 16,
) -> pa.Table:
    """Read a manifest of video URIs into a ``listing_schema()`` table, in manifest order.

    Format by extension: .csv, .tsv, .parquet/.pq, .jsonl/.ndjson/.json (JSON Lines or a JSON array; records are
    objects or bare strings), .txt (one URI per line, ``#`` comments). The manifest itself may be local or s3://.
    The URI column is ``column``, else ``path`` (when ``column`` is the default), else the only column.
    Relative entries resolve against the manifest's folder (local or S3). Optional ``size``/``etag`` columns are
    used when present; missing values are filled by a stat/HEAD in a small thread pool (``stat=False`` skips that,
    leaving them null). Duplicate URIs are dropped (first kept, logged).
    on_missing: listed objects that do not exist -> "error" (InputError naming them), "skip", or "keep" with null
    size/etag (the fetch stage then records them as failures).
    """
    if on_missing not in ("error", "skip", "keep"):
        raise ConfigError("on_missing", f"must be 'error', 'skip' or 'keep', got {on_missing!r}")
    opts = s3_or_default(s3)
    lower = path.lower()
    fmt = next((f for ext, f in _MANIFEST_FORMATS.items() if lower.endswith(ext)), None)
    if fmt is None:
        raise InputError(f"manifest {path}: unknown format; use one of {', '.join(_MANIFEST_FORMATS)}")

    if is_s3(path):
        bucket, key = split_s3(path)
        import botocore.exceptions

        try:
            data = read_bytes(path, s3=opts)
        except FileNotFoundError as e:
            raise InputError(f"manifest {path} does not exist") from e
        except botocore.exceptions.ClientError as e:
            if client_error_code(e) in BUCKET_ERROR_CODES:
                raise InputError(f"cannot read manifest {path} ({client_error_code(e)}): {e}") from e
            raise
        base = f"s3://{bucket}/{posixpath.dirname(key)}"
        base = base if base.endswith("/") else base + "/"
    else:
        local = Path(canonical_uri(path))
        if not local.is_file():
            raise InputError(f"manifest {path} does not exist or is not a file (resolved to {local})")
        data = local.read_bytes()
        base = str(local.parent)

    cols = _parse_manifest(data, fmt, path)
    names = list(cols)
    if column in cols:
        col = column
    elif column == "uri" and "path" in cols:
        col = "path"
    elif len(names) == 1:
        col = names[0]
    else:
        raise InputError(f"manifest {path} has no column {column!r} (columns found: {names}); pass column=...")

    entries = cols[col]
    sizes_in = cols.get(SIZE) if col != SIZE else None
    etags_in = cols.get(ETAG) if col != ETAG else None
    uris: list[str] = []
    sizes: list[int | None] = []
    etags: list[str | None] = []
    seen: set[str] = set()
    blanks = dups = 0
    for i, entry in enumerate(entries):
        if entry is None or not str(entry).strip():
            blanks += 1
            continue
        uri = _resolve_entry(str(entry).strip(), base)
        if uri in seen:
            dups += 1
            continue
        seen.add(uri)
        uris.append(uri)
        size = sizes_in[i] if sizes_in is not None else None
        try:
            sizes.append(int(size) if size is not None and str(size).strip() != "" else None)
        except ValueError as e:
            raise InputError(f"manifest {path}: row {i} has a non-integer size {size!r}") from e
        etag = etags_in[i] if etags_in is not None else None
        etags.append(str(etag).strip('"') if etag is not None and str(etag) != "" else None)
    if blanks:
        log.warning("manifest %s: ignored %d blank entries", path, blanks)
    if dups:
        log.warning("manifest %s: dropped %d duplicate URIs (kept the first occurrence)", path, dups)
    if not uris:
        raise InputError(f"manifest {path} lists no URIs (column {col!r})")

    todo = [i for i in range(len(uris)) if sizes[i] is None or etags[i] is None] if stat else []
    missing: list[int] = []
    if todo:
        t0 = time.monotonic()
        workers = max(1, min(max_workers, len(todo)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tara-stat") as pool:
            results = list(pool.map(lambda i: stat_object(uris[i], opts), todo))
        for i, res in zip(todo, results, strict=True):
            if res is None:
                missing.append(i)
                continue
            if sizes[i] is None:
                sizes[i] = res[0]
            if etags[i] is None:
                etags[i] = res[1]
        log.info("manifest %s: stat of %d objects in %.2fs", path, len(todo), time.monotonic() - t0)
    if missing:
        sample = ", ".join(uris[i] for i in missing[:5]) + (", ..." if len(missing) > 5 else "")
        if on_missing == "error":
            raise InputError(f"manifest {path}: {len(missing)} of {len(uris)} listed objects do not exist: {sample}")
        log.warning("manifest %s: %d listed objects do not exist (%s): %s", path, len(missing), on_missing, sample)
        if on_missing == "skip":
            drop = set(missing)
            keep = [i for i in range(len(uris)) if i not in drop]
            uris, sizes, etags = [uris[i] for i in keep], [sizes[i] for i in keep], [etags[i] for i in keep]
            if not uris:
                raise InputError(f"manifest {path}: none of the listed objects exist")
    return rows_to_table(zip(uris, sizes, etags, strict=True))
