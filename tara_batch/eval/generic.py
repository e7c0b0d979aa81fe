"""The generic benchmark layout: your own queries (texts or videos), gallery and relevance, as CSV / JSON / JSONL.

Same conventions as the paper readers in `benchmarks.py` (paths resolved against `media_root`, InputError naming the
file and the columns found).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from tara_batch.errors import InputError
from tara_batch.eval.benchmarks import pick_column, read_csv_rows, read_file_text, resolve_media
from tara_batch.io.s3 import S3Options


@dataclass
class GenericBenchmark:
    """A user's own retrieval benchmark. Query i has id ``query_ids[i]`` and either ``query_texts[i]`` or
    ``query_uris[i]`` (the other is None); gallery item g has ``gallery_ids[g]`` and ``gallery_uris[g]`` (or
    ``gallery_texts[g]``). ``relevant[i]`` = sorted gallery indices relevant to query i, ready for
    ``metrics.retrieval_report(..., relevant)`` / ``mean_average_precision``."""

    query_ids: list[str]
    query_texts: list[str | None]
    query_uris: list[str | None]
    gallery_ids: list[str]
    gallery_uris: list[str | None]
    relevant: list[list[int]]
    gallery_texts: list[str | None] = field(default_factory=list)


def _records(path: str, s3: S3Options | None) -> tuple[list[str], list[dict[str, Any]]]:
    """Rows of a CSV/TSV, JSON (list of objects) or JSONL file, plus the union of their keys."""
    low = path.lower()
    if low.endswith((".csv", ".tsv")):
        header, rows = read_csv_rows(path, s3)
        return header, [dict(r) for r in rows]
    text = read_file_text(path, s3)
    try:
        if low.endswith((".jsonl", ".ndjson")):
            recs = [json.loads(ln) for ln in text.splitlines() if ln.strip()]
        elif low.endswith(".json"):
            recs = json.loads(text)
        else:
            raise InputError(f"{path}: unknown manifest format (use .csv, .tsv, .json or .jsonl)")
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: invalid JSON ({exc})") from exc
    if not isinstance(recs, list) or not all(isinstance(r, dict) for r in recs):
        raise InputError(f"{path}: expected a list of JSON objects")
    keys = list(dict.fromkeys(k for r in recs for k in r))
    return keys, recs


def _str(v: Any) -> str | None:
    if v is None:
        return None
    s = str(v).strip()
    return s or None


def _id_items(
    recs: list[dict[str, Any]], keys: list[str], path: str, id_col: str, what: str, media_root: str | None
) -> tuple[list[str], list[str | None], list[str | None], list[dict[str, Any]]]:
    pick_column(keys, id_col, (), path, f"{what} id")
    if "text" not in keys and "uri" not in keys:
        raise InputError(f"{path}: missing {what} column 'text' or 'uri'; columns found: {keys}")
    ids, texts, uris, seen = [], [], [], set()
    for n, r in enumerate(recs, start=1):
        rid = _str(r.get(id_col))
        text, uri = _str(r.get("text")), _str(r.get("uri"))
        if rid is None:
            raise InputError(f"{path}: {what} record {n} has no {id_col!r}")
        if rid in seen:
            raise InputError(f"{path}: duplicate {what} id {rid!r}")
        if (text is None) == (uri is None):
            raise InputError(f"{path}: {what} {rid!r} needs exactly one of 'text' or 'uri'")
        seen.add(rid)
        ids.append(rid)
        texts.append(text)
        uris.append(resolve_media(media_root, uri) if uri is not None else None)
    return ids, texts, uris, recs


def _relevant_flag(v: Any) -> bool:
    if v is None or v == "":
        return True
    try:
        return float(v) > 0
    except (TypeError, ValueError):
        return True


def read_generic(
    queries: str,
    gallery: str | None = None,
    relevance: str | None = None,
    media_root: str | None = None,
    *,
    query_id_col: str = "query_id",
    item_id_col: str = "item_id",
    drop_unjudged: bool = False,
    s3: S3Options | None = None,
) -> GenericBenchmark:
    """Read a generic retrieval benchmark.

    Either three files (``queries``, ``gallery``, ``relevance``; each .csv/.tsv/.json/.jsonl) or one file:
    a JSON object ``{"queries": [...], "gallery": [...], "relevance": [...]}`` or a JSONL whose records carry
    ``"type": "query" | "gallery" | "relevance"``. Queries: ``query_id`` + ``text`` or ``uri``; gallery:
    ``item_id`` + ``uri`` (or ``text``); relevance: ``query_id`` + ``item_id`` (+ optional ``relevance``/``score``,
    rows with a value <= 0 are not relevant, TREC-qrels style). A query record may also list its relevant item
    ids under ``relevant`` (a list or one id). Unknown ids in relevance are errors; queries without any relevant
    item are errors unless ``drop_unjudged`` (then they are dropped).
    """
    if (gallery is None) != (relevance is None):
        raise InputError("generic benchmark: pass both gallery and relevance files, or one combined file")
    if gallery is None:
        q_keys, q_recs, g_keys, g_recs, r_keys, r_recs = _combined(queries, s3)
        q_path = g_path = r_path = queries
    else:
        q_keys, q_recs = _records(queries, s3)
        g_keys, g_recs = _records(gallery, s3)
        r_keys, r_recs = _records(relevance, s3)
        q_path, g_path, r_path = queries, gallery, relevance
    qids, qtexts, quris, _ = _id_items(q_recs, q_keys, q_path, query_id_col, "query", media_root)
    gids, gtexts, guris, _ = _id_items(g_recs, g_keys, g_path, item_id_col, "gallery", media_root)
    qpos = {q: i for i, q in enumerate(qids)}
    gpos = {g: i for i, g in enumerate(gids)}
    rel: list[set[int]] = [set() for _ in qids]

    def add(q: str | None, g: str | None, where: str) -> None:
        if q not in qpos:
            raise InputError(f"{where}: unknown query id {q!r}")
        if g not in gpos:
            raise InputError(f"{where}: unknown gallery item id {g!r}")
        rel[qpos[q]].add(gpos[g])

    for r in q_recs:
        extra = r.get("relevant")
        if extra not in (None, ""):
            for g in extra if isinstance(extra, list) else [extra]:
                add(_str(r.get(query_id_col)), _str(g), f"{q_path}: query 'relevant'")
    if r_recs:
        pick_column(r_keys, query_id_col, (), r_path, "relevance query id")
        pick_column(r_keys, item_id_col, (), r_path, "relevance item id")
    score_col = next((c for c in ("relevance", "score") if c in r_keys), None)
    for r in r_recs:
        if score_col is None or _relevant_flag(r.get(score_col)):
            add(_str(r.get(query_id_col)), _str(r.get(item_id_col)), r_path)
    empty = [q for q, s in zip(qids, rel, strict=True) if not s]
    if empty and not drop_unjudged:
        raise InputError(
            f"{r_path}: {len(empty)} queries have no relevant gallery item (e.g. {empty[:5]}); "
            "add relevance rows or pass drop_unjudged=True"
        )
    keep = [i for i, s in enumerate(rel) if s]
    if not keep:
        raise InputError(f"{r_path}: no query has a relevant gallery item")
    return GenericBenchmark(
        [qids[i] for i in keep],
        [qtexts[i] for i in keep],
        [quris[i] for i in keep],
        gids,
        guris,
        [sorted(rel[i]) for i in keep],
        gtexts,
    )


def _combined(path: str, s3: S3Options | None):
    low = path.lower()
    if low.endswith((".jsonl", ".ndjson")):
        _, recs = _records(path, s3)
        parts: dict[str, list[dict[str, Any]]] = {"query": [], "gallery": [], "relevance": []}
        for n, r in enumerate(recs, start=1):
            kind = r.get("type")
            if kind not in parts:
                raise InputError(f"{path}: record {n} has type {kind!r}; expected 'query', 'gallery' or 'relevance'")
            parts[kind].append({k: v for k, v in r.items() if k != "type"})
        q, g, rel = parts["query"], parts["gallery"], parts["relevance"]
    elif low.endswith(".json"):
        try:
            obj = json.loads(read_file_text(path, s3))
        except json.JSONDecodeError as exc:
            raise InputError(f"{path}: invalid JSON ({exc})") from exc
        if not isinstance(obj, dict):
            raise InputError(f"{path}: expected a JSON object with 'queries', 'gallery', 'relevance'")
        missing = [k for k in ("queries", "gallery") if k not in obj]
        if missing:
            raise InputError(f"{path}: missing key(s) {missing}; keys found: {list(obj)}")
        q, g, rel = obj["queries"], obj["gallery"], obj.get("relevance", [])
        if not all(isinstance(x, list) and all(isinstance(r, dict) for r in x) for x in (q, g, rel)):
            raise InputError(f"{path}: 'queries', 'gallery' and 'relevance' must be lists of objects")
    else:
        raise InputError(f"{path}: a single-file generic benchmark must be .json or .jsonl")
    if not q or not g:
        raise InputError(f"{path}: needs at least one query and one gallery record")

    def keys(recs: list[dict[str, Any]]) -> list[str]:
        return list(dict.fromkeys(k for r in recs for k in r))

    return keys(q), q, keys(g), g, keys(rel), rel
