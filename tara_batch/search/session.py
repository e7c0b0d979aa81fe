"""Search an embeddings table: text, a video (by example) or a video plus an edit (composed) -> videos or moments.

Queries are embedded with the checkpoint and profile recorded in the table's metadata, so a query always lives in
the same space as the rows it is compared with. A query video already in the table reuses its stored vector; any
other video (a URI, or uploaded bytes: decoded in a child process with a timeout, so a hostile file cannot take the
caller down) is decoded and embedded with the table's profile. A composed query embeds the source video's frames
with the edit under the profile's composed prompt (the CoVR prompt of tara-method.md section 1).

    s = SearchSession.open("./index.lancedb/videos")
    s.run(Query(kind="text", text="someone closes the door", k=10, filters=Filters(duration_min=2)))
    s.run(Query(kind="composed", video_id="3f2a...", text="make it go the other way"))

The CLI (`tara-batch search`) and the HTTP service (`tara_batch.serve`) are thin layers over `run`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from tara_batch import schema as S
from tara_batch.config import S3Config, build, parse_overrides
from tara_batch.errors import ConfigError, InputError
from tara_batch.index.ann import search
from tara_batch.index.catalog import resolve_table
from tara_batch.index.tables import TableRef, connect, read_metadata, table_exists
from tara_batch.io.reads import read_bytes
from tara_batch.io.s3 import S3Options
from tara_batch.io.uris import canonical_uri, video_id_for
from tara_batch.models.profile import ModelProfile
from tara_batch.search.filters import FilterError, Filters, sql_string

log = logging.getLogger(__name__)


KINDS = ("text", "video", "composed")
MAX_K = 100
MAX_OFFSET = 1000
MAX_TEXT = 1000
_VIDEO_ID = re.compile(r"^[0-9a-f]{32}$")
GROUP_FETCH = 8  # segment tables grouped by video: windows fetched per wanted video before grouping


class QueryError(InputError):
    """A query that cannot run as asked (bad kind, missing video, out-of-range k); the service answers 400."""


@dataclass(frozen=True)
class Query:
    """One search. `kind`: text (`text`), video (`video_id`, `video_uri` or `video_bytes`), or composed (a source
    video as for `video`, plus the edit instruction in `text`)."""

    kind: str = "text"
    text: str | None = None
    video_id: str | None = None
    video_uri: str | None = None
    video_bytes: bytes | None = None
    k: int = 10
    offset: int = 0
    filters: Filters = field(default_factory=Filters)
    group_by_video: bool = False  # segment tables: the best window of each video, one row per video

    def check(self) -> None:
        if self.kind not in KINDS:
            raise QueryError(f"unknown query kind {self.kind!r}; choose one of {list(KINDS)}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or not 1 <= self.k <= MAX_K:
            raise QueryError(f"k must be an integer in [1, {MAX_K}], got {self.k!r}")
        if isinstance(self.offset, bool) or not isinstance(self.offset, int) or not 0 <= self.offset <= MAX_OFFSET:
            raise QueryError(f"offset must be an integer in [0, {MAX_OFFSET}], got {self.offset!r}")
        if self.text is not None and (not isinstance(self.text, str) or len(self.text) > MAX_TEXT):
            raise QueryError(f"text must be a string of at most {MAX_TEXT} characters")
        if self.kind in ("text", "composed") and not (self.text or "").strip():
            raise QueryError(f"a {self.kind} query needs `text`" + (" (the edit instruction)"
                                                                    if self.kind == "composed" else ""))
        sources = sum(x is not None for x in (self.video_id, self.video_uri, self.video_bytes))
        if self.kind in ("video", "composed") and sources != 1:
            raise QueryError(f"a {self.kind} query needs exactly one of video_id, video_uri or an uploaded video")
        if self.kind == "text" and sources:
            raise QueryError("a text query takes no video; use kind=video or kind=composed")
        if self.video_id is not None and not _VIDEO_ID.match(str(self.video_id)):
            raise QueryError("video_id must be 32 lowercase hex characters (the id the index gave the video)")


@dataclass
class SearchResult:
    rows: list[dict[str, Any]]
    embed_ms: float
    search_ms: float
    cached: bool = False  # the query vector came from the text cache


@dataclass
class SearchSession:
    table: Any
    metadata: dict[str, Any]
    profile: ModelProfile
    s3: S3Options
    model_uri: str | None
    version: str | None = None
    _embedder: Any = None
    _lock: Any = field(default_factory=threading.Lock)  # one forward at a time: the embedder is not thread-safe
    _text_cache: OrderedDict = field(default_factory=OrderedDict)
    text_cache_size: int = 1024
    upload_timeout_s: float = 60.0
    refresh_s: float = 60.0  # re-read the table's latest version this often (new rows; never hold a removed one)
    _refreshed: float = field(default_factory=time.monotonic)

    @classmethod
    def open(cls, table_uri: str, *, model: str | None = None, overrides: list[str] | None = None,
             load_model: bool = True, version: str | None = None) -> SearchSession:
        """Open the live version of an index (or `version`); queries never see a version still being built."""
        tree = parse_overrides(overrides)
        unknown = sorted(set(tree) - {"s3"})
        if unknown:
            raise ConfigError(unknown[0], "search takes only s3.* settings; the model and profile come from the table")
        s3 = build(S3Config, tree.get("s3", {}), "s3.").options()
        ref = TableRef.parse(table_uri)
        db = connect(ref.db_uri, s3)
        name = resolve_table(ref.db_uri, ref.name, s3, version)
        if not table_exists(db, name):
            raise InputError(f"no table {name!r} in {ref.db_uri}")
        table = db.open_table(name)
        meta = read_metadata(table)
        profile = ModelProfile(**meta["profile"]) if meta.get("profile") else ModelProfile()
        session = cls(table, meta, profile, s3, model or meta.get("checkpoint", {}).get("path"),
                      version=meta.get("model_id"))
        if load_model and session.model_uri is None:
            raise ConfigError("--model", "the table records no checkpoint; pass --model")
        return session

    @property
    def segmented(self) -> bool:
        return S.SEGMENT_ID in self.table.schema.names

    @property
    def embedder(self):
        if self._embedder is None:
            from tara_batch.models.loader import EmbedderSpec

            # A few queries do not justify starting a vLLM engine (20-60 s): transformers, same vectors (tested).
            self._embedder = EmbedderSpec(self.model_uri, self.profile, backend="transformers", threads=None,
                                          s3=self.s3)()
        return self._embedder

    # --- query vectors ---

    def text_vector(self, text: str) -> tuple[np.ndarray, bool]:
        """(vector, from the cache?). The model is called once per distinct text while it stays in the LRU."""
        with self._lock:
            hit = self._text_cache.get(text)
            if hit is not None:
                self._text_cache.move_to_end(text)
                return hit, True
            vector = self.embedder.embed_texts([text])[0]
            self._text_cache[text] = vector
            if len(self._text_cache) > self.text_cache_size:
                self._text_cache.popitem(last=False)
            return vector, False

    def row(self, video_id: str) -> dict[str, Any] | None:
        """The table's metadata of one video (its first window in a segment table), None if not in the table."""
        if not _VIDEO_ID.match(video_id):
            return None
        cols = [S.VIDEO_ID, S.URI, S.SIZE, S.ETAG, S.DURATION, S.FPS, S.NUM_FRAMES, S.CREATED_AT]
        if self.segmented:
            cols += [S.SEGMENT_COUNT]
        hit = (self.table.search().where(f"{S.VIDEO_ID} = {sql_string(video_id)}").select(cols).limit(1)
               .to_arrow().to_pylist())
        return hit[0] if hit else None

    def _stored_vector(self, video_id: str) -> np.ndarray | None:
        if self.segmented:  # a segment table stores windows, not the whole video
            return None
        hit = (self.table.search().where(f"{S.VIDEO_ID} = {sql_string(video_id)}").select([S.EMBEDDING]).limit(1)
               .to_arrow())
        return np.asarray(hit.column(S.EMBEDDING)[0].as_py(), np.float32) if hit.num_rows else None

    def _frames(self, *, uri: str | None = None, data: bytes | None = None) -> np.ndarray:
        from tara_batch.video.frames import DecodeError
        from tara_batch.video.registry import get_sampler

        if data is None:
            data = read_bytes(uri, s3=self.s3)
            sampler = get_sampler(self.metadata.get("decode_backend", "pyav"))
        else:
            # Uploaded bytes are hostile until decoded: a child process, a timeout, so a crafted file fails alone.
            sampler = get_sampler("pyav", isolate=True, timeout_s=self.upload_timeout_s)
        try:
            return sampler.sample(data, self.profile.num_frames, self.profile.max_pixels).frames
        except DecodeError as exc:
            raise QueryError(f"cannot decode the query video{f' {uri}' if uri else ''}: {exc}") from exc
        finally:
            close = getattr(sampler, "close", None)
            if close is not None:
                close()

    def _source(self, q: Query) -> tuple[str | None, bytes | None]:
        """(uri, bytes) of the query video; a video_id resolves to its URI in the table (never a client path)."""
        if q.video_id is not None:
            row = self.row(q.video_id)
            if row is None:
                raise QueryError(f"video {q.video_id} is not in this index")
            return row[S.URI], None
        if q.video_uri is not None:
            return canonical_uri(q.video_uri), None
        return None, q.video_bytes

    def query_vector(self, q: Query) -> tuple[np.ndarray, bool]:
        if q.kind == "text":
            return self.text_vector(q.text or "")
        if q.kind == "video":
            vid = q.video_id or (video_id_for(q.video_uri) if q.video_uri else None)
            stored = self._stored_vector(vid) if vid else None
            if stored is not None:
                return stored, False
            uri, data = self._source(q)
            frames = self._frames(uri=uri, data=data)
            with self._lock:
                return self.embedder.embed_videos([frames])[0], False
        uri, data = self._source(q)  # composed: the frames themselves, the stored vector is not enough
        frames = self._frames(uri=uri, data=data)
        with self._lock:
            return self.embedder.embed_composed([frames], [q.text or ""])[0], False

    # --- search ---

    def refresh(self) -> None:
        """Move to the table's latest version (rows added since, and no old version held past its retention)."""
        if time.monotonic() - self._refreshed >= self.refresh_s:
            self._refreshed = time.monotonic()
            try:
                self.table.checkout_latest()
            except Exception as exc:  # a store hiccup must not fail the query: the current version still reads
                log.warning("could not refresh %s: %s", getattr(self.table, "name", "?"), exc)

    def run(self, q: Query) -> SearchResult:
        q.check()
        self.refresh()
        try:
            where = q.filters.where(segments=self.segmented)
        except FilterError as exc:
            raise QueryError(str(exc)) from exc
        t0 = time.perf_counter()
        vector, cached = self.query_vector(q)
        t1 = time.perf_counter()
        want = q.k + q.offset
        group = q.group_by_video and self.segmented
        rows = search(self.table, vector, want * GROUP_FETCH if group else want, where=where).to_pylist()
        if group:
            best: dict[str, dict[str, Any]] = {}
            for r in rows:  # sorted by score: the first window of a video is its best
                best.setdefault(r[S.VIDEO_ID], r)
            rows = list(best.values())
        rows = rows[q.offset:want]
        t2 = time.perf_counter()
        return SearchResult(rows, 1000 * (t1 - t0), 1000 * (t2 - t1), cached)

    # --- the plain calls the CLI and the eval job use ---

    def by_vector(self, vector: np.ndarray, k: int) -> pa.Table:
        return search(self.table, vector, k)

    def by_text(self, text: str, k: int) -> pa.Table:
        return self.by_vector(self.embedder.embed_texts([text])[0], k)

    def video_vector(self, uri: str) -> np.ndarray:
        """The stored vector when the video is in the table, else decode + embed it with the table's profile."""
        return self.query_vector(Query(kind="video", video_uri=uri))[0]

    def by_video(self, uri: str, k: int) -> pa.Table:
        return self.by_vector(self.video_vector(uri), k)


def format_results(results: pa.Table | list[dict[str, Any]], title: str = "", start: int = 1) -> str:
    rows = results.to_pylist() if isinstance(results, pa.Table) else list(results)
    width = max([len(r[S.URI]) for r in rows] + [3])
    lines = [title] if title else []
    segments = (S.SEGMENT_START in results.column_names if isinstance(results, pa.Table)
                else bool(rows) and S.SEGMENT_START in rows[0])
    lines.append(f"{'rank':>4}  {'score':>7}  {'uri':<{width}}  " + ("     window" if segments else f"{'duration':>8}"))
    for i, r in enumerate(rows, start):
        if segments:  # moment retrieval: where in the video
            when = f"{r[S.SEGMENT_START]:6.1f}-{r[S.SEGMENT_END]:.1f}s"
        else:
            dur = r.get(S.DURATION)
            when = f"{dur:7.2f}s" if dur is not None and dur == dur else "       -"
        lines.append(f"{i:>4}  {r['score']:7.4f}  {r[S.URI]:<{width}}  {when}")
    if not rows:
        lines.append("(no results)")
    return "\n".join(lines)
