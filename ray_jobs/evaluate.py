"""Evaluate job: embed a benchmark's videos with the embed pipeline (reused per model version), its queries with
the same model, and write JSON + Markdown reports with the published figures beside ours.

    ray job submit --address http://RAY_HEAD:8265 --working-dir . -- python ray_jobs/evaluate.py \
        --benchmark cia --annotations s3://bench/cia/ssv2.csv --media s3://bench/ssv2/ \
        --model s3://models/tara-qwen2vl/ --out /results/cia-ssv2 --config ray_jobs/embed.yaml

Tests call `main([...])` in-process.
"""

from __future__ import annotations

import sys

from tara_batch.cli import main as cli_main


def main(argv: list[str] | None = None) -> int:
    return cli_main(["eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":  # the guard matters: Ray (and vLLM's engine) start worker processes with spawn
    raise SystemExit(main())
