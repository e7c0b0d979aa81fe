"""The toy world: a procedural archive of real encoded clips with chiral events, captions and held-out compositions.

What: `make_world(out, WorldConfig(seed=...))` renders short scenes (a coloured shape on a background, optionally a
second, static object and pixel noise), encodes each as H.264 with PyAV's libx264, and writes captions and splits in
the layouts the rest of tara-batch reads:

    clips/train/*.mp4, clips/test/*.mp4     the videos (varied size, fps and length, like a real archive)
    world.json                              the grammar, the seed and the split of compositions
    clips.csv                               every clip: split, file, shape, colour, event, caption, render settings
    train_captions.csv                      stage 1: captions of the training clips (make-triplets --kind temporal)
    train_nli.csv / train_order.csv         stage 2 inputs: caption, paraphrase, negated caption / event A, event B
    test_cia.csv                            the CiA layout (id, chiral_triplet_id, chiral_label, text, video_path)
    test_retrieval.json                     a generic text->video benchmark over the test clips

Why these choices:
* Chiral pairs are time-reversal twins (moves left / right, upward / downward, grows / shrinks, appears /
  disappears, rotates clockwise / counterclockwise, moves towards / away from a second object, fills / empties; and
  the order family "turns X, then moves upward" vs the reverse). Both members of a pair start from the same state
  distribution (centred position, medium size, half opacity, half fill, a random angle), so the first frame says
  nothing about which twin a clip is: only the change over time does (tests check a one-frame classifier is at
  chance).
* Held-out compositions: the test split's (shape, colour, event pair) triples never occur in a training clip or
  caption. They are chosen so that every shape-colour, shape-event and colour-event pair still occurs in training
  (a Latin-square rule over the three indices), because holding out whole pairs made probe models bind parts
  together (docs/LOG.md).
* Words the chiral lexicon flips (left/right, upward/downward, grow/shrink, appear/disappear, clockwise/
  counterclockwise, towards/away from, fill/empty), so `make-triplets` builds stage 2's hard negatives from the
  training captions alone.

Deterministic from the seed: the same config gives the same frames, files and captions.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tara_batch.errors import ConfigError

log = logging.getLogger(__name__)

SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (225, 45, 45), "green": (45, 195, 75), "blue": (55, 100, 235), "yellow": (235, 215, 45),
    "purple": (160, 70, 215), "orange": (245, 145, 35),
}
REFERENCE_COLOUR = ("gray", (150, 150, 150))  # the second object of the `distance` family (named in captions)
DISTRACTOR_COLOUR = (235, 235, 235)  # an unnamed static object some clips carry
BACKGROUNDS = ((18, 18, 22), (28, 32, 52), (16, 42, 30), (48, 26, 26), (40, 40, 40), (24, 24, 60))

# Chiral families: (label 0, label 1) event phrases; each member is the other's time-reversed twin.
FAMILIES: dict[str, tuple[str, str]] = {
    "horizontal": ("moves left", "moves right"),
    "vertical": ("moves upward", "moves downward"),
    "size": ("grows", "shrinks"),
    "visibility": ("appears", "disappears"),
    "rotation": ("rotates clockwise", "rotates counterclockwise"),
    "distance": ("moves towards the {ref}", "moves away from the {ref}"),
    "fill": ("fills", "empties"),
    "order": ("turns {c2}, then moves upward", "moves upward, then turns {c2}"),
}
# One word for each event (the toy world's "one-word summary" vocabulary of events), by family and label.
EVENT_WORDS: dict[str, tuple[str, str]] = {
    "horizontal": ("left", "right"), "vertical": ("upward", "downward"), "size": ("growing", "shrinking"),
    "visibility": ("appearing", "disappearing"), "rotation": ("clockwise", "counterclockwise"),
    "distance": ("towards", "away"), "fill": ("filling", "emptying"), "order": ("recolouring", "rising"),
}
CAPTION_TEMPLATES = ("{a} {colour} {shape} {event}", "the {colour} {shape} {event}", "a {size} {colour} {shape} {event}")


@dataclass(frozen=True)
class WorldConfig:
    """The grammar and the archive's shape. Every field is part of the world's identity (written to world.json)."""

    seed: int = 0
    shapes: tuple[str, ...] = SHAPES
    colours: tuple[str, ...] = tuple(COLOURS)
    families: tuple[str, ...] = tuple(FAMILIES)
    train_clips: int = 4  # clips per (shape, colour, family, label) training composition
    test_clips: int = 1  # clips per held-out composition and label
    holdout_mod: int = 4  # a (shape i, colour j, family k) triple is held out when (i + j + k) % holdout_mod == 0
    sizes: tuple[tuple[int, int], ...] = ((64, 64), (80, 64), (96, 72), (72, 72), (64, 48), (96, 96))
    fps: tuple[float, ...] = (8.0, 10.0, 12.0, 15.0)
    duration_s: tuple[float, float] = (1.0, 2.4)
    gops: tuple[int, ...] = (4, 12, 250)
    distractor_p: float = 0.3
    noise_max: float = 6.0
    splits: tuple[str, ...] = ("train", "test")  # which splits to render (the demo archive is the test split only)

    def __post_init__(self) -> None:
        for name, values, known in (("world.shapes", self.shapes, SHAPES), ("world.colours", self.colours, COLOURS),
                                    ("world.families", self.families, FAMILIES)):
            bad = [v for v in values if v not in known]
            if bad or not values:
                raise ConfigError(name, f"unknown or empty: {bad or values}; choose from {list(known)}")
        if self.train_clips < 1 or self.test_clips < 1:
            raise ConfigError("world.train_clips", "train_clips and test_clips must be >= 1")
        if not self.splits or set(self.splits) - {"train", "test"}:
            raise ConfigError("world.splits", f"choose from ['train', 'test'], got {list(self.splits)}")
        if self.holdout_mod < 2:
            raise ConfigError("world.holdout_mod", f"must be >= 2 (1 would hold out everything), got {self.holdout_mod}")


@dataclass(frozen=True)
class Clip:
    """One clip's recipe: what happens (composition + label) and how it looks (render settings)."""

    split: str
    name: str
    shape: str
    colour: str
    family: str
    label: int  # 0 or 1: which twin of the family
    caption: str  # the canonical caption ("a red circle moves left")
    event: str  # the event phrase alone ("moves left")
    width: int
    height: int
    fps: float
    frames: int
    gop: int
    background: int
    noise: float
    distractor: bool
    params: dict[str, float] = field(default_factory=dict)  # start state and motion, in frame units

    @property
    def triplet(self) -> str:
        """CiA chiral_triplet_id: the composition both twins share."""
        return f"{self.shape}-{self.colour}-{self.family}"


