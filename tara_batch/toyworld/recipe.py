"""The whole TARA recipe on the toy world, on two CPU cores: world -> stage 1 -> stage 2 (+ ablation) -> evaluation.

    tara-batch toyworld run ./toy --seed 0            # or: python ray_jobs/toyworld.py ./toy --seed 0
    tara-batch toyworld run ./toy stage1.epochs=1 stage2.epochs=2     # any RecipeConfig field as section.field=value

In numbered stages (each output is kept, so a rerun with the same settings skips what is done):
 1. world     `make_world`: real H.264 clips with chiral events; test compositions held out of everything below.
 2. base      a random Qwen2-VL of the production architecture, its tokenizer trained on the world's words.
 3. stage 1   the "Tarsier2" stand-in: `tara-batch train` with `objective: caption` (Ray Train, the whole model)
              on generative tasks about the training clips (`tasks.py`): captions, questions, one-word summaries.
 4. triplets  `tara-batch make-triplets` on the training captions only: temporal (chiral), negation, order (T3);
              mixed into the full set and an ablation set without the chiral kind.
 5. stage 2   TARA as published: `tara-batch train` (contrastive, text only, LLM only, vision frozen) from stage 1,
              once on the full triplets and once on the ablation.
 6. eval      `tara-batch eval --benchmark cia` on the held-out clips for stage 1 (zero-shot EOL), stage 2 and the
              ablation: chiral binary accuracy (overall and per family), chiral / static / all mAP, text->video
              R@1 / R@5, modality gap, and the modality plot.
Then `report.json` and `report.md` (with the plots) in OUT. `benchmarks/toyworld.py` runs it over seeds.

The toy profile differs from TARA's in two settings, both recorded in every table's metadata: 56x56 frames, and no
frame duplication (each temporal patch holds two consecutive sampled frames, so the patch embedding sees motion;
docs/LOG.md has the measurements that led there). Prompts, pooling, normalisation and frame sampling are TARA's.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tara_batch.config import RayConfig
from tara_batch.errors import ConfigError
from tara_batch.models.profile import ModelProfile
from tara_batch.toyworld.tasks import TaskMix, write_stage1_tasks
from tara_batch.toyworld.world import COLOURS, EVENT_WORDS, FAMILIES, SHAPES, World, WorldConfig, make_world

log = logging.getLogger(__name__)

# 56x56 frames (2x2 merged tokens per temporal patch), 8 frames, no duplication: 16 visual tokens per clip.
TOY_PROFILE = ModelProfile(num_frames=8, duplicate_frames=False, max_pixels=56 * 56, min_pixels=56 * 56)
PROMPT_WORDS = ("Describe the video. What does the shape do? What colour is the shape? What shape is it? "
                "the does not move grow shrink appear disappear rotate fill empty turn then small large gray white")


@dataclass(frozen=True)
class ToyModelConfig:
    """Sizes of the toy Qwen2-VL (about 3.4 M parameters at the defaults). Head dim 64, M-RoPE [8, 12, 12]."""

    hidden: int = 256
    layers: int = 4
    heads: int = 4
    kv_heads: int = 2
    intermediate: int = 512
    vision_depth: int = 2
    vision_embed: int = 128
    vision_heads: int = 2
    vocab: int = 1024

    def __post_init__(self) -> None:
        if self.hidden % self.heads or self.hidden // self.heads != 64:
            raise ConfigError("model.heads", "the toy model keeps a head dim of 64 (M-RoPE [8, 12, 12]): "
                              f"hidden / heads must be 64, got {self.hidden} / {self.heads}")


@dataclass(frozen=True)
class StageConfig:
    """One training stage (a `tara-batch train` run): optimisation settings."""

    epochs: int = 1
    micro_batch: int = 16
    lr: float = 5e-4
    warmup_ratio: float = 0.05
    tau: float = 0.05  # stage 2 only
    validation_fraction: float = 0.02


@dataclass(frozen=True)
class TripletMix:
    """Stage 2's mixture (rows per kind; None = all rows the kind made)."""

    temporal: int | None = None
    negation: int | None = None
    order: int | None = None


