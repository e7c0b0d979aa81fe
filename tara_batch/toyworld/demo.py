"""`tara-batch demo`: a trained toy TARA model searching an archive of clips it has never seen.

1. The model: the toy checkpoint shipped with the package (`tara_batch/toyworld/checkpoint/`, made by
   `tara-batch toyworld run` + `python benchmarks/toyworld.py --ship`), or with `--retrain` the recipe's own stage-2
   output, trained here (`./tara-demo/recipe/`, tens of minutes on 2 cores).
2. The archive: the toy world's held-out compositions only (no (shape, colour, event) of it occurs in training),
   rendered with a seed of its own and 3 clips per caption: real H.264 files in `./tara-demo/archive/`.
3. `tara-batch embed` of the archive into `./tara-demo/index.lancedb/videos` (a rerun embeds nothing).
4. Text queries on held-out compositions, a chiral pair among them, with the top 5, whether each is right (the
   captions are ground truth: same shape, colour and event) and precision@5; then the `tara-batch serve` command
   that opens the same index in a web page.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from tara_batch.toyworld.recipe import RecipeConfig, profile_overrides
from tara_batch.toyworld.world import Clip, World, WorldConfig, canonical_caption, make_world

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).resolve().parent / "checkpoint"
ARCHIVE_SEED = 1000  # not a training seed: fresh clips of the held-out compositions
QUERIES = (  # held-out compositions (a test checks it), with a chiral pair first
    ("red", "circle", "moves left"),
    ("red", "circle", "moves right"),
    ("green", "square", "grows"),
    ("green", "square", "shrinks"),
    ("blue", "diamond", "fills"),
)


def demo_model(root: Path, *, retrain: bool, progress: bool) -> Path:
    if not retrain and (SHIPPED / "config.json").exists():
        return SHIPPED
    from tara_batch.toyworld.recipe import run_recipe

    if not retrain:
        log.warning("no toy checkpoint is shipped in this installation; training one (--retrain)")
    run_recipe(root / "recipe", RecipeConfig(ablation=False), progress=progress)
    return root / "recipe" / "stage2"


def _clip_of(world: World) -> dict[str, Clip]:
    return {str(world.path(c)): c for c in world.clips}


def run_demo(root: str | Path, *, retrain: bool = False, progress: bool = True, overrides: list[str] | None = None,
             out=print) -> dict[str, float]:
    """Build (or reuse) everything under `root`, print the searches; returns precision@5 per query."""
    from tara_batch.config import EmbedJobConfig, load_config
    from tara_batch.embed.job import run_embed
    from tara_batch.search.session import SearchSession

    root = Path(root).expanduser().resolve()
    model = demo_model(root, retrain=retrain, progress=progress)
    world = make_world(root / "archive", dataclasses.replace(WorldConfig(seed=ARCHIVE_SEED), test_clips=3,
                                                             splits=("test",)), progress=progress)
    table = str(root / "index.lancedb" / "videos")
    flags = {"input": {"source": str(world.root / "clips" / "test")}, "model": {"path": str(model)},
             "output": {"table": table}}
    cfg = load_config(EmbedJobConfig, None, [*profile_overrides(), *(overrides or [])], flags=flags)
    summary = run_embed(cfg, progress=progress)
    out(summary.render())
    session = SearchSession.open(table)
    clips = _clip_of(world)
    precision = {}
    for colour, shape, event in QUERIES:
        query = canonical_caption(colour, shape, event)
        results = session.by_text(query, 5).to_pylist()
        hits = []
        lines = ["", f"query: {query!r}"]
        for rank, row in enumerate(results, 1):
            clip = clips.get(row["uri"])
            right = clip is not None and (clip.colour, clip.shape, clip.event) == (colour, shape, event)
            hits.append(right)
            what = clip.caption if clip else "?"
            lines.append(f"  {rank}. {'RIGHT' if right else 'wrong'}  {row['score']:.3f}  {Path(row['uri']).name:<36} "
                         f"({what})")
        precision[query] = sum(hits) / len(results) if results else 0.0
        lines.append(f"  precision@5 = {precision[query]:.1f} (3 clips in the archive match; at most 0.6)")
        out("\n".join(lines))
    mean = sum(precision.values()) / len(precision)
    out(f"\nmean precision@5 over {len(precision)} held-out queries: {mean:.2f} (a random ranking: "
        f"{3 / len(world.clips):.3f})")
    out(f"model: {model}\narchive: {world.root} ({len(world.clips)} clips of held-out compositions)\nindex: {table}")
    out(f"browse and query it in a web page: tara-batch serve --table {table}   (then open http://127.0.0.1:8000/)")
    return precision
