"""The run summary of an embed job: counts, per-stage time, where the work ran; printed and saved beside the table.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from tara_batch.config import EmbedJobConfig, to_dict
from tara_batch.index.tables import TableRef
from tara_batch.io.s3 import S3Options
from tara_batch.io.uris import is_s3, split_s3

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    run_id: str
    index: str  # the alias (<db>/<name>)
    table: str  # the physical table of this model version
    model_id: str
    videos_listed: int = 0
    videos_skipped: int = 0  # already embedded by this model version (unchanged objects)
    failed_skipped: int = 0  # permanent failures of unchanged objects (not retried)
    videos_in: int = 0
    embedded: int = 0
    segments: int = 0  # segment mode: windows embedded (rows written)
    failed: int = 0
    failures_by_kind: dict[str, int] = field(default_factory=dict)
    stale_rows: int = 0  # rows whose object is no longer listed
    pruned_rows: int = 0
    replaced_rows: int = 0  # segment mode: windows of changed videos (or stray ones) dropped before re-embedding
    resumed_videos: int = 0  # segment mode: videos a killed run left part-done, resumed at their first missing window
    fetch_seconds: float = 0.0  # summed over videos (overlapped with decode in the actors)
    decode_seconds: float = 0.0  # summed over videos (CPU time across actors)
    embed_seconds: float = 0.0  # summed over videos (actor time)
    write_seconds: float = 0.0  # driver time spent committing to LanceDB
    preprocess_on: str = ""  # where the processor ran: decode_actors | embed_actors
    embed_actors: int = 0
    embed_busy_fraction: float = 0.0  # embed actor time / (actors x span of embed activity)
    embed_queue_seconds: float = 0.0  # mean wait of a row between decode and embed
    visual_tokens: int = 0
    decode_nodes: dict[str, int] = field(default_factory=dict)  # Ray node id -> rows decoded there
    embed_nodes: dict[str, int] = field(default_factory=dict)  # Ray node id -> rows embedded there
    first_batch_seconds: float = 0.0  # from stream start to the first finished batch (actor start-up, model load)
    steady_videos_per_second: float = 0.0  # videos embedded / (last forward's end - first forward's start)
    list_seconds: float = 0.0
    wall_seconds: float = 0.0
    videos_per_second: float = 0.0
    table_rows: int = 0
    version_state: str = ""
    live: str | None = None
    index_action: str = ""
    optimized: int = 0  # times the table was compacted / its indices updated during or after this run
    aborted: str = ""

    def to_json(self) -> str:
        return json.dumps(self.__dict__, indent=2, sort_keys=True)

    def render(self) -> str:
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(self.failures_by_kind.items())) or "none"
        lines = [
            f"run {self.run_id} -> {self.index} (model version {self.model_id}, table {self.table})",
            f"  listed {self.videos_listed}, already embedded {self.videos_skipped}, "
            f"permanently failed {self.failed_skipped}, processed {self.videos_in}",
            f"  embedded {self.embedded}" + (f" ({self.segments} windows)" if self.segments else "")
            + f", failed {self.failed} ({kinds})"
            + (f"; {self.replaced_rows} windows of changed videos replaced" if self.replaced_rows else "")
            + (f"; {self.resumed_videos} videos resumed mid-video" if self.resumed_videos else ""),
            f"  time: list {self.list_seconds:.1f}s, fetch {self.fetch_seconds:.1f}s (sum), decode "
            f"{self.decode_seconds:.1f}s (sum), embed {self.embed_seconds:.1f}s (sum), write {self.write_seconds:.1f}s,"
            f" wall {self.wall_seconds:.1f}s",
            f"  embed actors busy {self.embed_busy_fraction:.0%} ({self.embed_actors} actors, preprocess on "
            f"{self.preprocess_on or '-'}), mean queue before embed {self.embed_queue_seconds:.2f}s, "
            f"{self.visual_tokens} visual tokens",
            f"  throughput: {self.videos_per_second:.2f} videos/s"
            + (f" (steady {self.steady_videos_per_second:.2f}/s while the model actors ran; "
               f"{self.first_batch_seconds:.1f}s to the first batch)" if self.steady_videos_per_second else "")
            + f"; table now has {self.table_rows} rows"
            + (f"; index: {self.index_action}" if self.index_action else ""),
            f"  version {self.model_id} is {self.version_state}; live version: {self.live}"
            + (f"; {self.stale_rows} rows of deleted objects kept" if self.stale_rows else "")
            + (f"; {self.pruned_rows} rows of deleted objects pruned" if self.pruned_rows else ""),
        ]
        if self.aborted:
            lines.append(f"  ABORTED: {self.aborted}")
        return "\n".join(lines)


def save_run_record(ref: TableRef, summary: RunSummary, cfg: EmbedJobConfig, s3: S3Options) -> str:
    """Write `<db>/_runs/<table>/<run_id>.json` (summary + resolved config, secrets masked) beside the table."""
    record = json.dumps({"summary": summary.__dict__, "config": to_dict(cfg)}, indent=2, sort_keys=True, default=str)
    uri = f"{ref.db_uri}/_runs/{ref.name}/{summary.run_id}.json"
    if is_s3(uri):
        bucket, key = split_s3(uri)
        s3.boto3_client().put_object(Bucket=bucket, Key=key, Body=record.encode())
    else:
        from pathlib import Path

        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        Path(uri).write_text(record + "\n")
    log.info("run record saved to %s", uri)
    return uri
