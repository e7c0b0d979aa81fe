"""Train job: fine-tune TARA's LLM on text triplets with Ray Train, merge it back into a complete checkpoint.

Same library call as `tara-batch train` (`tara_batch.train.loop.run_training`); this script exists for
`ray job submit` (8 GPUs, the paper's recipe):

    ray job submit --address http://RAY_HEAD:8265 --working-dir . -- \
        python ray_jobs/train.py --config ray_jobs/train.yaml model.path=s3://models/tarsier2-qwen2vl \
        "data.sources=[{path: s3://data/nli_nuance.parquet}]" output.dir=s3://models/tara-ft \
        run.storage_path=s3://runs/tara

and on one CPU machine with the tiny model (`tara-batch make-tiny-model ./tiny-tara` first):

    python ray_jobs/train.py --config ray_jobs/train_tiny.yaml model.path=./tiny-tara \
        "data.sources=[{path: triplets.csv}]" output.dir=./tiny-tara-ft

Rerunning the same command resumes from the latest checkpoint of the run (same run.name and run.storage_path).
Tests call `main([...])` in-process.
"""

from __future__ import annotations

import argparse
import sys

from tara_batch.cli import OVERRIDES_HELP, _setup_logging
from tara_batch.config import dumps, load_config
from tara_batch.errors import ConfigError, InputError
from tara_batch.train.config import TrainConfig
from tara_batch.train.loop import run_training


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="YAML job config (ray_jobs/train.yaml, ray_jobs/train_tiny.yaml)")
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument("overrides", nargs="*", help=OVERRIDES_HELP.replace(
        "decode.backend=decord profile.num_frames=16", "train.lr=0.0001 scaling.num_workers=2"))
    args = parser.parse_args(argv)
    _setup_logging(1)
    try:
        cfg = load_config(TrainConfig, args.config, args.overrides)
        if args.print_config:
            print(dumps(cfg))
            return 0
        result = run_training(cfg)
    except (ConfigError, InputError) as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 2
    print(result.render())
    return 0


if __name__ == "__main__":  # the guard matters: Ray starts worker processes that may import this module
    raise SystemExit(main())
