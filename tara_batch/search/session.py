"""Search an embeddings table: text -> videos, video -> videos, by cosine similarity.

Queries are embedded with the checkpoint and profile recorded in the table's metadata, so a query always lives in
the same space as the rows it is compared with. A query video already in the table reuses its stored vector.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
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

log = logging.getLogger(__name__)


@dataclass
class SearchSession:
    table: Any
    metadata: dict[str, Any]
    profile: ModelProfile
    s3: S3Options
    model_uri: str | None
    _embedder: Any = None

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
        session = cls(table, meta, profile, s3, model or meta.get("checkpoint", {}).get("path"))
        if load_model and session.model_uri is None:
            raise ConfigError("--model", "the table records no checkpoint; pass --model")
        return session

    @property
    def embedder(self):
        if self._embedder is None:
            from tara_batch.models.loader import EmbedderSpec

            # A few queries do not justify starting a vLLM engine (20-60 s): transformers, same vectors (tested).
            self._embedder = EmbedderSpec(self.model_uri, self.profile, backend="transformers", threads=None,
                                          s3=self.s3)()
        return self._embedder

    def by_vector(self, vector: np.ndarray, k: int) -> pa.Table:
        return search(self.table, vector, k)

    def by_text(self, text: str, k: int) -> pa.Table:
        return self.by_vector(self.embedder.embed_texts([text])[0], k)

    def video_vector(self, uri: str) -> np.ndarray:
        """The stored vector when the video is in the table, else decode + embed it with the table's profile."""
        canonical = canonical_uri(uri)
        vid = video_id_for(canonical)
        # A segment table stores windows, not the whole video: embed the query video whole.
        segmented = S.SEGMENT_ID in self.table.schema.names
        hit = None if segmented else \
            self.table.search().where(f"{S.VIDEO_ID} = '{vid}'").select([S.EMBEDDING]).limit(1).to_arrow()
        if hit is not None and hit.num_rows:
            return np.asarray(hit.column(S.EMBEDDING)[0].as_py(), np.float32)
        from tara_batch.video.frames import DecodeError
        from tara_batch.video.registry import get_sampler

        log.info("%s: embedding the query video now", canonical)
        data = read_bytes(canonical, s3=self.s3)
        backend = self.metadata.get("decode_backend", "pyav")
        try:
            video = get_sampler(backend).sample(data, self.profile.num_frames, self.profile.max_pixels)
        except DecodeError as exc:
            raise InputError(f"cannot decode query video {uri}: {exc}") from exc
        return self.embedder.embed_videos([video.frames])[0]

    def by_video(self, uri: str, k: int) -> pa.Table:
        return self.by_vector(self.video_vector(uri), k)


def format_results(results: pa.Table, title: str = "") -> str:
    rows = results.to_pylist()
    width = max([len(r[S.URI]) for r in rows] + [3])
    lines = [title] if title else []
    segments = S.SEGMENT_START in results.column_names
    lines.append(f"{'rank':>4}  {'score':>7}  {'uri':<{width}}  " + ("     window" if segments else f"{'duration':>8}"))
    for i, r in enumerate(rows, 1):
        if segments:  # moment retrieval: where in the video
            when = f"{r[S.SEGMENT_START]:6.1f}-{r[S.SEGMENT_END]:.1f}s"
        else:
            dur = r.get(S.DURATION)
            when = f"{dur:7.2f}s" if dur is not None and dur == dur else "       -"
        lines.append(f"{i:>4}  {r['score']:7.4f}  {r[S.URI]:<{width}}  {when}")
    if not rows:
        lines.append("(no results)")
    return "\n".join(lines)