def compositions(cfg: WorldConfig) -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """(train, test) (shape, colour, family) triples. Test = held out by the Latin-square rule; both twins of a
    held-out triple are test-only, so a test caption's composition never occurs in training."""
    train, test = [], []
    for i, s in enumerate(cfg.shapes):
        for j, c in enumerate(cfg.colours):
            for k, f in enumerate(cfg.families):
                (test if (i + j + k) % cfg.holdout_mod == 0 else train).append((s, c, f))
    return train, test


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def canonical_caption(colour: str, shape: str, event: str) -> str:
    """The test-query form: "a red circle moves left", "an orange square grows"."""
    return f"{article(colour)} {colour} {shape} {event}"


def _rng(cfg: WorldConfig, *key: Any) -> np.random.Generator:
    digest = hashlib.sha256(json.dumps([cfg.seed, *key]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _event_words(family: str, label: int, rng: np.random.Generator, cfg: WorldConfig, colour: str) -> tuple[str, dict]:
    extra: dict[str, Any] = {}
    phrase = FAMILIES[family][label]
    if family == "distance":
        extra["ref_shape"] = str(rng.choice(SHAPES))
        phrase = phrase.format(ref=f"{REFERENCE_COLOUR[0]} {extra['ref_shape']}")
    elif family == "order":
        others = [c for c in cfg.colours if c != colour]
        extra["c2"] = str(rng.choice(others))
        phrase = phrase.format(c2=extra["c2"])
    return phrase, extra


def plan_clips(cfg: WorldConfig) -> list[Clip]:
    """Every clip of the world, deterministic from the config."""
    train, test = compositions(cfg)
    clips: list[Clip] = []
    for split, triples, n in (("train", train, cfg.train_clips), ("test", test, cfg.test_clips)):
        if split not in cfg.splits:
            continue
        for shape, colour, family in triples:
            # Twins of a test composition share their words (reference shape, second colour): CiA pairs texts that
            # differ in the event only.
            for label in (0, 1):
                for k in range(n):
                    rng = _rng(cfg, split, shape, colour, family, label, k)
                    words_rng = _rng(cfg, "words", shape, colour, family) if split == "test" else rng
                    event, extra = _event_words(family, label, words_rng, cfg, colour)
                    w, h = cfg.sizes[int(rng.integers(len(cfg.sizes)))]
                    fps = float(cfg.fps[int(rng.integers(len(cfg.fps)))])
                    duration = float(rng.uniform(*cfg.duration_s))
                    params = _motion(family, label, rng)
                    params.update(extra)
                    name = f"{shape}-{colour}-{family}-{label}-{k}"
                    clips.append(Clip(
                        split=split, name=name, shape=shape, colour=colour, family=family, label=label,
                        caption=canonical_caption(colour, shape, event), event=event, width=w, height=h, fps=fps,
                        frames=max(8, round(duration * fps)), gop=int(cfg.gops[int(rng.integers(len(cfg.gops)))]),
                        background=int(rng.integers(len(BACKGROUNDS))), noise=float(rng.uniform(0, cfg.noise_max)),
                        distractor=bool(rng.random() < cfg.distractor_p) and family != "distance", params=params))
    return clips


def _motion(family: str, label: int, rng: np.random.Generator) -> dict[str, Any]:
    """Start state (the same distribution for both twins) and the change over the clip, in units of the frame's
    shorter side (positions in [0, 1] of each axis)."""
    sign = 1 if label == 0 else -1
    p: dict[str, Any] = {
        "x0": 0.5 + rng.uniform(-0.05, 0.05), "y0": 0.5 + rng.uniform(-0.05, 0.05),
        "r0": rng.uniform(0.12, 0.16), "angle0": rng.uniform(0, 2 * math.pi),
        "alpha0": 1.0, "fill0": 1.0, "dx": 0.0, "dy": 0.0, "dr": 1.0, "dangle": 0.0, "dalpha": 0.0, "dfill": 0.0,
    }
    travel = rng.uniform(0.28, 0.34)
    if family == "horizontal":
        p["y0"] = rng.uniform(0.3, 0.7)
        p["dx"] = -sign * travel  # label 0: left
    elif family == "vertical":
        p["x0"] = rng.uniform(0.3, 0.7)
        p["dy"] = -sign * travel  # label 0: upward (screen y grows downward)
    elif family == "size":
        p["dr"] = 1.9 if label == 0 else 0.45
    elif family == "visibility":
        p["alpha0"] = 0.35
        p["dalpha"] = 0.65 if label == 0 else -0.35
    elif family == "rotation":
        p["dangle"] = -sign * rng.uniform(0.55, 0.75) * math.pi  # label 0: clockwise (angle decreases)
    elif family == "distance":
        side = rng.choice([-1.0, 1.0])  # the reference sits left or right: direction on screen is no shortcut
        p["ref_x"] = 0.5 + side * 0.36
        p["ref_y"] = p["y0"]
        p["dx"] = side * (0.2 if label == 0 else -0.3)  # towards it, or away from it
    elif family == "fill":
        p["fill0"] = 0.5
        p["dfill"] = 0.5 if label == 0 else -0.5
    elif family == "order":
        p["y0"] = 0.5 + rng.uniform(0.1, 0.15)
        p["dy"] = -travel  # both twins move upward; they differ in when the colour changes
        p["colour_first"] = label == 0
    return p


# ----------------------------------------------------------------------------------------------------------------
# rendering


_SUPERSAMPLE = 3  # sub-pixel grid per pixel: edges anti-aliased, so a slow motion still changes pixels smoothly


def _shape_mask(shape: str, u: np.ndarray, v: np.ndarray, r: float, angle: float) -> np.ndarray:
    """Points (u, v) relative to the centre (v grows downward) inside `shape` of radius r rotated by `angle`."""
    c, s = math.cos(angle), math.sin(angle)
    x, y = c * u - s * (-v), s * u + c * (-v)  # into the shape's frame (y up), rotated by -angle
    if shape == "circle":
        return x * x + y * y <= r * r
    if shape == "square":
        return np.maximum(np.abs(x), np.abs(y)) <= 0.85 * r
    if shape == "diamond":
        return np.abs(x) + np.abs(y) <= 1.15 * r
    # triangle, circumradius 1.1 r, a vertex along the shape's x axis (where the marker points)
    inside = np.ones_like(x, dtype=bool)
    for k in range(3):
        a = math.pi + 2 * math.pi * k / 3  # outward normals of the three edges
        inside &= x * math.cos(a) + y * math.sin(a) <= 0.55 * r
    return inside


class _Canvas:
    """A supersampled float frame; shapes are drawn only inside their bounding box (rendering cost ~ object area)."""

    def __init__(self, background: np.ndarray, scale: int) -> None:
        self.pixels = np.array(background)  # [H*S, W*S, 3] float64
        self.scale = scale

    def window(self, cx: float, cy: float, extent: float) -> tuple[slice, slice, np.ndarray, np.ndarray] | None:
        """Slices of the supersampled grid around (cx, cy) +- extent (pixel units) and the pixel-unit coordinates of
        its points relative to the centre; None when the box is off the frame."""
        S, (h, w) = self.scale, self.pixels.shape[:2]
        y0, y1 = max(0, math.floor((cy - extent) * S)), min(h, math.ceil((cy + extent) * S))
        x0, x1 = max(0, math.floor((cx - extent) * S)), min(w, math.ceil((cx + extent) * S))
        if y0 >= y1 or x0 >= x1:
            return None
        v = (np.arange(y0, y1, dtype=np.float64)[:, None] + 0.5) / S - cy
        u = (np.arange(x0, x1, dtype=np.float64)[None, :] + 0.5) / S - cx
        return slice(y0, y1), slice(x0, x1), u, v

    def shape(self, shape: str, cx: float, cy: float, r: float, angle: float, colour: Sequence[float], alpha: float,
              *, hollow: float | None = None, fill_line: float | None = None) -> None:
        """Draw `shape`; `hollow`: only the rim outside `hollow * r`, plus the inside below the screen row
        `fill_line` (the fill family's container)."""
        box = self.window(cx, cy, 1.3 * r + 1)
        if box is None or alpha <= 0:
            return
        ys, xs, u, v = box
        mask = _shape_mask(shape, u, v, r, angle)
        if hollow is not None:
            inner = _shape_mask(shape, u, v, hollow * r, angle)
            mask = (mask & ~inner) | (inner & (v + cy >= fill_line))
        region = self.pixels[ys, xs]
        region[mask] = (1 - alpha) * region[mask] + alpha * np.asarray(colour, np.float64)

    def disc(self, cx: float, cy: float, r: float, colour: Sequence[float], alpha: float) -> None:
        self.shape("circle", cx, cy, r, 0.0, colour, alpha)


def render(clip: Clip, only: Sequence[int] | None = None) -> np.ndarray:
    """The clip's frames, uint8 [T, H, W, 3] (or just the frames at indices `only`); a pure function of the clip's
    recipe: a frame's pixels do not depend on which other frames are rendered."""
    W, H, T, S = clip.width, clip.height, clip.frames, _SUPERSAMPLE
    side = min(W, H)
    seed = int.from_bytes(hashlib.sha256(f"{clip.split}/{clip.name}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    rows = (np.arange(H * S, dtype=np.float64) + 0.5) / S
    base = np.asarray(BACKGROUNDS[clip.background], np.float64)
    gradient = (rows / H)[:, None, None] * 18.0  # a faint vertical ramp: backgrounds are not flat
    background = np.broadcast_to(base + gradient, (H * S, W * S, 3))
    distractor = None
    if clip.distractor:  # a static, unnamed object in a corner away from the action
        dx, dy = rng.choice([0.15, 0.85]), rng.choice([0.15, 0.85])
        distractor = (str(rng.choice(SHAPES)), dx * W, dy * H, 0.07 * side, rng.uniform(0, 2 * math.pi))
    p = clip.params
    colour = np.asarray(COLOURS[clip.colour], np.float64)
    second = np.asarray(COLOURS[p["c2"]], np.float64) if "c2" in p else colour
    marker = (20, 20, 20) if colour.mean() > 150 else (245, 245, 245)
    wanted = list(range(T)) if only is None else [int(k) for k in only]
    out = np.empty((len(wanted), H, W, 3), np.uint8)
    for slot, k in enumerate(wanted):
        t = k / (T - 1)
        noise = np.random.default_rng([seed, k]).normal(0, clip.noise, (H, W, 3))  # per frame: any subset agrees
        canvas = _Canvas(background, S)
        if distractor is not None:
            canvas.shape(distractor[0], *distractor[1:4], distractor[4], DISTRACTOR_COLOUR, 1.0)
        if clip.family == "distance":
            canvas.shape(p["ref_shape"], p["ref_x"] * W, p["ref_y"] * H, 0.13 * side, 0.0, REFERENCE_COLOUR[1], 1.0)
        move_t = colour_t = t
        if clip.family == "order":  # one change in each half of the clip
            first, second_half = float(np.clip(2 * t, 0, 1)), float(np.clip(2 * t - 1, 0, 1))
            colour_t, move_t = (first, second_half) if p["colour_first"] else (second_half, first)
        cx, cy = (p["x0"] + p["dx"] * move_t) * W, (p["y0"] + p["dy"] * move_t) * H
        r = p["r0"] * side * (1 + (p["dr"] - 1) * t)
        angle = p["angle0"] + p["dangle"] * t
        alpha = min(1.0, max(0.0, p["alpha0"] + p["dalpha"] * t))
        now = (1 - colour_t) * colour + colour_t * second
        if clip.family == "fill":
            fill = p["fill0"] + p["dfill"] * t
            canvas.shape(clip.shape, cx, cy, r, angle, now, 1.0, hollow=0.75, fill_line=cy + r - 2 * r * fill)
        else:
            canvas.shape(clip.shape, cx, cy, r, angle, now, alpha)
        # The marker makes rotation visible on every shape (and is on every clip, so it is no shortcut).
        canvas.disc(cx + 0.5 * r * math.cos(angle), cy - 0.5 * r * math.sin(angle), 0.3 * r, marker, alpha)
        small = canvas.pixels.reshape(H, S, W, S, 3).mean(axis=(1, 3))
        out[slot] = np.clip(small + noise, 0, 255).astype(np.uint8)
    return out


def encode_h264(path: str | Path, frames: np.ndarray, fps: float, gop: int) -> Path:
    """uint8 RGB frames -> H.264 in MP4 (yuv420p, fast start) at `path`, with PyAV's libx264 in this process (no
    ffmpeg subprocess per clip). One encoder thread: x264's output depends on its thread count, so the bytes are
    the same on every machine."""
    import av

    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=round(fps))
        stream.width, stream.height, stream.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"crf": "18", "preset": "veryfast", "threads": "1"}
        for f in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return Path(path)


# ----------------------------------------------------------------------------------------------------------------
# captions for training (variety; the test queries use the canonical "a {colour} {shape} {event}")


def _size_word(clip: Clip) -> str:
    return "small" if clip.params["r0"] < 0.14 else "large"


def training_captions(clip: Clip, rng: np.random.Generator) -> list[str]:
    """Caption variants of a training clip (templates differ in articles and an optional size word; the size word is
    left out where size is the event)."""
    templates = [t for t in CAPTION_TEMPLATES if "{size}" not in t or clip.family != "size"]
    out = [t.format(a=article(clip.colour), colour=clip.colour, shape=clip.shape, event=clip.event,
                    size=_size_word(clip)) for t in templates]
    rng.shuffle(out)
    return out


def _negated(clip: Clip) -> str:
    """The caption with its event negated ("a red circle does not move left"): stage 2's negation hard negative."""
    head, _, rest = clip.event.partition(" ")
    base = {"moves": "move", "grows": "grow", "shrinks": "shrink", "appears": "appear", "disappears": "disappear",
            "rotates": "rotate", "fills": "fill", "empties": "empty", "turns": "turn"}[head]
    return f"the {clip.colour} {clip.shape} does not {base}" + (f" {rest}" if rest else "")


def _order_events(clip: Clip) -> tuple[str, str]:
    """(first event, second event) of an order-family clip, as two sentences (make-triplets --kind order)."""
    subject = f"the {clip.colour} {clip.shape}"
    colour, move = f"{subject} turns {clip.params['c2']}", f"{subject} moves upward"
    return (colour, move) if clip.params["colour_first"] else (move, colour)


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)


@dataclass(frozen=True)
class World:
    """A world on disk: its root, config and clips (what `make_world` wrote, or `load_world` read back)."""

    root: Path
    config: WorldConfig
    clips: list[Clip]

    def path(self, clip: Clip) -> Path:
        return self.root / "clips" / clip.split / f"{clip.name}.mp4"

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if c.split == name]


