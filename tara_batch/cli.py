"""`tara-batch`: the one command-line entry point. Subcommands call the same library functions as ray_jobs/.

    tara-batch demo                                   # tiny model + sample archive + embed + search, all local
    tara-batch embed --input s3://archive/videos/ --model /models/tara --table ./index.lancedb/videos
    tara-batch search --table ./index.lancedb/videos "someone closing a door" -k 10
    tara-batch search --table ./index.lancedb/videos --video s3://archive/videos/clip_0042.mp4 -k 10
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import re
import sys
import traceback
from pathlib import Path
from typing import Any

from tara_batch import __version__
from tara_batch.errors import ConfigError, InputError, JobAborted
from tara_batch.index.tables import TableRef

log = logging.getLogger("tara_batch")

OVERRIDES_HELP = "config overrides as section.field=value, e.g. decode.backend=decord profile.num_frames=16"


def _setup_logging(verbose: int) -> None:
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("tara_batch").setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    for noisy in ("transformers", "httpx", "botocore", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


# ---------------------------------------------------------------------------------------------------- embed


def embed_flags(args: argparse.Namespace) -> dict[str, Any]:
    flags: dict[str, Any] = {}
    if args.input:
        flags.setdefault("input", {})["source"] = args.input
    if args.manifest:
        flags.setdefault("input", {})["manifest"] = args.manifest
    if args.model:
        flags.setdefault("model", {})["path"] = args.model
    if args.table:
        flags.setdefault("output", {})["table"] = args.table
    return flags


def cmd_embed(args: argparse.Namespace) -> int:
    from tara_batch.config import EmbedJobConfig, load_config
    from tara_batch.embed.job import run_embed

    cfg = load_config(EmbedJobConfig, args.config, args.overrides, flags=embed_flags(args))
    summary = run_embed(cfg, overwrite=args.overwrite, progress=not args.no_progress,
                        retry_failed=args.retry_failed, only_failed=args.only_failed)
    print(summary.render())
    return 0


def _s3(overrides: list[str]):
    from tara_batch.config import S3Config, build, parse_overrides

    tree = parse_overrides(overrides)
    unknown = sorted(set(tree) - {"s3"})
    if unknown:
        raise ConfigError(unknown[0], "only s3.* settings are accepted here")
    return build(S3Config, tree.get("s3", {}), "s3.").options()


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from tara_batch.index.status import index_status, render_status

    st = index_status(args.table, _s3(args.overrides))
    print(json.dumps(st, indent=2, default=str) if args.json else render_status(st))
    return 0


def cmd_failures(args: argparse.Namespace) -> int:
    from tara_batch.index.status import open_failures

    t = open_failures(args.table, _s3(args.overrides), args.version)
    rows = [r for r in t.to_pylist() if not args.kind or r.get("error_kind") == args.kind]
    if args.csv:
        import csv

        w = csv.DictWriter(sys.stdout, fieldnames=list(t.column_names))
        w.writeheader()
        w.writerows(rows)
        return 0
    print(f"{len(rows)} open failures")
    for r in rows[: args.limit]:
        print(f"  {r['error_kind']:<16} attempt {r['attempt']}  {r['uri']}\n      {str(r['error_message'])[:200]}")
    if len(rows) > args.limit:
        print(f"  ... {len(rows) - args.limit} more (--limit, or --csv for all)")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from tara_batch.index.catalog import Catalog

    ref = TableRef.parse(args.table)
    cat = Catalog(ref.db_uri, ref.name, _s3(args.overrides))
    matches = [m for m in cat.versions() if m.startswith(args.version)]
    if len(matches) != 1:
        raise InputError(f"--version {args.version!r} matches {len(matches)} versions: {sorted(cat.versions())}")
    try:
        cat.promote(matches[0])
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    print(f"{ref.uri} now serves version {matches[0]}")
    return 0


def cmd_prune(args: argparse.Namespace) -> int:
    from tara_batch.index.catalog import Catalog
    from tara_batch.index.tables import FAILURES_SUFFIX, connect, table_exists

    ref = TableRef.parse(args.table)
    s3 = _s3(args.overrides)
    cat = Catalog(ref.db_uri, ref.name, s3)
    live = cat.live()
    doomed = [m for m in cat.versions() if m != live and (args.version is None or m.startswith(args.version))]
    db = connect(ref.db_uri, s3)
    for model_id in doomed:
        name = cat.versions()[model_id]["table"]
        cat.forget(model_id)  # first the catalog: a search can no longer be pointed at it
        for t in (name, name + FAILURES_SUFFIX):
            if table_exists(db, t):
                db.drop_table(t)
        print(f"pruned version {model_id} ({name})")
    if not doomed:
        print("nothing to prune (the live version is never pruned)")
    return 0


# ---------------------------------------------------------------------------------------------------- search


def cmd_search(args: argparse.Namespace) -> int:
    from tara_batch.search.filters import Filters
    from tara_batch.search.session import Query, SearchSession, format_results

    if bool(args.query) == bool(args.video) and not (args.video and args.edit):
        raise ConfigError("search", "give a text query, or --video URI (by example), or --video URI --edit TEXT "
                          "(composed)")
    if args.query and args.edit:
        raise ConfigError("search", "--edit goes with --video (a composed query), not with a text query")
    filters = Filters(duration_min=args.min_duration, duration_max=args.max_duration, uri_prefix=args.uri_prefix,
                      uri_glob=args.uri_glob, created_after=args.created_after, created_before=args.created_before,
                      window_start_min=args.window_start, window_end_max=args.window_end)
    session = SearchSession.open(args.table, model=args.model, overrides=args.overrides, version=args.version)
    if args.query:
        q, title = Query(kind="text", text=args.query), f"query: {args.query!r}"
    elif args.edit:
        q, title = Query(kind="composed", video_uri=args.video, text=args.edit), \
            f"query: video {args.video} + edit {args.edit!r}"
    else:
        q, title = Query(kind="video", video_uri=args.video), f"query video: {args.video}"
    q = dataclasses.replace(q, k=args.k, offset=args.offset, filters=filters, group_by_video=args.group_by_video)
    result = session.run(q)
    print(format_results(result.rows, title=title, start=args.offset + 1))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    from tara_batch.serve.app import ServiceConfig, serve_forever

    cfg = ServiceConfig(table=args.table, model=args.model, version=args.version, overrides=tuple(args.overrides),
                        host=args.host, port=args.port, token=args.token or os.environ.get("TARA_BATCH_TOKEN"),
                        cors_origins=tuple(args.cors_origin), max_upload_bytes=int(args.max_upload_mb * (1 << 20)),
                        thumbnail_cache_bytes=int(args.thumbnail_cache_mb * (1 << 20)))
    token = f"?token={cfg.token}" if cfg.token else ""
    print(f"open http://{'127.0.0.1' if cfg.host in ('0.0.0.0', '::') else cfg.host}:{cfg.port}/{token} "
          f"(API docs: /docs); Ctrl-C stops", flush=True)
    serve_forever(cfg)
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from tara_batch.index.catalog import resolve_table
    from tara_batch.index.maintenance import ensure_key_index, optimize
    from tara_batch.index.tables import FAILURES_SUFFIX, TableRef, connect, read_metadata, table_exists
    from tara_batch.schema import SEGMENT_ID, VIDEO_ID

    ref = TableRef.parse(args.table)
    s3 = _s3(args.overrides)
    db = connect(ref.db_uri, s3)
    name = resolve_table(ref.db_uri, ref.name, s3, args.version, newest_if_no_live=True)
    if args.retention_days < 0:
        raise ConfigError("--retention-days", "must be >= 0")
    retention = timedelta(days=args.retention_days)
    for t in (name, name + FAILURES_SUFFIX):
        if not table_exists(db, t):
            continue
        table = db.open_table(t)
        if t == name:
            key = SEGMENT_ID if SEGMENT_ID in table.schema.names else VIDEO_ID
            ensure_key_index(table, key)
        report = optimize(table, retention=retention)
        print(f"{t}: {report.render()}" + (f" (model version {read_metadata(table).get('model_id')})"
                                           if t == name else ""))
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from tara_batch.index.ann import build_index
    from tara_batch.search.session import SearchSession

    session = SearchSession.open(args.table, model=None, overrides=args.overrides, load_model=False)
    print(build_index(session.table, index_type=args.type))
    return 0


# ---------------------------------------------------------------------------------------------------- helpers


def cmd_convert(args: argparse.Namespace) -> int:
    from tara_batch.models.convert import convert_checkpoint

    report = convert_checkpoint(args.src, args.dst, max_shard_bytes=int(args.max_shard_gb * (1 << 30)),
                                verify=not args.no_verify, overwrite=args.overwrite, progress=True)
    print(report.message)
    if not report.noop:
        print(f"{report.tensors} tensors, {report.bytes / 1e9:.2f} GB in {report.shards} shard(s), "
              f"{report.seconds:.1f}s; hashes in {args.dst}/tara_batch_convert.json")
    return 0


def cmd_smoke(args: argparse.Namespace) -> int:
    from tara_batch.eval.smoke import run_smoke
    from tara_batch.models.profile import get_profile

    rep = run_smoke(args.model, get_profile(num_frames=args.frames), video=args.video, golden=args.golden,
                    backends=args.backends, device=args.device)
    print(rep.render())
    return 0 if rep.passed else 1


def cmd_train(args: argparse.Namespace) -> int:
    from tara_batch.config import load_config
    from tara_batch.train.config import TrainConfig
    from tara_batch.train.loop import run_training

    cfg = load_config(TrainConfig, args.config, args.overrides)
    result = run_training(cfg)
    print(result.render())
    return 0


_OVERRIDE = re.compile(r"^[a-z_][a-z_0-9]*\.[a-z_0-9.]+=")  # section.field=value


def split_overrides(items: list[str]) -> tuple[list[str], list[str]]:
    """(files, overrides): a greedy list option (`--annotations A B`) also swallows the `section.field=value`
    overrides written after it; this hands them back."""
    return [a for a in items if not _OVERRIDE.match(a)], [a for a in items if _OVERRIDE.match(a)]


def cmd_eval(args: argparse.Namespace) -> int:
    from tara_batch.eval.job import render_markdown, request_from_args, run_eval

    # `--annotations` takes one or more files, so overrides written after it land in its list: move them back.
    annotations, overrides = split_overrides(args.annotations)
    req = request_from_args(args.benchmark, annotations, args.media, args.model, args.out, args.config,
                            overrides + list(args.overrides))
    print(render_markdown(run_eval(req)))
    return 0


def cmd_eval_compare(args: argparse.Namespace) -> int:
    import json

    from tara_batch.eval.job import compare_markdown

    print(compare_markdown([json.loads(Path(p).read_text()) for p in args.reports]))
    return 0


def cmd_make_triplets(args: argparse.Namespace) -> int:
    from tara_batch.train.triplets.command import run

    return run(args)


def cmd_make_tiny_model(args: argparse.Namespace) -> int:
    if args.layout == "tarsier2":
        from tara_batch.models.tiny_tarsier import build_tiny_tarsier

        print(build_tiny_tarsier(args.out_dir, seed=args.seed))
    else:
        from tara_batch.models.tiny import build_tiny_model

        print(build_tiny_model(args.out_dir, seed=args.seed))
    return 0


def cmd_make_samples(args: argparse.Namespace) -> int:
    from tara_batch.video.samples import write_sample_archive

    paths = write_sample_archive(args.out_dir, n=args.n, seed=args.seed)
    print(f"wrote {len(paths)} videos to {args.out_dir}")
    return 0


def cmd_make_toyworld(args: argparse.Namespace) -> int:
    from tara_batch.config import build, parse_overrides
    from tara_batch.toyworld.world import WorldConfig, make_world

    tree = parse_overrides(args.overrides)
    unknown = sorted(set(tree) - {"world"})
    if unknown:
        raise ConfigError(unknown[0], "make-toyworld takes world.* settings, e.g. world.train_clips=2")
    cfg = build(WorldConfig, {**tree.get("world", {}), "seed": args.seed}, "world.")
    world = make_world(args.out_dir, cfg, progress=not args.no_progress)
    print(f"wrote {len(world.split('train'))} training and {len(world.split('test'))} test clips to {world.root} "
          f"(test_cia.csv, test_retrieval.json, train_captions.csv, train_nli.csv, train_order.csv)")
    return 0


def cmd_toyworld_run(args: argparse.Namespace) -> int:
    from tara_batch.config import load_config
    from tara_batch.toyworld.recipe import RecipeConfig, render_report, run_recipe

    cfg = load_config(RecipeConfig, args.config, [*args.overrides, f"seed={args.seed}"])
    report = run_recipe(args.out_dir, cfg, progress=not args.no_progress)
    print(render_report(report))
    print(f"report: {Path(args.out_dir).resolve() / 'report.md'} (and report.json, plots/)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Everything local: the trained toy TARA model searching held-out toy-world clips (or, with --random-model, a
    tiny random model on a sample archive: plumbing only)."""
    if not args.random_model:
        from tara_batch.toyworld.demo import run_demo

        run_demo(args.dir, retrain=args.retrain, progress=not args.no_progress, overrides=args.overrides)
        return 0
    from tara_batch.config import EmbedJobConfig, load_config
    from tara_batch.embed.job import run_embed
    from tara_batch.models.tiny import build_tiny_model
    from tara_batch.search.session import SearchSession, format_results
    from tara_batch.video.samples import write_sample_archive

    root = Path(args.dir).resolve() / "random"
    model_dir, videos = root / "tiny-model", root / "videos"
    if not (model_dir / "config.json").exists():
        build_tiny_model(model_dir)
    if not videos.exists() or not any(videos.iterdir()):
        write_sample_archive(videos, n=args.n)
    table = str(root / "index.lancedb" / "videos")
    flags = {"input": {"source": str(videos)}, "model": {"path": str(model_dir)}, "output": {"table": table}}
    cfg = load_config(EmbedJobConfig, None, args.overrides, flags=flags)
    summary = run_embed(cfg, progress=not args.no_progress)
    print(summary.render())
    session = SearchSession.open(table)
    print()
    print(format_results(session.by_text("a red circle moves from left to right", 5),
                         title="query: 'a red circle moves from left to right' (tiny random model: scores are noise)"))
    first = sorted(videos.glob("*.mp4"))[0]
    print()
    print(format_results(session.by_video(str(first), 5), title=f"query video: {first.name}"))
    return 0


