"""`tara-batch`: the one command-line entry point. Subcommands call the same library functions as ray_jobs/.

    tara-batch demo                                   # tiny model + sample archive + embed + search, all local
    tara-batch embed --input s3://archive/videos/ --model /models/tara --table ./index.lancedb/videos
    tara-batch search --table ./index.lancedb/videos "someone closing a door" -k 10
    tara-batch search --table ./index.lancedb/videos --video s3://archive/videos/clip_0042.mp4 -k 10
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from tara_batch import __version__
from tara_batch.errors import ConfigError, InputError

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
    from tara_batch.pipeline import run_embed

    cfg = load_config(EmbedJobConfig, args.config, args.overrides, flags=embed_flags(args))
    summary = run_embed(cfg, overwrite=args.overwrite, progress=not args.no_progress)
    print(summary.render())
    return 0


# ---------------------------------------------------------------------------------------------------- search


def cmd_search(args: argparse.Namespace) -> int:
    from tara_batch.search import SearchSession, format_results

    if bool(args.query) == bool(args.video):
        raise ConfigError("search", "give a text query or --video URI (exactly one)")
    session = SearchSession.open(args.table, model=args.model, overrides=args.overrides)
    results = session.by_text(args.query, args.k) if args.query else session.by_video(args.video, args.k)
    print(format_results(results, title=f'query: {args.query!r}' if args.query else f"query video: {args.video}"))
    return 0


def cmd_index(args: argparse.Namespace) -> int:
    from tara_batch.search import SearchSession
    from tara_batch.store import build_index

    session = SearchSession.open(args.table, model=None, overrides=args.overrides, load_model=False)
    print(build_index(session.table, index_type=args.type))
    return 0


# ---------------------------------------------------------------------------------------------------- helpers


def cmd_make_tiny_model(args: argparse.Namespace) -> int:
    from tara_batch.models.tiny import build_tiny_model

    print(build_tiny_model(args.out_dir, seed=args.seed))
    return 0


def cmd_make_samples(args: argparse.Namespace) -> int:
    from tara_batch.samples import write_sample_archive

    paths = write_sample_archive(args.out_dir, n=args.n, seed=args.seed)
    print(f"wrote {len(paths)} videos to {args.out_dir}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Everything local: a tiny random model, a sample archive, the embed job, then a text and a video search."""
    from tara_batch.config import EmbedJobConfig, load_config
    from tara_batch.models.tiny import build_tiny_model
    from tara_batch.pipeline import run_embed
    from tara_batch.samples import write_sample_archive
    from tara_batch.search import SearchSession, format_results

    root = Path(args.dir).resolve()
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
    e.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    e.set_defaults(func=cmd_embed)

    s = sub.add_parser("search", help="top-k videos for a text query or a query video")
    s.add_argument("--table", required=True)
    s.add_argument("query", nargs="?", help="text query")
    s.add_argument("--video", help="query video URI (its stored vector is used when it is in the table)")
    s.add_argument("-k", type=int, default=10)
    s.add_argument("--model", help="checkpoint to embed the query with (default: the one recorded in the table)")
    s.add_argument("--set", dest="overrides", action="append", default=[],
                   help="s3.* settings as key=value, e.g. --set s3.endpoint_url=http://127.0.0.1:9000")
    s.set_defaults(func=cmd_search)

    ix = sub.add_parser("index", help="build (or rebuild) the ANN index of a table")
    ix.add_argument("--table", required=True)
    ix.add_argument("--type", default="IVF_PQ", choices=["IVF_PQ", "IVF_HNSW_SQ", "IVF_FLAT"])
    ix.add_argument("--set", dest="overrides", action="append", default=[], help="s3.* settings as key=value")
    ix.set_defaults(func=cmd_index)

    m = sub.add_parser("make-tiny-model", help="build a tiny random Qwen2-VL checkpoint offline (tests, demos)")
    m.add_argument("out_dir")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=cmd_make_tiny_model)

    a = sub.add_parser("make-samples", help="write N short real H.264 videos (moving shapes)")
    a.add_argument("out_dir")
    a.add_argument("-n", type=int, default=24)
    a.add_argument("--seed", type=int, default=0)
    a.set_defaults(func=cmd_make_samples)

    d = sub.add_parser("demo", help="tiny model + sample archive + embed + search, all local")
    d.add_argument("--dir", default="./tara-demo")
    d.add_argument("-n", type=int, default=24, help="sample videos to generate")
    d.add_argument("--no-progress", action="store_true")
    d.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return args.func(args)
    except (ConfigError, InputError) as exc:
        print(f"tara-batch: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
