"""Readers that turn public benchmark file layouts into plain dataclasses for :mod:`tara_batch.eval.metrics`.

Every reader takes the benchmark file's path (local path or ``s3://`` URI, read through
:func:`tara_batch.io.reads.read_bytes`) and an optional ``media_root`` (local directory or ``s3://`` prefix) that
relative video paths are resolved against: joined with ``"/"`` for S3 and :func:`os.path.join` for local roots.
Absolute paths and ``s3://`` URIs in a file are kept as they are; with ``media_root=None`` values are used as given.
Nothing here checks that a video exists, and no embeddings are computed: outputs are lists of strings/ints/floats
aligned so they can be fed straight into the metric helpers (``cia_metrics``, ``rtime_binary``, ``negbench``,
``covr_metrics``, ``retrieval_report``).

Bad input raises :class:`tara_batch.errors.InputError` naming the file, the missing column and the columns found.
CSV files are comma-separated (``.tsv`` files tab-separated), UTF-8 with an optional BOM; header names are stripped.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from tara_batch.errors import InputError
from tara_batch.io.reads import read_bytes
from tara_batch.io.s3 import S3Options
from tara_batch.io.uris import is_s3

__all__ = [
    "CharadesSTABenchmark",
    "CiABenchmark",
    "CoVRBenchmark",
    "NegBenchBenchmark",
    "RTimeBenchmark",
    "read_charades_sta",
    "read_cia",
    "read_covr",
    "read_negbench",
    "read_rtime",
    "resolve_media",
]

CIA_TEXT_COLUMNS = ("text", "caption", "sentence", "label_text")

CIA_PATH_COLUMNS = ("video_path", "path")

VIDEO_COLUMNS = ("video", "video_path", "filepath", "path", "video_id")

CAPTION_COLUMNS = ("caption", "captions", "text", "sentence")


def resolve_media(media_root: str | None, rel: str) -> str:
    """``rel`` resolved against ``media_root`` (no existence check).

    Absolute local paths and ``s3://`` URIs are returned unchanged; ``media_root=None`` returns ``rel`` unchanged.
    S3 roots are joined with a single ``"/"``; local roots with :func:`os.path.join`.
    """
    rel = rel.strip()
    if not rel:
        raise InputError("empty video path")
    if media_root is None or is_s3(rel) or os.path.isabs(rel):
        return rel
    if is_s3(media_root):
        return media_root.rstrip("/") + "/" + rel.lstrip("/")
    return os.path.join(media_root, rel)


def read_file_text(path: str, s3: S3Options | None) -> str:
    try:
        data = read_bytes(path, s3=s3)
    except FileNotFoundError as exc:
        raise InputError(f"benchmark file not found: {path}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc})") from exc


def read_csv_rows(path: str, s3: S3Options | None) -> tuple[list[str], list[dict[str, str]]]:
    text = read_file_text(path, s3)
    delim = "\t" if path.lower().endswith(".tsv") else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    rows = [r for r in reader if any(c.strip() for c in r)]
    if not rows:
        raise InputError(f"{path}: empty file (expected a CSV header row)")
    header = [h.strip() for h in rows[0]]
    out = []
    for n, r in enumerate(rows[1:], start=2):
        if len(r) > len(header):
            raise InputError(f"{path}: row {n} has {len(r)} fields but the header has {len(header)}")
        out.append({h: (r[i].strip() if i < len(r) else "") for i, h in enumerate(header)})
    if not out:
        raise InputError(f"{path}: no data rows")
    return header, out


def pick_column(header: Sequence[str], given: str | None, candidates: Sequence[str], path: str, what: str) -> str:
    """The column to use: ``given`` if set (must exist), else the first of ``candidates`` present."""
    if given is not None:
        if given in header:
            return given
        label = f"{what} column" if what else "column"
        raise InputError(f"{path}: missing {label} {given!r}; columns found: {list(header)}")
    for c in candidates:
        if c in header:
            return c
    raise InputError(
        f"{path}: missing {what} column (looked for {list(candidates)}; pass it explicitly); "
        f"columns found: {list(header)}"
    )


def _cell(row: dict[str, str], col: str, path: str, n: int) -> str:
    v = row.get(col, "")
    if not v:
        raise InputError(f"{path}: row {n} has an empty {col!r} value")
    return v


def _with_ext(name: str, ext: str) -> str:
    """Append ``ext`` when ``name`` has no extension (ids such as WebVid's numeric ones)."""
    return name if os.path.splitext(name)[1] else f"{name}{ext}"


def _caption_list(value: str) -> list[str]:
    """A caption cell: one caption, or a JSON/Python list literal of captions (NegBench's ``captions``)."""
    v = value.strip()
    if v.startswith("[") and v.endswith("]"):
        try:
            parsed = json.loads(v)
        except ValueError:
            try:
                parsed = ast.literal_eval(v)
            except (ValueError, SyntaxError):
                return [v]
        if isinstance(parsed, list) and all(isinstance(x, str) for x in parsed):
            return [x.strip() for x in parsed if x.strip()]
    return [v] if v else []


@dataclass
class CiABenchmark:
    """Chirality in Action. ``text_ids[i]``/``texts[i]``: unique text queries (first-seen order);
    ``video_uris[g]`` depicts ``video_text_ids[g]``; ``video_ids[g]`` is the CSV ``id``.
    ``chiral_pairs[t]`` = ``f"{triplet}_{1 - label}"`` (the opposite text id, whether or not it occurs in the file,
    matching ``metrics.cia_galleries``' defaults); ``labels[t]`` = chiral_label of every text id in the file."""

    text_ids: list[str]
    texts: list[str]
    video_ids: list[str]
    video_uris: list[str]
    video_text_ids: list[str]
    chiral_pairs: dict[str, str]
    labels: dict[str, int]
    groups: dict[str, str] = field(default_factory=dict)  # text id -> optional `group` column (per-group scores)


def _label01(value: str, path: str, n: int, col: str) -> int:
    try:
        f = float(value)
    except ValueError:
        f = -1.0
    if f not in (0.0, 1.0):
        raise InputError(f"{path}: row {n} has {col}={value!r}; expected 0 or 1")
    return int(f)


def read_cia(
    path: str,
    media_root: str | None = None,
    *,
    text_col: str | None = None,
    id_col: str = "id",
    triplet_col: str = "chiral_triplet_id",
    label_col: str = "chiral_label",
    path_col: str | None = None,
    ext: str = ".mp4",
    s3: S3Options | None = None,
) -> CiABenchmark:
    """Read a CiA CSV. ``text_col=None`` picks the first of ``text``, ``caption``, ``sentence``, ``label_text``.

    Video file = ``f"{id}{ext}"`` under ``media_root``, unless a path column (``path_col``, or auto-detected
    ``video_path``/``path``) has a non-empty value for the row, which is used instead (resolved the same way).
    A text id whose rows disagree on the text is an error.
    """
    header, rows = read_csv_rows(path, s3)
    tcol = pick_column(header, text_col, CIA_TEXT_COLUMNS, path, "text")
    for c in (id_col, triplet_col, label_col):
        pick_column(header, c, (), path, "")
    pcol = path_col if path_col is not None else next((c for c in CIA_PATH_COLUMNS if c in header), None)
    if pcol is not None:
        pick_column(header, pcol, (), path, "video path")
    texts: dict[str, str] = {}
    labels: dict[str, int] = {}
    groups: dict[str, str] = {}
    gcol = "group" if "group" in header else None
    pairs: dict[str, str] = {}
    vids, uris, vtids = [], [], []
    for n, row in enumerate(rows, start=2):
        trip = _cell(row, triplet_col, path, n)
        lab = _label01(_cell(row, label_col, path, n), path, n, label_col)
        tid = f"{trip}_{lab}"
        text = _cell(row, tcol, path, n)
        if texts.setdefault(tid, text) != text:
            raise InputError(f"{path}: row {n}: text id {tid!r} has two texts: {texts[tid]!r} and {text!r}")
        labels[tid] = lab
        pairs[tid] = f"{trip}_{1 - lab}"
        if gcol and row.get(gcol):
            groups[tid] = row[gcol]
        vid = _cell(row, id_col, path, n)
        rel = row.get(pcol, "") if pcol else ""
        vids.append(vid)
        uris.append(resolve_media(media_root, rel or f"{vid}{ext}"))
        vtids.append(tid)
    return CiABenchmark(list(texts), list(texts.values()), vids, uris, vtids, pairs, labels, groups)


@dataclass
class RTimeBenchmark:
    """RTime binary: row i = (forward video, reversed video, forward caption, reverse caption or None)."""

    video_uris: list[str]
    reverse_video_uris: list[str]
    captions: list[str]
    reverse_captions: list[str] | None


def read_rtime(
    path: str,
    media_root: str | None = None,
    *,
    video_col: str = "video",
    reverse_video_col: str = "reverse_video",
    caption_col: str = "caption",
    reverse_caption_col: str | None = "reverse_caption",
    ext: str = ".mp4",
    s3: S3Options | None = None,
) -> RTimeBenchmark:
    """Read an RTime binary CSV. ``reverse_caption_col=None`` skips reverse captions (then only T2V is scored).
    Video values without an extension get ``ext`` appended."""
    header, rows = read_csv_rows(path, s3)
    cols = [video_col, reverse_video_col, caption_col] + ([reverse_caption_col] if reverse_caption_col else [])
    for c in cols:
        pick_column(header, c, (), path, "")
    fwd, rev, cap, rcap = [], [], [], []
    for n, row in enumerate(rows, start=2):
        fwd.append(resolve_media(media_root, _with_ext(_cell(row, video_col, path, n), ext)))
        rev.append(resolve_media(media_root, _with_ext(_cell(row, reverse_video_col, path, n), ext)))
        cap.append(_cell(row, caption_col, path, n))
        if reverse_caption_col:
            rcap.append(_cell(row, reverse_caption_col, path, n))
    return RTimeBenchmark(fwd, rev, cap, rcap if reverse_caption_col else None)


@dataclass
class NegBenchBenchmark:
    """NegBench text->video: gallery = unique videos (standard file order); query i = (``standard_captions[i]``,
    ``negated_captions[i]``), both targeting ``gallery_uris[target_index[i]]``."""

    gallery_uris: list[str]
    standard_captions: list[str]
    negated_captions: list[str]
    target_index: list[int]


def _captions_by_video(
    path: str, video_col: str | None, caption_col: str | None, s3: S3Options | None
) -> dict[str, list[str]]:
    header, rows = read_csv_rows(path, s3)
    vcol = pick_column(header, video_col, VIDEO_COLUMNS, path, "video")
    ccol = pick_column(header, caption_col, CAPTION_COLUMNS, path, "caption")
    out: dict[str, list[str]] = {}
    for n, row in enumerate(rows, start=2):
        caps = _caption_list(_cell(row, ccol, path, n))
        if not caps:
            raise InputError(f"{path}: row {n} has no caption in {ccol!r}")
        out.setdefault(_cell(row, vcol, path, n), []).extend(caps)
    return out


def read_negbench(
    standard_path: str,
    negated_path: str,
    media_root: str | None = None,
    *,
    video_col: str | None = None,
    caption_col: str | None = None,
    negated_video_col: str | None = None,
    negated_caption_col: str | None = None,
    ext: str = "",
    s3: S3Options | None = None,
) -> NegBenchBenchmark:
    """Read NegBench standard + negated caption CSVs and align them by video.

    Columns default to the first present of ``video``/``video_path``/``filepath``/``path``/``video_id`` and
    ``caption``/``captions``/``text``/``sentence`` (``negated_*`` default to the standard file's choices' rules).
    A caption cell may hold a list literal (``"['a', 'b']"``): each element is one query. Repeated video rows are
    concatenated. Every video needs the same number of captions in both files (the k-th standard caption is paired
    with the k-th negated one); a mismatch is an InputError.
    """
    std = _captions_by_video(standard_path, video_col, caption_col, s3)
    neg = _captions_by_video(negated_path, negated_video_col or video_col, negated_caption_col or caption_col, s3)
    only_std = [v for v in std if v not in neg]
    only_neg = [v for v in neg if v not in std]
    if only_std or only_neg:
        raise InputError(
            f"NegBench files do not cover the same videos: {len(only_std)} only in {standard_path} "
            f"(e.g. {only_std[:3]}), {len(only_neg)} only in {negated_path} (e.g. {only_neg[:3]})"
        )
    gallery, s_caps, n_caps, target = [], [], [], []
    for g, (video, caps) in enumerate(std.items()):
        if len(caps) != len(neg[video]):
            raise InputError(
                f"NegBench video {video!r}: {len(caps)} captions in {standard_path} but {len(neg[video])} "
                f"in {negated_path}"
            )
        gallery.append(resolve_media(media_root, _with_ext(video, ext) if ext else video))
        s_caps.extend(caps)
        n_caps.extend(neg[video])
        target.extend([g] * len(caps))
    return NegBenchBenchmark(gallery, s_caps, n_caps, target)


@dataclass
class CoVRBenchmark:
    """Composed video retrieval: query i = (``source_uris[i]``, ``edits[i]``); target =
    ``gallery_uris[target_index[i]]`` (gallery = unique target videos, first-seen order). Captions are None when
    the file has no ``txt1``/``txt2`` columns."""

    source_uris: list[str]
    edits: list[str]
    gallery_uris: list[str]
    target_index: list[int]
    source_captions: list[str] | None = None
    target_captions: list[str] | None = None


def read_covr(
    path: str,
    media_root: str | None = None,
    *,
    source_col: str = "video1",
    target_col: str = "video2",
    edit_col: str = "edit",
    source_caption_col: str = "txt1",
    target_caption_col: str = "txt2",
    ext: str = ".mp4",
    s3: S3Options | None = None,
) -> CoVRBenchmark:
    """Read a WebVid-CoVR CSV. Video values without an extension get ``ext`` appended; caption columns are
    optional (read when present)."""
    header, rows = read_csv_rows(path, s3)
    for c in (source_col, target_col, edit_col):
        pick_column(header, c, (), path, "")
    has_caps = source_caption_col in header and target_caption_col in header
    src, edits, tgt_idx, gallery = [], [], [], {}
    s_caps: list[str] = []
    t_caps: list[str] = []
    for n, row in enumerate(rows, start=2):
        src.append(resolve_media(media_root, _with_ext(_cell(row, source_col, path, n), ext)))
        tgt = resolve_media(media_root, _with_ext(_cell(row, target_col, path, n), ext))
        tgt_idx.append(gallery.setdefault(tgt, len(gallery)))
        edits.append(_cell(row, edit_col, path, n))
        if has_caps:
            s_caps.append(row[source_caption_col])
            t_caps.append(row[target_caption_col])
    return CoVRBenchmark(src, edits, list(gallery), tgt_idx, s_caps if has_caps else None, t_caps if has_caps else None)


@dataclass
class CharadesSTABenchmark:
    """Charades-STA moments: row i = (``video_uris[i]``, ``starts[i]``, ``ends[i]``, ``sentences[i]``) seconds."""

    video_ids: list[str]
    video_uris: list[str]
    starts: list[float]
    ends: list[float]
    sentences: list[str]


def read_charades_sta(
    path: str, media_root: str | None = None, *, ext: str = ".mp4", s3: S3Options | None = None
) -> CharadesSTABenchmark:
    """Read Charades-STA annotations: ``AO8RW 0.0 6.9##a person ...`` (official) or whitespace-separated
    ``AO8RW 0.0 6.9 a person ...``. Blank lines are skipped; ``start > end`` is an error."""
    vids, uris, starts, ends, sents = [], [], [], [], []
    for n, line in enumerate(read_file_text(path, s3).splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if "##" in line:
            head, _, sentence = line.partition("##")
            parts = head.split()
        else:
            parts = line.split(maxsplit=3)
            sentence = parts[3] if len(parts) == 4 else ""
            parts = parts[:3]
        sentence = sentence.strip()
        if len(parts) != 3 or not sentence:
            raise InputError(
                f"{path}: line {n} is not 'video_id start end##sentence' or 'video_id start end sentence': {line!r}"
            )
        try:
            start, end = float(parts[1]), float(parts[2])
        except ValueError as exc:
            raise InputError(f"{path}: line {n}: start/end are not numbers: {line!r}") from exc
        if start > end:
            raise InputError(f"{path}: line {n}: start {start} > end {end}")
        vids.append(parts[0])
        uris.append(resolve_media(media_root, _with_ext(parts[0], ext)))
        starts.append(start)
        ends.append(end)
        sents.append(sentence)
    if not vids:
        raise InputError(f"{path}: no annotations")
    return CharadesSTABenchmark(vids, uris, starts, ends, sents)