def make_world(out: str | Path, cfg: WorldConfig | None = None, *, progress: bool = False,
               render_splits: tuple[str, ...] | None = None) -> World:
    """Render, encode and describe the world under `out` (see the module docstring for the files). Rerunning with
    the same config reuses the clips already on disk (file names are their recipes' names). `render_splits` encodes
    only those splits' clips (the tables still describe every clip: the method guard needs the held-out clips and
    the training captions, not the training videos)."""
    from tqdm import tqdm

    cfg = cfg or WorldConfig()
    root = Path(out).expanduser().resolve()
    meta = root / "world.json"
    if meta.exists() and json.loads(meta.read_text()).get("config") != json.loads(json.dumps(dataclasses.asdict(cfg))):
        raise ConfigError("world", f"{root} holds a world made with another config; choose a new directory")
    clips = plan_clips(cfg)
    world = World(root, cfg, clips)
    for split in ("train", "test"):
        (root / "clips" / split).mkdir(parents=True, exist_ok=True)
    wanted = [c for c in clips if render_splits is None or c.split in render_splits]
    for clip in tqdm(wanted, desc="toy world", unit="clip", disable=not progress):
        path = world.path(clip)
        if not path.exists():  # written under a temporary name and renamed: a killed run leaves no half file
            tmp = path.with_suffix(".part.mp4")
            encode_h264(tmp, render(clip), clip.fps, clip.gop)
            tmp.replace(path)
    _write_tables(world)
    train_c, test_c = compositions(cfg)
    meta.write_text(json.dumps({"config": dataclasses.asdict(cfg), "families": FAMILIES,
                                "train_compositions": train_c, "test_compositions": test_c,
                                "clips": {"train": len(world.split("train")), "test": len(world.split("test"))}},
                               indent=2) + "\n")
    log.info("toy world at %s: %d training clips, %d test clips (%d held-out compositions)", root,
             len(world.split("train")), len(world.split("test")), len(test_c))
    return world