@dataclass(frozen=True)
class RecipeConfig:
    seed: int = 0
    world: WorldConfig = field(default_factory=WorldConfig)
    model: ToyModelConfig = field(default_factory=ToyModelConfig)
    tasks: TaskMix = field(default_factory=TaskMix)
    stage1: StageConfig = field(default_factory=lambda: StageConfig(epochs=4, micro_batch=16, lr=5e-4))
    stage2: StageConfig = field(default_factory=lambda: StageConfig(epochs=3, micro_batch=32, lr=2e-5,
                                                                   warmup_ratio=0.1))
    triplets: TripletMix = field(default_factory=TripletMix)
    ablation: bool = True  # also train stage 2 without the chiral (temporal) kind
    profile: ModelProfile = TOY_PROFILE
    ray: RayConfig = field(default_factory=lambda: RayConfig(num_cpus=2, dashboard=True))
    threads: int = 2  # torch threads of the one training worker


def world_corpus(world: World) -> str:
    """Every word the model will read or write, so the toy tokenizer makes them single tokens."""
    words = set(PROMPT_WORDS.split()) | set(SHAPES) | set(COLOURS)
    words |= {w for pair in EVENT_WORDS.values() for w in pair}
    lines = {c.caption for c in world.clips} | {c.event for c in world.clips}
    return "\n".join(sorted(lines)) + "\n" + " ".join(sorted(words)) + "\n"


def build_base_model(out: Path, world: World, cfg: RecipeConfig) -> Path:
    """Stage 0: the random toy Qwen2-VL (production architecture, vision tower included)."""
    from tara_batch.models.tiny import build_tiny_model

    m = cfg.model
    return build_tiny_model(
        out, seed=cfg.seed, min_pixels=cfg.profile.min_pixels, max_pixels=cfg.profile.max_pixels,
        text=dict(hidden_size=m.hidden, intermediate_size=m.intermediate, num_hidden_layers=m.layers,
                  num_attention_heads=m.heads, num_key_value_heads=m.kv_heads),
        vision=dict(depth=m.vision_depth, embed_dim=m.vision_embed, hidden_size=m.hidden, num_heads=m.vision_heads),
        corpus=world_corpus(world), vocab_size=m.vocab)


def _train_config(cfg: RecipeConfig, stage: StageConfig, *, objective: str, model: Path, sources: list[Path],
                  out: Path, runs: Path, name: str, media_root: Path | None = None):
    from tara_batch.config import build
    from tara_batch.train.config import TrainConfig

    data = {
        "model": {"path": str(model), "precision": "fp32", "gradient_checkpointing": False},
        "data": {"sources": [{"path": str(p)} for p in sources],
                 **({"media_root": str(media_root)} if media_root else {})},
        "validation": {"fraction": stage.validation_fraction, "max_rows": 400, "batch_size": 64},
        "train": {"micro_batch": stage.micro_batch, "grad_accum": 1, "epochs": stage.epochs, "lr": stage.lr,
                  "warmup_ratio": stage.warmup_ratio, "tau": stage.tau, "seed": cfg.seed},
        "scaling": {"num_workers": 1, "cpus_per_worker": cfg.threads, "torch_threads": cfg.threads},
        "run": {"name": name, "storage_path": str(runs), "eval_every": 10_000, "checkpoint_every": 10_000,
                "log_every": 100, "num_to_keep": 1},
        "output": {"dir": str(out), "overwrite": True},
        "profile": cfg.profile.settings(),
        "objective": objective,
    }
    return build(TrainConfig, data)


def _train(cfg: RecipeConfig, stage: StageConfig, *, objective: str, model: Path, sources: list[Path], out: Path,
           runs: Path, name: str, media_root: Path | None = None) -> dict[str, Any]:
    from tara_batch.train.loop import run_training

    if (out / "config.json").exists():
        log.info("%s: reusing %s", name, out)
        return json.loads((out / "tara_batch_train.json").read_text()) if (out / "tara_batch_train.json").exists() \
            else {}
    t0 = time.perf_counter()
    result = run_training(_train_config(cfg, stage, objective=objective, model=model, sources=sources, out=out,
                                        runs=runs, name=name, media_root=media_root))
    if not result.output_dir:
        raise RuntimeError(f"{name} stopped before its last step")
    log.info("%s done in %.0f s: %s", name, time.perf_counter() - t0, result.render())
    return {"steps": result.step, "seconds": result.elapsed_s, "before": result.before, "after": result.after}


