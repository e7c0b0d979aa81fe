"""Live job metrics, exported to Prometheus through Ray's metrics API (`ray.util.metrics`).

Every node's Ray metrics agent serves them on its metrics export port (`ray start --metrics-export-port`; the port is
`ray.nodes()[i]["MetricsExportPort"]`) with Ray's `ray_` prefix: `tara_batch_rows_written_total` is scraped as
`ray_tara_batch_rows_written_total`. Every series carries a `run` tag (the run id of the summary).

Two kinds, on purpose:
* Counts that must add up (videos per stage and status, failures per kind, rows written) are counted on the driver
  from the batches it commits, so they equal the table and the failure ledger exactly.
* Live load figures (stage busy seconds, videos through each actor, embed busy fraction, fetched bytes) are counted
  in the actors where the work happens. An actor torn down at the end of the job may not flush its last report
  interval, so these can trail the driver's counts by a few seconds' worth; they are for charts, not accounting.

The names (see `METRICS`) are documented in the README; `docs/architecture.md` says where each is counted.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

# name -> (type, description, tag keys besides "run")
METRICS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "tara_batch_videos_total": ("counter", "videos finished, by stage reached and status (driver)", ("stage", "status")),
    "tara_batch_failures_total": ("counter", "failure records written, by stage and kind (driver)", ("stage", "kind")),
    "tara_batch_rows_written_total": ("counter", "rows committed to the table (driver)", ()),
    "tara_batch_write_queue_rows": ("gauge", "embedded rows waiting for the next commit (driver)", ()),
    "tara_batch_embed_queue_seconds": ("gauge", "mean wait of the last batch between decode and embed (driver)", ()),
    "tara_batch_stage_videos_total": ("counter", "rows through a stage's actors (live)", ("stage",)),
    "tara_batch_stage_busy_seconds_total": ("counter", "seconds a stage's actors spent working (live)",
                                            ("stage",)),
    "tara_batch_fetch_bytes_total": ("counter", "bytes read from storage by decode actors (live)", ()),
    "tara_batch_visual_tokens_total": ("counter", "visual tokens sent through the model (live)", ()),
    "tara_batch_embed_busy_fraction": ("gauge", "share of an embed actor's time in forward passes (live)",
                                       ("actor",)),
}


class Telemetry:
    """Metrics of one run, in the current process (driver or actor). A no-op outside a Ray session, so stages stay
    callable from plain tests."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._metrics: dict[str, Any] = {}
        try:
            import ray

            enabled = bool(run_id) and ray.is_initialized()
        except Exception:  # pragma: no cover - ray is a core dependency
            enabled = False
        if enabled:
            from ray.util.metrics import Counter, Gauge

            for name, (kind, desc, tags) in METRICS.items():
                cls = Counter if kind == "counter" else Gauge
                self._metrics[name] = cls(name, description=desc, tag_keys=("run", *tags))

    def inc(self, name: str, value: float = 1.0, **tags: str) -> None:
        m = self._metrics.get(name)
        if m is not None and value > 0:
            m.inc(float(value), tags={"run": self.run_id, **tags})

    def set(self, name: str, value: float, **tags: str) -> None:
        m = self._metrics.get(name)
        if m is not None:
            m.set(float(value), tags={"run": self.run_id, **tags})


def node_id() -> str:
    """The Ray node this process runs on ("" outside Ray)."""
    try:
        import ray

        return ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
    except Exception:
        return ""


class BusyClock:
    """Busy fraction of one actor: time inside `with clock:` over time since the first batch began (idle gaps
    between batches count as not busy; the wait before the first batch, model loading included, does not)."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.busy = 0.0
        self._t0 = 0.0

    def __enter__(self) -> BusyClock:
        self._t0 = time.perf_counter()
        if self.first is None:
            self.first = self._t0
        return self

    def __exit__(self, *exc: object) -> None:
        self.busy += time.perf_counter() - self._t0

    @property
    def fraction(self) -> float:
        if self.first is None:
            return 0.0
        span = time.perf_counter() - self.first
        return min(1.0, self.busy / span) if span > 0 else 1.0


def scrape(port: int, prefix: str = "ray_tara_batch_", timeout: float = 5.0) -> dict[tuple[str, frozenset], float]:
    """Read a Ray metrics agent's Prometheus page: {(metric name, frozenset of (tag, value)): value} for series whose
    name starts with `prefix`. For tests and `benchmarks/pipeline.py`; production scrapes with Prometheus."""
    import urllib.request

    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=timeout).read().decode()
    out: dict[tuple[str, frozenset], float] = {}
    for line in text.splitlines():
        if not line.startswith(prefix):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        tags = []
        for part in _split_labels(rest.rstrip("}")):
            k, _, v = part.partition("=")
            tags.append((k, v.strip('"')))
        key = (name, frozenset(tags))
        out[key] = out.get(key, 0.0) + float(value)
    return out


def _split_labels(s: str) -> list[str]:
    # label values may contain commas inside quotes
    parts, cur, quoted = [], [], False
    for ch in s:
        if ch == '"':
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if cur:
        parts.append("".join(cur))
    return [p for p in parts if p]


def total(series: dict[tuple[str, frozenset], float], name: str, **tags: str) -> float:
    """Sum of a scraped metric over every series whose tags include `tags` (all workers, all actors)."""
    want = set(tags.items())
    return sum(v for (n, t), v in series.items() if n == name and want <= set(t))
