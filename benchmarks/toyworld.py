"""The toy-world recipe over seeds: does text-only TARA tuning fix chiral retrieval? Mean and spread per model.

    python benchmarks/toyworld.py --out ./toy-bench --seeds 0 1 2            # the README's "Does it work?" table
    python benchmarks/toyworld.py --out ./toy-bench --seeds 0 --ship         # + ship seed 0's stage 2 checkpoint
    python benchmarks/toyworld.py --out ./toy-quick --seeds 0 stage1.epochs=1  # any recipe override

Each seed is a full `tara-batch toyworld run` (world, stage 1, stage 2, ablation, evaluation) in `<out>/seed<N>`;
a finished seed is reused. Writes `<out>/summary.json` and `<out>/summary.md` (mean +- standard deviation over the
seeds, per model and metric, per family too) and copies one modality plot per model into `<out>/`.

`--ship` writes the first seed's stage-2 model into `tara_batch/toyworld/checkpoint/` (bfloat16 weights, ~7 MB,
with its report; the checkpoint `tara-batch demo` uses) and its stage-1 model into `checkpoint_stage1/` (where the
method guard starts). `tests/integration/toyworld/test_recipe_guard.py` checks that the shipped weights still give
the recorded metrics; `test_shipped.py` (slow tier) that the recipe, rerun, reproduces them.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METRICS = ("chiral_accuracy", "chiral_map", "static_map", "all_map", "t2v_r1", "t2v_r5", "modality_gap")


def aggregate(reports: list[dict]) -> dict:
    models = list(reports[0]["results"])
    out: dict = {"seeds": [r["seed"] for r in reports], "models": {},
                 "total_seconds": [r["total_seconds"] for r in reports]}
    for name in models:
        entry = {}
        for metric in METRICS:
            values = [r["results"][name][metric] for r in reports]
            entry[metric] = {"mean": statistics.fmean(values),
                             "std": statistics.stdev(values) if len(values) > 1 else 0.0, "values": values}
        families = sorted({f for r in reports for f in r["results"][name]["chiral_accuracy_by_family"]})
        entry["chiral_accuracy_by_family"] = {
            f: statistics.fmean(r["results"][name]["chiral_accuracy_by_family"][f] for r in reports)
            for f in families}
        out["models"][name] = entry
    return out


def render(summary: dict) -> str:
    seeds = summary["seeds"]
    head = ("| model | chiral acc | static mAP | chiral mAP | all mAP | t2v R@1 | t2v R@5 | modality gap |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for name, e in summary["models"].items():
        def cell(m: str, digits: int = 1, e: dict = e) -> str:
            return f"{e[m]['mean']:.{digits}f} ± {e[m]['std']:.{digits}f}"
        rows.append(f"| {name} | {cell('chiral_accuracy')} | {cell('static_map')} | {cell('chiral_map')} | "
                    f"{cell('all_map')} | {cell('t2v_r1')} | {cell('t2v_r5')} | {cell('modality_gap', 3)} |")
    families = sorted({f for e in summary["models"].values() for f in e["chiral_accuracy_by_family"]})
    fam = ["", "Chiral accuracy per family (mean over seeds; chance 50):", "",
           "| model | " + " | ".join(families) + " |", "|---|" + "---:|" * len(families)]
    fam += [f"| {n} | " + " | ".join(f"{e['chiral_accuracy_by_family'][f]:.0f}" for f in families) + " |"
            for n, e in summary["models"].items()]
    secs = summary["total_seconds"]
    return (f"Seeds {seeds}, mean ± sd. Full recipe per seed: {statistics.fmean(secs) / 60:.1f} min on this machine "
            f"(world, stage 1, stage 2, ablation, evaluation).\n\n" + head + "\n" + "\n".join(rows) + "\n"
            + "\n".join(fam) + "\n")


def ship(seed_dir: Path, target: Path) -> None:
    """Seed's stage-2 model -> package data `target` (the demo's model), its stage-1 model -> `target`_stage1 (the
    method guard's starting point): bfloat16 weights (half the bytes; the embedder computes in float32)."""
    _ship_model(seed_dir / "stage2", target)
    _ship_model(seed_dir / "stage1", target.with_name(target.name + "_stage1"))
    shutil.copy2(seed_dir / "report.json", target / "toyworld_report.json")


def _ship_model(src: Path, target: Path) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for p in src.iterdir():
        if p.name.endswith(".safetensors"):
            tensors = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in load_file(p).items()}
            save_file(tensors, target / p.name, metadata={"format": "pt"})
        elif p.is_file():
            shutil.copy2(p, target / p.name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="./toy-bench")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--ship", action="store_true", help="copy the first seed's stage 2 model into the package")
    ap.add_argument("overrides", nargs="*", help="recipe overrides, e.g. stage1.epochs=2")
    args = ap.parse_args(argv)

    from tara_batch.config import load_config
    from tara_batch.toyworld.recipe import RecipeConfig, run_recipe

    out = Path(args.out).resolve()
    reports = []
    for seed in args.seeds:
        cfg = load_config(RecipeConfig, None, [*args.overrides, f"seed={seed}"])
        reports.append(run_recipe(out / f"seed{seed}", cfg))
    summary = aggregate(reports)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(render(summary))
    for name, r in reports[0]["results"].items():
        if r.get("plot"):
            shutil.copy2(r["plot"], out / (name.split(" (")[0].replace(" ", "_") + ".modality.png"))
    print(render(summary))
    if args.ship:
        ship(out / f"seed{args.seeds[0]}", REPO / "tara_batch" / "toyworld" / "checkpoint")
        print(f"shipped {out / f'seed{args.seeds[0]}' / 'stage2'} -> tara_batch/toyworld/checkpoint/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
