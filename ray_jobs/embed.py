"""Embed job: list videos -> decode on CPU actors -> TARA embeddings on GPU actors -> LanceDB.

Same library call as `tara-batch embed`; this script exists for `ray job submit`:

    ray job submit --address http://RAY_HEAD:8265 --working-dir . -- \
        python ray_jobs/embed.py --config ray_jobs/embed.yaml input.source=s3://archive/videos/ \
        model.path=s3://models/tara-qwen2vl output.table=s3://index/index.lancedb/videos

Tests call `main([...])` in-process.
"""

from __future__ import annotations

import argparse
import sys

from tara_batch.cli import OVERRIDES_HELP, _setup_logging
from tara_batch.config import EmbedJobConfig, load_config
from tara_batch.embed.job import run_embed
from tara_batch.errors import ConfigError, InputError, JobAborted


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML job config")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--retry-failed", action="store_true")
    parser.add_argument("--only-failed", action="store_true")
    parser.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    args = parser.parse_args(argv)
    _setup_logging(1)
    try:
        cfg = load_config(EmbedJobConfig, args.config, args.overrides)
        summary = run_embed(cfg, overwrite=args.overwrite, progress=not args.no_progress,
                            retry_failed=args.retry_failed, only_failed=args.only_failed)
    except (ConfigError, InputError) as exc:
        print(f"embed: {exc}", file=sys.stderr)
        return 2
    except JobAborted as exc:
        print(f"embed: job stopped:\n{exc}", file=sys.stderr)
        return 3
    print(summary.render())
    return 0


if __name__ == "__main__":  # the guard matters: Ray (and vLLM's engine) start worker processes with spawn
    raise SystemExit(main())
