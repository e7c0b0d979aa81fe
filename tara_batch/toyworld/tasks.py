"""Stage 1's data: generative tasks about the toy world's training clips and captions (`objective: caption`).

A base video MLLM has seen captions, short questions and "say it in one word" requests about videos and sentences;
these are ours, in the `train/caption.py` task-table layout (prompt, answer, video, source):

    caption      <video>\\nDescribe the video.                     -> a caption of the clip (varied templates)
    event        <video>\\nWhat does the shape do?                 -> the event alone ("moves left")
    colour       <video>\\nWhat colour is the shape?               -> "red"
    shape        <video>\\nWhat shape is it?                       -> "circle"
    summary      <video>\\nSummary above video in one word:        -> one word: the shape, the colour or the event
    text_summary <sent>\\nSummary above sentence in one word:      -> one word for a training caption, the same way
    text_event   <sent>\\nWhat does the shape do?                  -> the event of a training caption

The one-word answer is drawn per row: the shape with `p_shape`, the colour with `p_colour`, else the event's word
("left", "growing", ...). So the final state under the EOL wording predicts a mix that leans on what the object is,
as a base model's summary does, and carries the event only weakly: the room TARA's text-only tuning is for. There is
no contrastive or embedding-level term anywhere: every row is a next-token target.

Only training clips and training captions are used: no held-out composition reaches stage 1 (a test checks it).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tara_batch.models.profile import TARA_TEXT_PROMPT, TARA_VIDEO_PROMPT
from tara_batch.toyworld.world import EVENT_WORDS, Clip, World, training_captions

QUESTIONS = {
    "caption": "<video>\nDescribe the video.",
    "event": "<video>\nWhat does the shape do?",
    "colour": "<video>\nWhat colour is the shape?",
    "shape": "<video>\nWhat shape is it?",
    "summary": TARA_VIDEO_PROMPT,
    "text_summary": TARA_TEXT_PROMPT,
    "text_event": "<sent>\nWhat does the shape do?",
}


@dataclass(frozen=True)
class TaskMix:
    """Rows per training clip for each task, and the one-word answer's distribution."""

    caption: int = 1
    event: int = 2
    colour: int = 1
    shape: int = 1
    summary: int = 3
    text_summary: int = 3
    text_event: int = 1
    p_shape: float = 0.45
    p_colour: float = 0.40


def one_word(clip: Clip, rng: np.random.Generator, mix: TaskMix) -> str:
    x = rng.random()
    if x < mix.p_shape:
        return clip.shape
    if x < mix.p_shape + mix.p_colour:
        return clip.colour
    return EVENT_WORDS[clip.family][clip.label]


def stage1_rows(world: World, mix: TaskMix, seed: int = 0) -> list[dict[str, str]]:
    """The task table of stage 1 (training clips only), deterministic in (world, mix, seed)."""
    rng = np.random.default_rng([seed, 17])
    rows: list[dict[str, str]] = []
    for clip in world.split("train"):
        video = str(world.path(clip).relative_to(world.root))
        captions = training_captions(clip, rng)

        def add(task: str, answer: str, sentence: str | None = None, video: str = video) -> None:
            prompt = QUESTIONS[task]
            rows.append({"prompt": prompt.replace("<sent>", sentence) if sentence else prompt, "answer": answer,
                         "video": "" if sentence else video, "source": task})

        for k in range(mix.caption):
            add("caption", captions[k % len(captions)])
        for _ in range(mix.event):
            add("event", clip.event)
        for _ in range(mix.colour):
            add("colour", clip.colour)
        for _ in range(mix.shape):
            add("shape", clip.shape)
        for _ in range(mix.summary):
            add("summary", one_word(clip, rng, mix))
        for k in range(mix.text_summary):
            add("text_summary", one_word(clip, rng, mix), captions[k % len(captions)])
        for k in range(mix.text_event):
            add("text_event", clip.event, captions[(k + 1) % len(captions)])
    return rows


def write_stage1_tasks(world: World, path: str | Path, mix: TaskMix, seed: int = 0) -> Path:
    path = Path(path)
    rows = stage1_rows(world, mix, seed)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["prompt", "answer", "video", "source"])
        w.writeheader()
        w.writerows(rows)
    return path