def _write_tables(world: World) -> None:
    root = world.root
    rng = np.random.default_rng(world.config.seed)
    fields = ("split", "file", "shape", "colour", "family", "label", "event", "caption", "width", "height", "fps",
              "frames", "gop", "triplet")
    _write_csv(root / "clips.csv", fields,
               [[c.split, str(world.path(c).relative_to(root)), c.shape, c.colour, c.family, c.label, c.event,
                 c.caption, c.width, c.height, c.fps, c.frames, c.gop, c.triplet] for c in world.clips])
    train = world.split("train")
    rows = []
    for c in train:  # each caption with another caption of the same clip: make-triplets' positive (--positive-column)
        captions = training_captions(c, rng)
        rows += [[text, captions[(k + 1) % len(captions)], str(world.path(c).relative_to(root))]
                 for k, text in enumerate(captions)]
    _write_csv(root / "train_captions.csv", ("text", "paraphrase", "file"), rows)
    _write_csv(root / "train_nli.csv", ("sent0", "sent1", "hard_neg"),
               list(dict.fromkeys((c.caption, f"the {c.colour} {c.shape} {c.event}", _negated(c)) for c in train)))
    _write_csv(root / "train_order.csv", ("first", "second"),
               [list(_order_events(c)) for c in train if c.family == "order"])
    test = world.split("test")
    _write_csv(root / "test_cia.csv", ("id", "chiral_triplet_id", "chiral_label", "text", "video_path", "group"),
               [[c.name, c.triplet, c.label, c.caption, str(world.path(c).relative_to(root)), c.family]
                for c in test])
    (root / "test_retrieval.json").write_text(json.dumps({
        "queries": [{"query_id": c.name, "text": c.caption, "relevant": [c.name]} for c in test],
        "gallery": [{"item_id": c.name, "uri": str(world.path(c).relative_to(root))} for c in test],
        "relevance": [],
    }, indent=1) + "\n")


def load_world(root: str | Path) -> World:
    """The world `make_world` wrote under `root` (clips re-planned from its config: they are deterministic)."""
    root = Path(root).expanduser().resolve()
    meta = root / "world.json"
    if not meta.exists():
        raise ConfigError("world", f"{root} has no world.json; make it with `tara-batch make-toyworld {root}`")
    data = json.loads(meta.read_text())["config"]
    cfg = WorldConfig(**{k: tuple(tuple(x) if isinstance(x, list) else x for x in v) if isinstance(v, list) else v
                         for k, v in data.items()})
    return World(root, cfg, plan_clips(cfg))