def make_triplets(world: World, out: Path, cfg: RecipeConfig) -> dict[str, Path]:
    """Stage 2's data, with `tara-batch make-triplets` from the training captions only."""
    from tara_batch.train.triplets.command import main as make

    out.mkdir(parents=True, exist_ok=True)
    w = world.root
    kinds = {
        "temporal": ["--kind", "temporal", "--input", str(w / "train_captions.csv"), "--text-column", "text",
                     "--positive-column", "paraphrase"],
        "negation": ["--kind", "negation", "--input", str(w / "train_nli.csv")],
        "order": ["--kind", "order", "--input", str(w / "train_order.csv"), "--first-column", "first",
                  "--second-column", "second"],
    }
    paths = {}
    for kind, args in kinds.items():
        if kind == "order" and "order" not in world.config.families:
            continue
        paths[kind] = out / f"{kind}.csv"
        if not paths[kind].exists() and make([*args, "--seed", str(cfg.seed), str(paths[kind])]) != 0:
            raise RuntimeError(f"make-triplets --kind {kind} failed")
    if "temporal" in paths:
        paths["temporal_nochiral"] = out / "temporal_nochiral.csv"
        if not paths["temporal_nochiral"].exists():
            _without_chiral_negatives(paths["temporal"], paths["temporal_nochiral"], cfg.seed)
    wanted = dataclasses.asdict(cfg.triplets)
    wanted["temporal_nochiral"] = wanted["temporal"]
    counts = {k: wanted[k] if wanted[k] is not None else _rows(v) for k, v in paths.items()}
    # The ablation keeps every anchor and positive of the full mix and its size; only the chiral hard negatives are
    # replaced by other training captions, so it differs from the full mix in exactly what is being tested.
    mixes = {"full": [k for k in paths if k != "temporal_nochiral"],
             "ablation": [k for k in paths if k != "temporal"]}
    result = {}
    for name, members in mixes.items():
        target = out / f"mix_{name}.csv"
        if not target.exists():
            args = [str(target), "--kind", "mix", "--seed", str(cfg.seed)]
            for k in members:
                args += ["--from", f"{k}={paths[k]}"]
            args += ["--counts", *[f"{k}={counts[k]}" for k in members]]
            if make(args) != 0:
                raise RuntimeError(f"make-triplets --kind mix ({name}) failed")
        result[name] = target
    return result


def _rows(path: Path) -> int:
    with path.open(newline="") as fh:
        return sum(1 for _ in csv.DictReader(fh))


