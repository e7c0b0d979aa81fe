"""Toy-world recipe job: the whole TARA recipe (world, stage 1, stage 2 + ablation, evaluation) on the toy world.

Same library call as `tara-batch toyworld run` (`tara_batch.toyworld.recipe.run_recipe`); this script exists for
`ray job submit`:

    ray job submit --address http://RAY_HEAD:8265 --working-dir . -- \
        python ray_jobs/toyworld.py ./toy --config ray_jobs/toyworld.yaml --seed 0

and locally (starts a 2-CPU Ray; about 20 minutes on 2 cores):

    python ray_jobs/toyworld.py ./toy --seed 0 stage1.epochs=2

Finished stages are reused by a rerun into the same directory. Tests call `main([...])` in-process.
"""

from __future__ import annotations

import argparse
import sys

from tara_batch.cli import OVERRIDES_HELP, _setup_logging
from tara_batch.config import dumps, load_config
from tara_batch.errors import ConfigError, InputError
from tara_batch.toyworld.recipe import RecipeConfig, render_report, run_recipe


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    parser.add_argument("--config", help="YAML recipe config (ray_jobs/toyworld.yaml)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", help=OVERRIDES_HELP.replace(
        "decode.backend=decord profile.num_frames=16", "stage1.epochs=2 stage2.lr=1e-5"))
    args = parser.parse_args(argv)
    _setup_logging(1)
    try:
        cfg = load_config(RecipeConfig, args.config, [*args.overrides, f"seed={args.seed}"])
        if args.print_config:
            print(dumps(cfg))
            return 0
        report = run_recipe(args.out_dir, cfg)
    except (ConfigError, InputError) as exc:
        print(f"toyworld: {exc}", file=sys.stderr)
        return 2
    print(render_report(report))
    return 0


if __name__ == "__main__":  # the guard matters: Ray starts worker processes that may import this module
    raise SystemExit(main())
