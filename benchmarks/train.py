"""Training benchmark: steps/s, tokens/s, peak RSS per worker and held-out accuracy, 1 vs 2 Ray Train workers (CPU).

Runs the real `run_training` on the tiny Qwen2-VL with a synthetic temporal triplet set (held-out subjects and
objects unseen in training), the same optimizer batch (16 triplets) and step count in every setting:

    python benchmarks/train.py                 # 1 worker x micro 16 (1 and 2 threads), 2 workers x micro 8
    python benchmarks/train.py --out bench-train.json

The tiny model has ~1 M parameters: the numbers measure the training loop and gloo overhead on this machine, not
model FLOPs; never extrapolate them to 7B. Note the contrastive pool differs: 1 worker sees 16 candidates per side,
2 workers see 2 x 8 gathered - the same 16.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import tempfile
import time
from pathlib import Path

PAIRS = [("opens", "closes"), ("picks up", "puts down"), ("folds", "unfolds"), ("pushes", "pulls"),
         ("lifts", "lowers"), ("enters", "exits"), ("screws", "unscrews"), ("climbs", "descends")]
SUBJECTS = ["the man", "a woman", "the child", "a person", "the cook", "my friend", "the boy", "her sister"]
OBJECTS = ["door", "box", "paper", "cart", "lid", "window", "bag", "drawer", "ladder", "bottle"]
HELD_SUBJECTS = ["the doctor", "a girl", "the worker", "an old man"]
HELD_OBJECTS = ["cupboard", "blanket", "gate", "jar", "suitcase"]


def write_triplets(path: Path, subjects, objects, n: int, seed: int) -> Path:
    rng = random.Random(seed)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["sent0", "sent1", "hard_neg", "source"])
        for _ in range(n):
            pair = rng.choice(PAIRS)
            verb, opposite = pair if rng.random() < 0.5 else pair[::-1]
            s1, s2 = rng.sample(subjects, 2)
            obj = rng.choice(objects)
            w.writerow([f"{s1} {verb} the {obj}", f"{s2} {verb} the {obj}", f"{s1} {opposite} the {obj}", "temporal"])
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--rows", type=int, default=480)
    args = parser.parse_args(argv)

    import ray

    from tara_batch.config import load_config
    from tara_batch.models.tiny import build_tiny_model
    from tara_batch.train.config import TrainConfig
    from tara_batch.train.loop import run_training
    from tara_batch.train.model import LazySafetensors

    settings = [("1 worker, 1 thread", 1, 16, 1), ("1 worker, 2 threads", 1, 16, 2), ("2 workers, 1 thread each", 2, 8, 1)]
    results, first = [], None
    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        root = Path(tmp)
        model = build_tiny_model(root / "tiny")
        train = write_triplets(root / "train.csv", SUBJECTS, OBJECTS, args.rows, seed=0)
        held = write_triplets(root / "held.csv", HELD_SUBJECTS, HELD_OBJECTS, 200, seed=1)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        for label, workers, micro, threads in settings:
            cfg = load_config(TrainConfig, Path(__file__).resolve().parents[1] / "ray_jobs" / "train_tiny.yaml", [
                f"model.path={model}", f"data.sources=[{{path: {train}}}]", f"validation.path={held}",
                f"scaling.num_workers={workers}", f"train.micro_batch={micro}", f"scaling.torch_threads={threads}",
                "run.eval_every=1000", "run.checkpoint_every=1000", f"run.storage_path={root / 'runs'}",
                f"run.name=bench-{workers}-{threads}", f"output.dir={root / f'out-{workers}-{threads}'}",
            ])
            t0 = time.perf_counter()
            res = run_training(cfg)
            row = {
                "setting": label, "workers": workers, "micro_batch": micro, "threads": threads,
                "steps": res.step, "steps_per_s": round(res.steps_per_s, 2), "tokens_per_s": round(res.tokens_per_s),
                "peak_rss_mb": [round(v) for v in res.peak_rss_mb],
                "accuracy_before": round(res.before["all"]["accuracy"], 3),
                "accuracy_after": round(res.after["all"]["accuracy"], 3),
                "wall_s": round(time.perf_counter() - t0, 1),
            }
            # Same optimizer batch, same rows in the same order: the distributed run must reach the same weights.
            weights = LazySafetensors([Path(res.output_dir) / "model.safetensors"])
            if first is None:
                first = weights
            row["max_abs_weight_diff_vs_first"] = max(
                float((weights[k] - first[k]).abs().max()) for k in weights if not k.startswith("visual."))
            results.append(row)
            print(json.dumps(row), flush=True)
        ray.shutdown()
    print(f"\n{'setting':<26} {'steps/s':>8} {'tokens/s':>9} {'peak RSS MB':>14} {'acc before->after':>18} "
          f"{'wall s':>7} {'max |dW| vs first':>18}")
    for r in results:
        rss = "/".join(str(v) for v in r["peak_rss_mb"])
        acc = f"{r['accuracy_before']:.3f}->{r['accuracy_after']:.3f}"
        print(f"{r['setting']:<26} {r['steps_per_s']:>8} {r['tokens_per_s']:>9} {rss:>14} {acc:>18} {r['wall_s']:>7} "
              f"{r['max_abs_weight_diff_vs_first']:>18.2e}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