# ---------------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tara-batch", description="Batch video embeddings with TARA on Ray + LanceDB")
    p.add_argument("--version", action="version", version=f"tara-batch {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=1, help="more logging (-vv for debug)")
    p.add_argument("-q", "--quiet", action="store_const", const=0, dest="verbose", help="warnings only")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("embed", help="embed a folder, s3:// prefix or manifest of videos into a LanceDB table")
    e.add_argument("--input", help="local directory/file or s3://bucket/prefix")
    e.add_argument("--manifest", help="CSV/Parquet/JSONL file listing video URIs (instead of --input)")
    e.add_argument("--model", help="checkpoint directory or s3:// prefix (Qwen2-VL layout)")
    e.add_argument("--table", help="output table: <database dir>/<table name>, e.g. ./index.lancedb/videos")
    e.add_argument("--config", help="YAML job config (see ray_jobs/embed.yaml)")
    e.add_argument("--overwrite", action="store_true", help="replace the table instead of adding to it")
    e.add_argument("--no-progress", action="store_true")
    e.add_argument("--retry-failed", action="store_true",
                   help="also retry permanent failures (corrupt, empty, ...) of unchanged objects")
    e.add_argument("--only-failed", action="store_true", help="process only videos in the failure ledger")
    e.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    e.set_defaults(func=cmd_embed)

    s = sub.add_parser("search", help="top-k videos for a text query or a query video")
    s.add_argument("--table", required=True)
    s.add_argument("query", nargs="?", help="text query")
    s.add_argument("--video", help="query video URI (its stored vector is used when it is in the table)")
    s.add_argument("--edit", help="with --video: a composed query (the video with this edit applied)")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--offset", type=int, default=0, help="skip this many results (pagination)")
    s.add_argument("--min-duration", type=float, help="only videos at least this long (seconds)")
    s.add_argument("--max-duration", type=float, help="only videos at most this long (seconds)")
    s.add_argument("--uri-prefix", help="only URIs starting with this, e.g. s3://archive/2024/")
    s.add_argument("--uri-glob", help="only URIs matching this glob (`*` within a folder, `**` across)")
    s.add_argument("--created-after", help="only rows embedded at or after this ISO-8601 time")
    s.add_argument("--created-before", help="only rows embedded at or before this ISO-8601 time")
    s.add_argument("--window-start", type=float, help="segment indexes: windows starting at or after (s)")
    s.add_argument("--window-end", type=float, help="segment indexes: windows ending at or before (s)")
    s.add_argument("--group-by-video", action="store_true", help="segment indexes: the best window per video")
    s.add_argument("--model", help="checkpoint to embed the query with (default: the one recorded in the table)")
    s.add_argument("--version", help="search this model version (id or prefix) instead of the live one")
    s.add_argument("--set", dest="overrides", action="append", default=[],
                   help="s3.* settings as key=value, e.g. --set s3.endpoint_url=http://127.0.0.1:9000")
    s.set_defaults(func=cmd_search)

    sv = sub.add_parser("serve", help="the query service and web page over an index (FastAPI + uvicorn)")
    sv.add_argument("--table", required=True)
    sv.add_argument("--host", default="127.0.0.1", help="interface to bind; anything but loopback needs --token")
    sv.add_argument("--port", type=int, default=8000)
    sv.add_argument("--token", help="required on every request but /healthz (default: $TARA_BATCH_TOKEN)")
    sv.add_argument("--model", help="checkpoint for query embeddings (default: the one the table records)")
    sv.add_argument("--version", help="serve this model version instead of the live one")
    sv.add_argument("--cors-origin", action="append", default=[], help="allow this browser origin (repeat)")
    sv.add_argument("--max-upload-mb", type=float, default=64.0)
    sv.add_argument("--thumbnail-cache-mb", type=float, default=256.0)
    sv.add_argument("--set", dest="overrides", action="append", default=[], help="s3.* settings as key=value")
    sv.set_defaults(func=cmd_serve)

    op = sub.add_parser("optimize", help="compact a table, fold new rows into its indices, remove old versions")
    op.add_argument("--table", required=True)
    op.add_argument("--version", help="this model version (default: the live one, else the newest)")
    op.add_argument("--retention-days", type=float, default=7.0,
                    help="keep versions younger than this (readers may hold them); the live one is always kept")
    op.add_argument("--set", dest="overrides", action="append", default=[], help="s3.* settings as key=value")
    op.set_defaults(func=cmd_optimize)

    ix = sub.add_parser("index", help="build (or rebuild) the ANN index of a table")
    ix.add_argument("--table", required=True)
    ix.add_argument("--type", default="IVF_HNSW_SQ", choices=["IVF_HNSW_SQ", "IVF_PQ", "IVF_FLAT"],
                    help="IVF_HNSW_SQ: best recall (1 byte per dimension); IVF_PQ: 16x smaller, lower recall")
    ix.add_argument("--set", dest="overrides", action="append", default=[], help="s3.* settings as key=value")
    ix.set_defaults(func=cmd_index)

    st = sub.add_parser("status", help="versions of an index: rows, failures, coverage, which one is live")
    st.add_argument("--table", required=True)
    st.add_argument("--json", action="store_true")
    st.add_argument("--set", dest="overrides", action="append", default=[], help="s3.* settings as key=value")
    st.set_defaults(func=cmd_status)

    f = sub.add_parser("failures", help="open failures (latest attempt per video) of an index")
    f.add_argument("--table", required=True)
    f.add_argument("--version", help="model version (default: live, else newest)")
    f.add_argument("--kind", help="only this error kind, e.g. corrupt")
    f.add_argument("--limit", type=int, default=50)
    f.add_argument("--csv", action="store_true", help="all rows as CSV on stdout")
    f.add_argument("--set", dest="overrides", action="append", default=[], help="s3.* settings as key=value")
    f.set_defaults(func=cmd_failures)

    pr = sub.add_parser("promote", help="make a complete version the live one (what search uses)")
    pr.add_argument("--table", required=True)
    pr.add_argument("--version", required=True)
    pr.add_argument("--set", dest="overrides", action="append", default=[], help="s3.* settings as key=value")
    pr.set_defaults(func=cmd_promote)

    pn = sub.add_parser("prune", help="drop old (non-live) versions of an index")
    pn.add_argument("--table", required=True)
    pn.add_argument("--version", help="only this version (default: every non-live version)")
    pn.add_argument("--set", dest="overrides", action="append", default=[], help="s3.* settings as key=value")
    pn.set_defaults(func=cmd_prune)

    cv = sub.add_parser("convert", help="convert a Tarsier2/TARA checkpoint to the Qwen2-VL layout (transformers + vLLM)")
    cv.add_argument("src", help="Tarsier2/TARA checkpoint directory (model_type llava, safetensors)")
    cv.add_argument("dst", help="output directory (must not exist or be empty)")
    cv.add_argument("--max-shard-gb", type=float, default=5.0, help="output shard size; peak memory is about one shard")
    cv.add_argument("--no-verify", action="store_true", help="skip the load check of the result")
    cv.add_argument("--overwrite", action="store_true", help="replace a non-empty dst")
    cv.set_defaults(func=cmd_convert)

    sm = sub.add_parser("smoke", help="check a checkpoint: both backends' token ids and cosines, golden cosines")
    sm.add_argument("--model", required=True)
    sm.add_argument("--video", help="a video file (folding_paper.mp4 from the TARA repository for --golden)")
    sm.add_argument("--golden", action="store_true", help="check the published cosines (real TARA weights)")
    sm.add_argument("--frames", type=int, default=8)
    sm.add_argument("--backends", choices=["both", "transformers", "vllm"], default="both")
    sm.add_argument("--device", default="auto")
    sm.set_defaults(func=cmd_smoke)

    ev = sub.add_parser("eval", help="evaluate a model on a benchmark (CiA, RTime, NegBench, CoVR, Charades-STA, own)")
    ev.add_argument("--benchmark", required=True, choices=["cia", "rtime", "negbench", "covr", "charades-sta",
                                                           "generic"])
    ev.add_argument("--annotations", required=True, nargs="+",
                    help="the benchmark's file(s): negbench takes standard + negated; generic: queries [gallery "
                         "relevance] or one JSON/JSONL")
    ev.add_argument("--media", help="directory or s3:// prefix the annotation paths are relative to")
    ev.add_argument("--model", required=True)
    ev.add_argument("--out", required=True, help="output dir: video index, JSON + Markdown reports")
    ev.add_argument("--config", help="embed job YAML (decode, embed, profile, s3 sections are used)")
    ev.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    ev.set_defaults(func=cmd_eval)

    ec = sub.add_parser("eval-compare", help="side-by-side Markdown table of two or more eval reports (JSON)")
    ec.add_argument("reports", nargs="+")
    ec.set_defaults(func=cmd_eval_compare)

    tr = sub.add_parser("train", help="the TARA text-only contrastive fine-tune on Ray Train (see ray_jobs/train.yaml)")
    tr.add_argument("--config", required=True, help="YAML train config (ray_jobs/train.yaml, ray_jobs/train_tiny.yaml)")
    tr.add_argument("overrides", nargs="*", help="overrides as section.field=value, e.g. train.lr=1e-5")
    tr.set_defaults(func=cmd_train)

    mt = sub.add_parser("make-triplets", help="training triplets with hard negatives: temporal, negation, core, "
                        "composed, order (T3), or a mix of them")
    from tara_batch.train.triplets.command import add_arguments  # cheap: no torch / ray imports

    add_arguments(mt)
    mt.set_defaults(func=cmd_make_triplets)

    m = sub.add_parser("make-tiny-model", help="build a tiny random Qwen2-VL checkpoint offline (tests, demos)")
    m.add_argument("out_dir")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--layout", choices=["qwen2_vl", "tarsier2"], default="qwen2_vl",
                   help="tarsier2: the released TARA layout (model_type llava), to try `convert` on")
    m.set_defaults(func=cmd_make_tiny_model)

    a = sub.add_parser("make-samples", help="write N short real H.264 videos (moving shapes)")
    a.add_argument("out_dir")
    a.add_argument("-n", type=int, default=24)
    a.add_argument("--seed", type=int, default=0)
    a.set_defaults(func=cmd_make_samples)

    tw = sub.add_parser("make-toyworld", help="write the toy world: real H.264 clips with chiral events, captions, "
                        "held-out compositions, CiA and retrieval annotations")
    tw.add_argument("out_dir")
    tw.add_argument("--seed", type=int, default=0)
    tw.add_argument("--no-progress", action="store_true")
    tw.add_argument("overrides", nargs="*", help="world.* settings, e.g. world.train_clips=2 world.families=[size]")
    tw.set_defaults(func=cmd_make_toyworld)

    ty = sub.add_parser("toyworld", help="the whole TARA recipe on the toy world (world, stage 1, stage 2, eval)")
    tys = ty.add_subparsers(dest="toy_command", required=True)
    tr = tys.add_parser("run", help="run the recipe into OUT and write report.md / report.json")
    tr.add_argument("out_dir")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--config", help="YAML recipe config (see ray_jobs/toyworld.yaml)")
    tr.add_argument("--no-progress", action="store_true")
    tr.add_argument("overrides", nargs="*", help="recipe settings, e.g. stage1.epochs=2 stage2.lr=1e-5")
    tr.set_defaults(func=cmd_toyworld_run)

    d = sub.add_parser("demo", help="the trained toy TARA model searching clips it never saw, all local")
    d.add_argument("--dir", default="./tara-demo")
    d.add_argument("--retrain", action="store_true", help="train the toy model here with the recipe instead of "
                   "using the shipped checkpoint (tens of minutes)")
    d.add_argument("--random-model", action="store_true",
                   help="the plumbing-only demo: a tiny random model and a sample archive (about 2 minutes)")
    d.add_argument("-n", type=int, default=24, help="--random-model: sample videos to generate")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # `section.field=value` overrides written after an option (`run OUT --seed 1 stage1.epochs=2`) are not taken by
    # the positional list, which argparse has already closed: hand them back to it.
    if hasattr(args, "overrides") and extra and all(_OVERRIDE.match(x) for x in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except (ConfigError, InputError) as exc:
        if args.verbose > 1:  # -vv: the traceback too (for a bug report); otherwise the one line that says what to fix
            traceback.print_exc()
        print(f"tara-batch: {exc}", file=sys.stderr)
        return 2
    except JobAborted as exc:
        print(f"tara-batch: job stopped:\n{exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
