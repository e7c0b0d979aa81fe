"""Benchmark evaluation: embed a benchmark's videos once through the embed pipeline, its queries with the same model,
compute the papers' metrics, and write a JSON + Markdown report with the published figures beside ours.

    tara-batch eval --benchmark cia --annotations cia_ssv2.csv --media s3://bench/ssv2/ --model /models/tara \
        --out ./eval/tara [key=value overrides of the embed job: decode.*, embed.*, profile.*, s3.*]

Videos go through `run_embed` into `<out>/index.lancedb/<benchmark>`: a rerun with the same model version reuses
them (nothing is re-embedded), a new model version is built beside it. Text and composed queries are embedded on the
driver with the transformers backend (a benchmark has thousands of queries, not millions of videos).

Charades-STA (temporal grounding) runs the embed job in segment mode (`decode.segment_s`, default 4 s windows every
2 s): each sentence ranks its video's windows, the best window grows over neighbours scoring close to it
(`tara_batch.eval.grounding`), and the predicted [start, end] is scored by R1@IoU 0.3/0.5/0.7 and mIoU.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tara_batch import schema as S
from tara_batch.config import EmbedJobConfig, load_config
from tara_batch.errors import ConfigError, InputError
from tara_batch.eval import benchmarks as B
from tara_batch.eval import metrics as M
from tara_batch.eval.generic import read_generic
from tara_batch.io.reads import read_bytes
from tara_batch.io.uris import canonical_uri

log = logging.getLogger(__name__)

BENCHMARKS = ("cia", "rtime", "negbench", "covr", "charades-sta", "generic")
DEFAULT_SEGMENTS = (4.0, 2.0)  # Charades-STA: videos ~30 s, moments ~8 s; a window is half a moment

# Published Tarsier2 + TARA figures (tara-method.md section 5), printed beside ours.
PAPER: dict[str, dict[str, dict[str, float]]] = {
    "cia": {"SSv2": {"chiral": 88.9, "static": 66.7, "all": 58.6},
            "EPIC": {"chiral": 81.1, "static": 45.6, "all": 38.9},
            "Charades": {"chiral": 71.4, "static": 38.6, "all": 29.0}},
    "rtime": {"RTime": {"t2v": 67.2, "v2t": 77.9}},
    "negbench": {"MSR-VTT": {"standard": 65.1, "negated": 65.0}, "COCO": {"standard": 76.7, "negated": 73.6}},
    "covr": {"WebVid-CoVR": {"R@1": 66.3, "R@5": 86.7, "R@10": 91.5}},
}
# Not TARA's: TAR-TVG (a generative grounding model) on Charades-STA, the figure the seed papers compare against.
REFERENCE: dict[str, dict[str, dict[str, float]]] = {
    "charades-sta": {"Charades-STA (TAR-TVG)": {"mIoU": 61.1}},
}


@dataclass
class EvalRequest:
    benchmark: str
    annotations: list[str]  # one file, or two for negbench (standard, negated), up to three for generic
    media: str | None
    out: str
    job: EmbedJobConfig  # the embed job that builds the benchmark's video index (model, profile, decode, s3)


def _video_uris(bench: Any, name: str) -> list[str]:
    if name == "cia":
        uris = bench.video_uris
    elif name == "rtime":
        uris = bench.video_uris + bench.reverse_video_uris
    elif name == "negbench":
        uris = bench.gallery_uris
    elif name == "covr":
        uris = bench.gallery_uris + bench.source_uris
    elif name == "charades-sta":
        uris = bench.video_uris
    else:
        uris = [u for u in bench.gallery_uris + bench.query_uris if u]
    return list(dict.fromkeys(canonical_uri(u) for u in uris))


def read_benchmark(req: EvalRequest) -> Any:
    s3 = req.job.s3.options()
    a = req.annotations
    if req.benchmark == "cia":
        return B.read_cia(a[0], req.media, s3=s3)
    if req.benchmark == "rtime":
        return B.read_rtime(a[0], req.media, s3=s3)
    if req.benchmark == "negbench":
        if len(a) != 2:
            raise ConfigError("--annotations", "negbench takes two files: the standard and the negated captions")
        return B.read_negbench(a[0], a[1], req.media, s3=s3)
    if req.benchmark == "covr":
        return B.read_covr(a[0], req.media, s3=s3)
    if req.benchmark == "charades-sta":
        return B.read_charades_sta(a[0], req.media, s3=s3)
    if req.benchmark == "generic":
        return read_generic(*a, media_root=req.media, s3=s3)
    raise ConfigError("--benchmark", f"unknown benchmark {req.benchmark!r}; choose one of {list(BENCHMARKS)}")


def embed_videos(req: EvalRequest, uris: list[str]) -> tuple[Any, str, Any]:
    """Run the embed job over the benchmark's videos; returns (uri -> vector, model_id, summary). In segment mode
    (charades-sta) the first item is the windows table (uri, segment_start, segment_end, embedding) instead."""
    from tara_batch.embed.job import run_embed
    from tara_batch.search.session import SearchSession

    out = Path(req.out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / f"{req.benchmark}_videos.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["uri"])
        w.writerows([u] for u in uris)
    table = str(out / "index.lancedb" / req.benchmark)
    import dataclasses

    job = dataclasses.replace(req.job, input=dataclasses.replace(req.job.input, source=None, manifest=str(manifest)),
                              output=dataclasses.replace(req.job.output, table=table))
    summary = run_embed(job, progress=False)
    session = SearchSession.open(table, load_model=False, version=summary.model_id)
    if job.decode.segments:
        return session.table.to_arrow().select([S.URI, S.SEGMENT_START, S.SEGMENT_END, S.EMBEDDING]), \
            summary.model_id, summary
    rows = session.table.to_arrow().select([S.URI, S.EMBEDDING])
    vectors = {u: np.asarray(v, np.float32) for u, v in zip(rows.column(S.URI).to_pylist(),
                                                            rows.column(S.EMBEDDING).to_pylist(), strict=True)}
    return vectors, summary.model_id, summary


def _texts(embedder, texts: list[str], batch: int = 64) -> np.ndarray:
    return np.concatenate([embedder.embed_texts(texts[i:i + batch]) for i in range(0, len(texts), batch)]) \
        if texts else np.zeros((0, embedder.dim), np.float32)


def _stack(vectors: dict[str, np.ndarray], uris: list[str]) -> np.ndarray:
    return np.stack([vectors[canonical_uri(u)] for u in uris])


def _require(vectors: dict[str, np.ndarray], uris: list[str], what: str) -> None:
    missing = [u for u in uris if canonical_uri(u) not in vectors]
    if missing:
        raise InputError(f"{len(missing)} {what} could not be embedded (see `tara-batch failures`), e.g. "
                         f"{missing[:3]}; metrics over a partial gallery would not be comparable to the papers")


def compute(req: EvalRequest, bench: Any, vectors: Any, embedder) -> dict[str, Any]:
    """Metrics of one benchmark. A `_pairs` entry (paired video and text embeddings) is for the projection plot and
    is popped by `run_eval` before the report is written."""
    name = req.benchmark
    if name == "charades-sta":
        from tara_batch.eval import grounding as G

        windows = vectors
        have = set(windows.column(S.URI).to_pylist())
        _require({u: None for u in have}, bench.video_uris, "videos")
        q = _texts(embedder, bench.sentences)
        pred = G.ground_queries(q, np.asarray(windows.column(S.EMBEDDING).to_pylist(), np.float32),
                                windows.column(S.URI).to_pylist(), windows.column(S.SEGMENT_START).to_numpy(),
                                windows.column(S.SEGMENT_END).to_numpy(),
                                [canonical_uri(u) for u in bench.video_uris])
        gt = np.stack([np.asarray(bench.starts, np.float64), np.asarray(bench.ends, np.float64)], axis=1)
        return {"grounding": G.grounding_metrics(pred, gt), "windows": windows.num_rows,
                "_predictions": pred}
    if name == "cia":
        _require(vectors, bench.video_uris, "videos")
        t = _texts(embedder, bench.texts)
        v = _stack(vectors, bench.video_uris)
        res: dict[str, Any] = {"mAP": M.cia_metrics(t, v, bench.text_ids, bench.video_text_ids, bench.chiral_pairs,
                                                    bench.labels),
                               "chiral_binary": M.cia_chiral_accuracy(t, v, bench.text_ids, bench.video_text_ids,
                                                                      bench.chiral_pairs)}
        if bench.groups:  # the optional `group` column: chiral accuracy per group (e.g. per kind of event)
            by_group: dict[str, list[int]] = {}
            for i, tid in enumerate(bench.text_ids):
                by_group.setdefault(bench.groups.get(tid, ""), []).append(i)
            res["chiral_binary_by_group"] = {}
            for g, rows in sorted(by_group.items()):
                keep = {bench.text_ids[i] for i in rows} | {bench.chiral_pairs[bench.text_ids[i]] for i in rows}
                cols = [j for j, x in enumerate(bench.video_text_ids) if x in keep]
                res["chiral_binary_by_group"][g] = M.cia_chiral_accuracy(
                    t[rows], v[cols], [bench.text_ids[i] for i in rows], [bench.video_text_ids[j] for j in cols],
                    bench.chiral_pairs)["accuracy"]
        idx = {tid: i for i, tid in enumerate(bench.text_ids)}
        relevant = [np.flatnonzero(np.array(bench.video_text_ids) == tid) for tid in bench.text_ids]
        res["t2v"] = M.retrieval_report(t, v, relevant)
        res["v2t"] = M.retrieval_report(v, t, np.array([idx[x] for x in bench.video_text_ids]))
        paired_t = t[[idx[x] for x in bench.video_text_ids]]
        res["modality_gap"] = M.modality_gap(v, paired_t)
        res["_pairs"] = (v, paired_t)
        return res
    if name == "rtime":
        _require(vectors, bench.video_uris + bench.reverse_video_uris, "videos")
        tf = _texts(embedder, bench.captions)
        tr = _texts(embedder, bench.reverse_captions) if bench.reverse_captions else None
        vf, vr = _stack(vectors, bench.video_uris), _stack(vectors, bench.reverse_video_uris)
        return {"binary": M.rtime_binary(tf, vf, vr, tr), "modality_gap": M.modality_gap(vf, tf), "_pairs": (vf, tf)}
    if name == "negbench":
        _require(vectors, bench.gallery_uris, "videos")
        g = _stack(vectors, bench.gallery_uris)
        qs, qn = _texts(embedder, bench.standard_captions), _texts(embedder, bench.negated_captions)
        return {"R@5": M.negbench(qs, qn, g, np.array(bench.target_index), k=5)}
    if name == "covr":
        _require(vectors, bench.gallery_uris, "target videos")
        from tara_batch.video.registry import get_sampler

        sampler = get_sampler(req.job.decode.backend)
        s3, prof = req.job.s3.options(), req.job.profile
        queries = []
        for i in range(0, len(bench.source_uris), 16):  # decode + embed sources with their edits, 16 at a time
            frames = [sampler.sample(read_bytes(canonical_uri(u), s3=s3), prof.num_frames,
                                     prof.max_pixels).frames for u in bench.source_uris[i:i + 16]]
            queries.append(embedder.embed_composed(frames, bench.edits[i:i + 16]))
        q = np.concatenate(queries)
        return {"composed": M.covr_metrics(q, _stack(vectors, bench.gallery_uris), np.array(bench.target_index))}
    # generic: text queries against the video gallery; video queries by their stored vectors
    _require(vectors, [u for u in bench.gallery_uris if u], "gallery videos")
    qv = []
    for text, uri in zip(bench.query_texts, bench.query_uris, strict=True):
        qv.append(_texts(embedder, [text])[0] if text is not None else vectors[canonical_uri(uri)])
    g = _stack(vectors, bench.gallery_uris)
    q = np.stack(qv)
    relevant = [np.asarray(r) for r in bench.relevant]
    res = {"retrieval": M.retrieval_report(q, g, relevant), "mAP": 100 * M.mean_average_precision(q, g, relevant)}
    text = [i for i, t in enumerate(bench.query_texts) if t is not None]
    # The other way (video -> text) when the queries are texts: each gallery video ranks the text queries; those
    # that list it are its relevant items. Videos no text query lists have no rank and are left out.
    if text:
        back = [np.flatnonzero([gi in set(relevant[qi].tolist()) for qi in text]) for gi in range(len(g))]
        has = [gi for gi, r in enumerate(back) if len(r)]
        if has:
            res["v2t"] = M.retrieval_report(g[has], q[text], [back[gi] for gi in has])
    return res


def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, float]:
    out: dict[str, float] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "/"))
        else:
            out[key] = float(v)
    return out


def _published(title: str, figures: dict[str, dict[str, float]]) -> list[str]:
    head = next(iter(figures.values()))
    lines = ["", title, "", "| dataset | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    return lines + [f"| {ds} | " + " | ".join(f"{x:.1f}" for x in vals.values()) + " |" for ds, vals in figures.items()]


def render_markdown(report: dict[str, Any]) -> str:
    lines = [f"# {report['benchmark']} - model version {report['model_id']}", "",
             f"checkpoint `{report['checkpoint']}`, {report['videos']} videos, {report['date']}", "",
             "| metric | ours |", "|---|---|"]
    lines += [f"| {k} | {v:.2f} |" for k, v in _flat(report["metrics"]).items()]
    if report["benchmark"] in PAPER:
        lines += _published("Published Tarsier2 + TARA (tara-method.md section 5):", PAPER[report["benchmark"]])
    if report["benchmark"] in REFERENCE:
        lines += _published("Reference (another method, for scale):", REFERENCE[report["benchmark"]])
    if report.get("projection_png"):
        lines += ["", f"Modality projection (PCA of paired video and text embeddings): `{report['projection_png']}`"]
    return "\n".join(lines) + "\n"


def compare_markdown(reports: list[dict[str, Any]]) -> str:
    """Side by side: one column per run (model version), one row per metric."""
    flats = [_flat(r["metrics"]) for r in reports]
    keys = list(dict.fromkeys(k for f in flats for k in f))
    head = "| metric | " + " | ".join(f"{r['benchmark']} {r['model_id'][:8]}" for r in reports) + " |"
    rows = [f"| {k} | " + " | ".join(f"{f[k]:.2f}" if k in f else "-" for f in flats) + " |" for k in keys]
    return "\n".join([head, "|---|" + "---|" * len(reports), *rows]) + "\n"


def run_eval(req: EvalRequest) -> dict[str, Any]:
    from tara_batch.models.loader import EmbedderSpec

    t0 = time.perf_counter()
    bench = read_benchmark(req)
    uris = _video_uris(bench, req.benchmark)
    if req.benchmark == "charades-sta" and req.job.decode.segments is None:
        import dataclasses

        length, stride = DEFAULT_SEGMENTS
        req = dataclasses.replace(req, job=dataclasses.replace(req.job, decode=dataclasses.replace(
            req.job.decode, segment_s=length, segment_stride_s=stride)))
    elif req.benchmark != "charades-sta" and req.job.decode.segments is not None:
        raise ConfigError("decode.segment_s", f"{req.benchmark} embeds whole videos; segment mode is for "
                          "charades-sta (temporal grounding). Remove the decode.segment_* overrides.")
    vectors, model_id, summary = embed_videos(req, uris)
    embedder = EmbedderSpec(canonical_uri(req.job.model.path), req.job.profile, backend="transformers",
                            threads=None, s3=req.job.s3.options())()
    metrics = compute(req, bench, vectors, embedder)
    pairs = metrics.pop("_pairs", None)
    predictions = metrics.pop("_predictions", None)
    out = Path(req.out).expanduser().resolve()
    stem = out / f"{req.benchmark}-{model_id}"
    png = None
    if pairs is not None:
        from tara_batch.eval.plot import modality_projection_png

        png = str(modality_projection_png(pairs[0], pairs[1], stem.with_suffix(".modality.png"),
                                          title=f"{req.benchmark} {model_id[:8]}: gap "
                                                f"{metrics.get('modality_gap', float('nan')):.3f}"))
    if predictions is not None:  # per-sentence predictions, for error analysis
        with stem.with_suffix(".predictions.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["video", "sentence", "start", "end", "pred_start", "pred_end"])
            w.writerows([v, t, a, b, round(float(p[0]), 3), round(float(p[1]), 3)] for v, t, a, b, p in
                        zip(bench.video_ids, bench.sentences, bench.starts, bench.ends, predictions, strict=True))
    report = {"benchmark": req.benchmark, "model_id": model_id, "checkpoint": req.job.model.path,
              "annotations": req.annotations, "videos": len(uris), "embedded_now": summary.embedded,
              "failed_videos": summary.failed, "metrics": metrics, "seconds": time.perf_counter() - t0,
              "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "projection_png": png,
              "segments": list(req.job.decode.segments) if req.job.decode.segments else None}
    stem.with_suffix(".json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    stem.with_suffix(".md").write_text(render_markdown(report))
    log.info("report written to %s.{json,md}", stem)
    return report


def request_from_args(benchmark: str, annotations: list[str], media: str | None, model: str, out: str,
                      config: str | None, overrides: list[str]) -> EvalRequest:
    # --config is an embed job YAML (e.g. ray_jobs/embed.yaml): its decode/embed/profile/s3/ray sections are used;
    # its input and output sections are ignored, the eval job fills them in (the benchmark's videos, <out>).
    flags = {"input": {"manifest": "-"}, "model": {"path": model}, "output": {"table": str(Path(out) / "x" / "y")}}
    job = load_config(EmbedJobConfig, config, overrides, flags=flags, ignore_yaml=("input", "output"))
    return EvalRequest(benchmark, annotations, media, out, job)
