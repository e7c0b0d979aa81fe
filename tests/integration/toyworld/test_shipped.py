"""The shipped toy checkpoint is the recipe's own output: rerunning `tara-batch toyworld run` (seed 0, the shipped
config, without the ablation) reproduces the metrics recorded with the shipped weights, within seed-free run-to-run
tolerance (float32 training on CPU is deterministic on one machine; other CPUs may round differently).

Slow tier: the full recipe, about 15-20 minutes on 2 cores."""

from __future__ import annotations

import json

import pytest

from tara_batch.toyworld.demo import SHIPPED
from tara_batch.toyworld.recipe import RecipeConfig, run_recipe

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TOLERANCE = 8.0  # points of chiral accuracy / R@1 (eight of the 96 held-out pairs)


def test_recipe_reproduces_the_shipped_metrics(ray_session, tmp_path):
    recorded = json.loads((SHIPPED / "toyworld_report.json").read_text())
    report = run_recipe(tmp_path / "recipe", RecipeConfig(seed=recorded["seed"], ablation=False), progress=False)
    for name in ("stage 1 (zero-shot EOL)", "stage 2 (TARA)"):
        for metric in ("chiral_accuracy", "t2v_r1", "static_map"):
            got, want = report["results"][name][metric], recorded["results"][name][metric]
            assert abs(got - want) <= TOLERANCE, (name, metric, got, want)