def _without_chiral_negatives(src: Path, dst: Path, seed: int) -> None:
    """The temporal triplets with each hard negative (the chiral twin) replaced by another row's anchor that is not
    a twin of this anchor: same anchors, positives and count, no chiral negative."""
    import random

    with src.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    rng = random.Random(seed)
    twins = {(r["sent0"], r["hard_neg"]) for r in rows}
    for r in rows:
        while True:
            other = rows[rng.randrange(len(rows))]["sent0"]
            if other != r["sent0"] and (r["sent0"], other) not in twins and other != r["hard_neg"]:
                break
        r["hard_neg"], r["source"] = other, "temporal_nochiral"
    with dst.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def generative_accuracy(world: World, model_dir: Path, cfg: RecipeConfig, max_new: int = 10) -> dict[str, Any]:
    """Stage 1 judged as a generator first: greedy answers to "What does the shape do?" on the held-out clips.

    Per family: the share answered exactly (`event`) and the share answered with the twin's event (`twin`): a model
    that sees what happens but not which way answers the twin about half the time."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    from tara_batch.models.backend import mrope_positions
    from tara_batch.train.caption import CaptionObjective, Tasks, decode_videos

    test = world.split("test")
    frames = decode_videos([str(world.path(c)) for c in test], cfg.profile)
    objective = CaptionObjective(model_dir, cfg.profile, frames)
    model = Qwen2VLForConditionalGeneration.from_pretrained(str(model_dir), dtype=torch.float32,
                                                            local_files_only=True).eval()
    tok = objective.tokenizer
    question = "<video>\nWhat does the shape do?"
    scores: dict[str, list[tuple[bool, bool]]] = {}
    with torch.no_grad():
        for clip in test:
            uri = str(world.path(clip))
            prompt, _ = objective.batch(Tasks([question], [None], [uri], ["q"]), torch.device("cpu"))
            answer: list[int] = []
            for _ in range(max_new):  # recomputed forward per token: 16 visual tokens, a 3 M model, no cache needed
                inputs = dict(prompt)
                if answer:
                    extra = torch.tensor([answer])
                    inputs["input_ids"] = torch.cat([prompt["input_ids"], extra], 1)
                    inputs["attention_mask"] = torch.cat([prompt["attention_mask"], torch.ones_like(extra)], 1)
                    inputs["position_ids"] = mrope_positions(inputs["input_ids"], inputs["attention_mask"],
                                                             inputs["video_grid_thw"], objective.video_token,
                                                             objective.merge)
                nxt = int(model(**inputs, use_cache=False).logits[0, -1].argmax())
                if nxt == objective.end_id:
                    break
                answer.append(nxt)
            said = tok.decode(answer).strip()
            twin = next(c.event for c in test if c.triplet == clip.triplet and c.label != clip.label)
            scores.setdefault(clip.family, []).append((said == clip.event, said == twin))
    out = {f: {"event": 100.0 * sum(a for a, _ in v) / len(v), "twin": 100.0 * sum(b for _, b in v) / len(v)}
           for f, v in sorted(scores.items())}
    every = [x for v in scores.values() for x in v]
    out["all"] = {"event": 100.0 * sum(a for a, _ in every) / len(every),
                  "twin": 100.0 * sum(b for _, b in every) / len(every)}
    return out


def profile_overrides(profile: ModelProfile = TOY_PROFILE) -> list[str]:
    """The toy profile as `--set` overrides for the embed / eval jobs (their configs default to the TARA profile)."""
    return [f"profile.num_frames={profile.num_frames}",
            f"profile.duplicate_frames={str(profile.duplicate_frames).lower()}",
            f"profile.max_pixels={profile.max_pixels}", f"profile.min_pixels={profile.min_pixels}"]


def evaluate(world: World, model: Path, out: Path, cfg: RecipeConfig) -> dict[str, Any]:
    """`tara-batch eval --benchmark cia` on the held-out clips, with the toy profile."""
    from tara_batch.eval.job import request_from_args, run_eval

    overrides = [*profile_overrides(cfg.profile), f"embed.torch_threads={cfg.threads}"]
    req = request_from_args("cia", [str(world.root / "test_cia.csv")], str(world.root), str(model), str(out), None,
                            overrides)
    report = run_eval(req)
    m = report["metrics"]
    return {
        "chiral_accuracy": m["chiral_binary"]["accuracy"],
        "chiral_accuracy_by_family": m.get("chiral_binary_by_group", {}),
        "chiral_map": m["mAP"]["chiral"], "static_map": m["mAP"]["static"], "all_map": m["mAP"]["all"],
        "t2v_r1": m["t2v"]["R@1"], "t2v_r5": m["t2v"]["R@5"], "modality_gap": m["modality_gap"],
        "plot": report.get("projection_png"), "model_id": report["model_id"], "videos": report["videos"],
    }


STAGE_NAMES = ("world", "base", "stage 1", "triplets", "stage 2", "ablation", "eval")


def run_recipe(out: str | Path, cfg: RecipeConfig | None = None, *, progress: bool = True) -> dict[str, Any]:
    """Run stages 1-6 into `out` and write report.json / report.md there; returns the report."""
    from tqdm import tqdm

    from tara_batch.cluster import init_ray

    cfg = cfg or RecipeConfig()
    root = Path(out).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    world_cfg = dataclasses.replace(cfg.world, seed=cfg.seed)
    seconds: dict[str, float] = {}
    bar = tqdm(total=len(STAGE_NAMES), desc="toy recipe", unit="stage", disable=not progress)

    def step(name: str, t0: float) -> None:
        seconds[name] = round(time.perf_counter() - t0, 1)
        bar.update(1)
        bar.set_postfix_str(f"{name} {seconds[name]:.0f}s")

    t = time.perf_counter()
    world = make_world(root / "world", world_cfg, progress=progress)
    step("world", t)
    t = time.perf_counter()
    base = root / "base"
    if not (base / "config.json").exists():
        build_base_model(base, world, cfg)
    step("base", t)
    init_ray(cfg.ray)
    runs = root / "runs"
    t = time.perf_counter()
    tasks = write_stage1_tasks(world, root / "stage1_tasks.csv", cfg.tasks, cfg.seed)
    stage1 = _train(cfg, cfg.stage1, objective="caption", model=base, sources=[tasks], out=root / "stage1",
                    runs=runs, name=f"toy-stage1-seed{cfg.seed}", media_root=world.root)
    step("stage 1", t)
    t = time.perf_counter()
    mixes = make_triplets(world, root / "triplets", cfg)
    step("triplets", t)
    t = time.perf_counter()
    stage2 = _train(cfg, cfg.stage2, objective="contrastive", model=root / "stage1", sources=[mixes["full"]],
                    out=root / "stage2", runs=runs, name=f"toy-stage2-seed{cfg.seed}")
    step("stage 2", t)
    t = time.perf_counter()
    ablation = None
    if cfg.ablation:
        ablation = _train(cfg, cfg.stage2, objective="contrastive", model=root / "stage1",
                          sources=[mixes["ablation"]], out=root / "stage2-nochiral", runs=runs,
                          name=f"toy-stage2-nochiral-seed{cfg.seed}")
    step("ablation", t)
    t = time.perf_counter()
    models = {"stage 1 (zero-shot EOL)": root / "stage1", "stage 2 (TARA)": root / "stage2"}
    if cfg.ablation:
        models["stage 2 without chiral negatives"] = root / "stage2-nochiral"
    results = {name: evaluate(world, path, root / "eval", cfg) for name, path in models.items()}
    results["stage 1 (zero-shot EOL)"]["generative"] = generative_accuracy(world, root / "stage1", cfg)
    step("eval", t)
    bar.close()
    report = {
        "seed": cfg.seed,
        "config": dataclasses.asdict(cfg),
        "world": {"train_clips": len(world.split("train")), "test_clips": len(world.split("test")),
                  "families": list(world.config.families)},
        "stage1_objectives": sorted({k for k, v in dataclasses.asdict(cfg.tasks).items()
                                     if isinstance(v, int) and v > 0}),
        "training": {"stage 1": stage1, "stage 2": stage2, **({"ablation": ablation} if ablation else {})},
        "results": results,
        "seconds": seconds,
        "total_seconds": round(sum(seconds.values()), 1),
    }
    (root / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (root / "report.md").write_text(render_report(report))
    plots = root / "plots"
    plots.mkdir(exist_ok=True)
    for name, r in results.items():
        if r.get("plot"):
            shutil.copy2(r["plot"], plots / (name.split(" (")[0].replace(" ", "_") + ".png"))
    return report


def render_report(report: dict[str, Any]) -> str:
    res = report["results"]
    lines = [f"# Toy-world TARA recipe, seed {report['seed']}", "",
             f"{report['world']['train_clips']} training clips, {report['world']['test_clips']} held-out test clips "
             f"(families: {', '.join(report['world']['families'])}). Stage 1 objectives (generative only): "
             f"{', '.join(report['stage1_objectives'])}. Total {report['total_seconds']:.0f} s "
             f"({', '.join(f'{k} {v:.0f} s' for k, v in report['seconds'].items())}).", "",
             "| model | chiral acc | chiral mAP | static mAP | all mAP | t2v R@1 | t2v R@5 | modality gap |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, r in res.items():
        lines.append(f"| {name} | {r['chiral_accuracy']:.1f} | {r['chiral_map']:.1f} | {r['static_map']:.1f} | "
                     f"{r['all_map']:.1f} | {r['t2v_r1']:.1f} | {r['t2v_r5']:.1f} | {r['modality_gap']:.3f} |")
    families = sorted({f for r in res.values() for f in r["chiral_accuracy_by_family"]})
    if families:
        lines += ["", "Chiral accuracy per family (chance 50):", "",
                  "| model | " + " | ".join(families) + " |", "|---|" + "---:|" * len(families)]
        for name, r in res.items():
            by = r["chiral_accuracy_by_family"]
            lines.append(f"| {name} | " + " | ".join(f"{by.get(f, float('nan')):.0f}" for f in families) + " |")
    gen = next(iter(res.values())).get("generative")
    if gen:
        fams = [f for f in gen if f != "all"]
        lines += ["", "Stage 1 as a generator, held-out clips, \"What does the shape do?\" (greedy): % answered with "
                  "the clip's event / with its twin's event:", "", "| | all | " + " | ".join(fams) + " |",
                  "|---|---:|" + "---:|" * len(fams),
                  "| event | " + " | ".join(f"{gen[f]['event']:.0f}" for f in ["all", *fams]) + " |",
                  "| twin | " + " | ".join(f"{gen[f]['twin']:.0f}" for f in ["all", *fams]) + " |"]
    lines += ["", "Chance: chiral accuracy 50; t2v R@1 = 100 / number of distinct test captions."]
    return "\n".join(lines) + "\n"


__all__ = ["FAMILIES", "TOY_PROFILE", "RecipeConfig", "render_report", "run_recipe"]
