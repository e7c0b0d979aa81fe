"""Re-embed job: build the configured model version of an index beside the live one, backfill it incrementally,
and switch `search` to it atomically once it is complete. Meant to run on a schedule (e.g. nightly): each run
continues where the last one stopped and picks up new or changed videos; the old version stays until pruned.

    ray job submit --address http://RAY_HEAD:8265 --working-dir . -- \
        python ray_jobs/reembed.py --config ray_jobs/embed.yaml model.path=s3://models/tara-v2/

Same library call as `tara-batch embed`, followed by the index status. Tests call `main([...])` in-process.
"""

from __future__ import annotations

import argparse
import sys

from tara_batch.cli import OVERRIDES_HELP, _setup_logging
from tara_batch.config import EmbedJobConfig, load_config
from tara_batch.embed.job import run_embed
from tara_batch.errors import ConfigError, InputError, JobAborted
from tara_batch.index.status import index_status, render_status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML job config")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("overrides", nargs="*", help=OVERRIDES_HELP)
    args = parser.parse_args(argv)
    _setup_logging(1)
    try:
        cfg = load_config(EmbedJobConfig, args.config, args.overrides)
        summary = run_embed(cfg, progress=not args.no_progress)
        print(summary.render())
        print(render_status(index_status(cfg.output.table, cfg.s3.options())))
    except (ConfigError, InputError) as exc:
        print(f"reembed: {exc}", file=sys.stderr)
        return 2
    except JobAborted as exc:
        print(f"reembed: job stopped:\n{exc}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":  # the guard matters: Ray (and vLLM's engine) start worker processes with spawn
    raise SystemExit(main())
