"""The shipped toy checkpoint is the recipe's own output: rerunning `tara-batch toyworld run` (seed 0, the shipped
config, without the ablation) gives models of the same quality as the shipped ones.

What "the same" can mean was measured, not assumed. Training is chaotic: the same seed on another CPU (CI) rounds
differently and lands elsewhere in the seed-to-seed spread. Over three seeds (README table) the spread is
chiral accuracy +-7.3 / 5.7 points (stage 1 / stage 2), static mAP +-10.5 / 11.5, text->video R@1 +-17.1 / 17.5;
a CI rerun of seed 0 gave stage-1 R@1 31.3 against the shipped 19.8. So the rerun must
* clear the same floors the guard holds the shipped models to (chiral >= 60 with chance 50, R@1 >= 10x chance),
* and keep chiral accuracy, the metric this recipe is about and the one with the tightest spread, within two
  seed-to-seed standard deviations of the shipped value. R@1 and static mAP are not compared point to point: two of
  their standard deviations span most of the scale, so a band would say nothing the floors don't.

Slow tier: the full recipe, about 15-20 minutes on 2 cores."""

from __future__ import annotations

import json

import pytest

from tara_batch.toyworld.demo import SHIPPED
from tara_batch.toyworld.recipe import RecipeConfig, run_recipe
from tara_batch.toyworld.world import load_world

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# Two seed-to-seed standard deviations of chiral accuracy over seeds 0-2 (benchmarks/toyworld.py, README table).
CHIRAL_BAND = {"stage 1 (zero-shot EOL)": 2 * 7.3, "stage 2 (TARA)": 2 * 5.7}


def test_recipe_reproduces_the_shipped_quality(ray_session, tmp_path):
    recorded = json.loads((SHIPPED / "toyworld_report.json").read_text())
    report = run_recipe(tmp_path / "recipe", RecipeConfig(seed=recorded["seed"], ablation=False), progress=False)
    chance = 100.0 / len({c.caption for c in load_world(tmp_path / "recipe" / "world").split("test")})
    for name, band in CHIRAL_BAND.items():
        got, want = report["results"][name], recorded["results"][name]
        assert got["chiral_accuracy"] >= 60.0, (name, got["chiral_accuracy"])
        assert got["t2v_r1"] >= 10 * chance, (name, got["t2v_r1"], chance)
        assert abs(got["chiral_accuracy"] - want["chiral_accuracy"]) <= band, (
            name, got["chiral_accuracy"], want["chiral_accuracy"], band)
