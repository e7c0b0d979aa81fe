"""The toy world: proof on a laptop that TARA's text-only tuning fixes chiral retrieval, and the demo's default.

May import every layer below: it wires `video/` (encoding), `train/` (both stages), `eval/` (CiA scoring).

    world.py    the procedural archive: real H.264 clips of chiral events, captions, held-out compositions
    tasks.py    stage 1's generative tasks (captions, questions, one-word summaries) from the training split
    recipe.py   world -> stage 1 (caption objective) -> stage 2 (TARA's text-only tune) + ablation -> eval -> report
"""
