"""Model inputs on CPU: the Qwen2-VL processor's resize + patchify + tokenise, one video at a time, and the collate that
turns those per-video inputs into the exact batch the processor would have built.

Why: the processor is pure CPU work (about as long as the tiny model's forward on our machine, a visible slice of a
7B forward's wall time on a GPU). Run inside the GPU actor it leaves the accelerator idle; run on the CPU decode actors
(`embed.preprocess=decode_actors`) it overlaps with the forward of the previous batch. Per-video inputs also tell the
embed actor each row's visual-token count before it builds a batch (token-budget batching, `plan_batches`).

Exactness: `collate([one(v) for v in videos])` equals `processor(videos, padding=True)` bit for bit (left padding
with the tokenizer's pad id, pixel patches concatenated in order); tests/unit/models/test_preprocess.py pins it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tara_batch.models.profile import ModelProfile, render_video_prompts

# Per-video model inputs, as columns of a Ray Data batch (ragged numpy arrays).
INPUT_IDS = "input_ids"  # int64 [L]: the rendered video prompt with L - (text) video pad tokens
PIXEL_VALUES = "pixel_values_videos"  # float32 [P, C * temporal_patch * patch * patch]
GRID_THW = "video_grid_thw"  # int64 [3]: temporal, height, width in patches
VISUAL_TOKENS = "visual_tokens"  # int64: tokens this video adds to the LLM's sequence (t * h * w / merge**2)


class VideoPreprocessor:
    """The checkpoint's processor (tokenizer + video processor; no weights), configured exactly as the backend uses
    it. Cheap to build in every CPU actor."""

    def __init__(self, model_dir: str | Path, profile: ModelProfile) -> None:
        from transformers import AutoProcessor

        self.profile = profile
        self.processor = AutoProcessor.from_pretrained(str(model_dir), local_files_only=True)
        # Left padding is a correctness requirement of last-token pooling, whatever the checkpoint ships.
        self.processor.tokenizer.padding_side = "left"
        self.video_kwargs = {
            "size": {"shortest_edge": profile.min_pixels, "longest_edge": profile.max_pixels},
            # Pinned explicitly: transformers 5.22 flips this default, which would change token counts.
            "cap_pixels_per_frame": False,
            "do_sample_frames": False,  # frames are sampled by our decode stage, uniformly, first and last included
        }
        vp = self.processor.video_processor
        self.merge = int(getattr(vp, "merge_size", 2))
        pad = self.processor.tokenizer.pad_token_id
        if pad is None:
            raise ValueError(f"{model_dir}: the tokenizer has no pad token; batched (left-padded) inputs need one")
        self.pad_id = int(pad)

    def batch(self, videos: Sequence[np.ndarray], edits: Sequence[str] | None = None) -> dict[str, Any]:
        """The processor over a whole batch (padding=True): torch tensors, ready for the model."""
        prompts = render_video_prompts(self.profile, len(videos), None if edits is None else list(edits))
        frames = prepare_frames(videos, self.profile)
        return dict(self.processor(text=prompts, videos=frames, padding=True, return_tensors="pt",
                                   videos_kwargs=self.video_kwargs))

    def one(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Inputs of one video as numpy (no padding): what a CPU actor ships to the embed actor."""
        out = self.batch([frames])
        grid = out[GRID_THW][0].numpy().astype(np.int64)
        return {
            INPUT_IDS: out["input_ids"][0].numpy().astype(np.int64),
            PIXEL_VALUES: out[PIXEL_VALUES].numpy(),
            GRID_THW: grid,
            VISUAL_TOKENS: np.int64(int(np.prod(grid)) // self.merge**2),
        }

    def collate(self, items: Sequence[dict[str, np.ndarray]]) -> dict[str, Any]:
        """Per-video inputs -> the batch `batch()` would have produced for the same videos (left padded)."""
        import torch

        if not items:
            raise ValueError("collate needs at least one item")
        longest = max(len(it[INPUT_IDS]) for it in items)
        ids = np.full((len(items), longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(items), longest), dtype=np.int64)
        for i, it in enumerate(items):
            n = len(it[INPUT_IDS])
            ids[i, longest - n:] = it[INPUT_IDS]
            mask[i, longest - n:] = 1
        return {
            "input_ids": torch.from_numpy(ids),
            "attention_mask": torch.from_numpy(mask),
            PIXEL_VALUES: torch.from_numpy(np.concatenate([np.asarray(it[PIXEL_VALUES]) for it in items])),
            GRID_THW: torch.from_numpy(np.stack([np.asarray(it[GRID_THW], np.int64) for it in items])),
        }


def prepare_frames(videos: Sequence[np.ndarray], profile: ModelProfile) -> list[np.ndarray]:
    """Model-side frame layout: each sampled frame twice, so one temporal patch (size 2) holds one real frame."""
    out = []
    for v in videos:
        v = np.asarray(v)
        if v.dtype != np.uint8 or v.ndim != 4 or v.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 [T, H, W, 3], got {v.dtype} {v.shape}")
        out.append(np.repeat(v, 2, axis=0) if profile.duplicate_frames else v)
    return out


def smart_resize(height: int, width: int, min_pixels: int, max_pixels: int, factor: int = 28) -> tuple[int, int]:
    """Qwen2-VL's resize rule (transformers' `smart_resize`, the same arithmetic): both sides a multiple of `factor`,
    area within [min_pixels, max_pixels], aspect kept. Ours so the token count needs no processor."""
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def visual_tokens(num_frames: int, height: int, width: int, profile: ModelProfile, *, temporal_patch: int = 2,
                  patch: int = 14, merge: int = 2) -> int:
    """Visual tokens one clip of `num_frames` sampled frames of `height` x `width` adds to the LLM sequence."""
    frames = num_frames * 2 if profile.duplicate_frames else num_frames
    h, w = smart_resize(height, width, profile.min_pixels, profile.max_pixels, factor=patch * merge)
    return math.ceil(frames / temporal_patch) * (h // (patch * merge)) * (w // (patch * merge))


def max_visual_tokens(profile: ModelProfile, *, patch: int = 14, merge: int = 2) -> int:
    """Upper bound of `visual_tokens` over all frame sizes the profile admits (the area cap is max_pixels)."""
    frames = profile.num_frames * 2 if profile.duplicate_frames else profile.num_frames
    return math.ceil(frames / 2) * (profile.max_pixels // (patch * merge) ** 2)


def plan_batches(tokens: Sequence[int], budget: int | None, max_rows: int) -> list[slice]:
    """Split rows, in order, into consecutive batches of at most `max_rows` rows and at most `budget` visual tokens.

    Greedy: a batch closes when the next row would break either limit, so rows are never reordered or dropped and
    mixed resolutions give batches of even cost (a few 4K clips, or many small ones). A row above the budget alone
    cannot be split: the job's config check makes the budget at least the largest clip the profile admits."""
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1, got {max_rows}")
    if budget is not None and budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget}")
    out: list[slice] = []
    start, used = 0, 0
    for i, t in enumerate(tokens):
        t = int(t)
        if t < 0:
            raise ValueError(f"row {i} has a negative token count {t}")
        if budget is not None and t > budget:
            raise ValueError(f"row {i} has {t} visual tokens, over the budget of {budget}")
        if i > start and (i - start >= max_rows or (budget is not None and used + t > budget)):
            out.append(slice(start, i))
            start, used = i, 0
        used += t
    if start < len(tokens):
        out.append(slice(start, len(tokens)))
    return out
