"""Embedding backends: turn rendered EOL prompts (+ sampled frames) into L2-normalised last-token embeddings.

Method (tara-method.md section 1): the embedding is the final-layer hidden state *after* the final RMSNorm at the
last position of the rendered prompt, cast to float32 and L2-normalised. Batches are left-padded so position -1 is a
real token in every row, and M-RoPE position ids are computed from the attention mask, so a batched row equals the
same input run alone. The LM head is never evaluated (it would cost a 152k-way projection per row for nothing).

`TransformersEmbedder` runs anywhere (float32 on CPU, bfloat16 on GPU). Backends share one protocol so the Ray
stage and search do not care which engine runs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from tara_batch.models.preprocess import VideoPreprocessor
from tara_batch.models.profile import ModelProfile, render_text

log = logging.getLogger(__name__)


class Embedder(Protocol):
    dim: int

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray: ...  # [n, dim] float32, unit norm

    def embed_videos(self, videos: Sequence[np.ndarray]) -> np.ndarray: ...  # frames uint8 [T, H, W, 3] each

    def embed_inputs(self, items: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
        """Embed videos preprocessed elsewhere (`VideoPreprocessor.one`, on CPU actors)."""
        if not items:
            return np.zeros((0, self.dim), np.float32)
        return self.forward(self.pre.collate(items))

    def embed_composed(self, videos: Sequence[np.ndarray], edits: Sequence[str]) -> np.ndarray: ...


def l2_normalize(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def pick_device(device: str = "auto") -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.startswith("cuda") else torch.float32
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


class TransformersEmbedder:
    """Qwen2-VL-architecture checkpoint through transformers. Load once per actor; call per batch."""

    def __init__(self, model_dir: str | Path, profile: ModelProfile, *, device: str = "auto",
                 threads: int | None = None) -> None:
        import torch
        from transformers import Qwen2VLForConditionalGeneration
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # per-actor "Loading weights" bars would garble the job's progress bar
        if threads:
            torch.set_num_threads(threads)
        self.profile = profile
        self.device = pick_device(device)
        self.dtype = resolve_dtype(profile.dtype, self.device)
        # One preprocessing code path for inline (here) and CPU-actor (stages.PreprocessStage) inputs.
        self.pre = VideoPreprocessor(model_dir, profile)
        self.processor = self.pre.processor
        model = Qwen2VLForConditionalGeneration.from_pretrained(
            str(model_dir), dtype=self.dtype, local_files_only=True
        )
        # Keep only the backbone (vision tower + projector + decoder + final norm): the LM head is never used.
        self.model = model.model.to(self.device).eval()
        del model
        self.dim = int(self.model.config.text_config.hidden_size)
        log.info("loaded %s on %s (%s), dim %d", model_dir, self.device, self.dtype, self.dim)

    # --- inputs (CPU work: tokenise, resize, patchify) ---

    def text_inputs(self, texts: Sequence[str]) -> dict[str, Any]:
        prompts = [render_text(self.profile, t) for t in texts]
        return dict(self.processor(text=prompts, padding=True, return_tensors="pt"))

    def video_inputs(self, videos: Sequence[np.ndarray], edits: Sequence[str] | None = None) -> dict[str, Any]:
        return self.pre.batch(videos, edits)

    # --- forward + pooling ---

    def forward(self, inputs: dict[str, Any]) -> np.ndarray:
        import torch

        batch = {k: (v.to(self.device) if hasattr(v, "to") else v) for k, v in inputs.items()}
        if "pixel_values_videos" in batch:
            batch["pixel_values_videos"] = batch["pixel_values_videos"].to(self.dtype)
        cfg = self.model.config
        # Explicit M-RoPE positions, always: transformers 5.19 numbers the text after a clip from max(h, w) instead
        # of from the largest position used (which includes the clip's temporal extent), unlike Qwen2-VL's original
        # code, Tarsier2's and vLLM's; and for text-only batches it would count left padding. See docs/LOG.md.
        batch["position_ids"] = mrope_positions(
            batch["input_ids"], batch["attention_mask"], batch.get("video_grid_thw"), int(cfg.video_token_id),
            int(cfg.vision_config.spatial_merge_size),
        )
        with torch.inference_mode():
            out = self.model(**batch, use_cache=False)
        last = out.last_hidden_state[:, -1, :].float()  # [batch, dim]: final-norm state at the last real token
        return l2_normalize(last.cpu().numpy())

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self.forward(self.text_inputs(texts))

    def embed_videos(self, videos: Sequence[np.ndarray]) -> np.ndarray:
        if not videos:
            return np.zeros((0, self.dim), np.float32)
        return self.forward(self.video_inputs(videos))

    def embed_inputs(self, items: Sequence[dict[str, np.ndarray]]) -> np.ndarray:
        """Embed videos preprocessed elsewhere (`VideoPreprocessor.one`, on CPU actors)."""
        if not items:
            return np.zeros((0, self.dim), np.float32)
        return self.forward(self.pre.collate(items))

    def embed_composed(self, videos: Sequence[np.ndarray], edits: Sequence[str]) -> np.ndarray:
        if not videos:
            return np.zeros((0, self.dim), np.float32)
        return self.forward(self.video_inputs(videos, edits))


def mrope_positions(input_ids, attention_mask, video_grid_thw, video_token_id: int, merge: int):
    """Qwen2-VL's original 3-D (time, height, width) positions for a left-padded batch: [3, batch, seq].

    Text tokens advance all three axes together; a clip's tokens get (t, h, w) grid coordinates offset by the
    position where the clip starts; the text after a clip resumes at 1 + the largest position used so far.
    Padding positions are 0 (masked out of attention anyway). Each row is numbered from its first real token, so a
    row gets the same positions in a batch as alone.
    """
    import torch

    positions = torch.zeros(3, *input_ids.shape, dtype=torch.long, device=input_ids.device)
    grids = iter(video_grid_thw.tolist() if video_grid_thw is not None else [])
    for b in range(input_ids.shape[0]):
        mask = attention_mask[b].bool()
        ids = input_ids[b][mask]
        is_video = (ids == video_token_id).tolist()
        chunks, i, start, n = [], 0, 0, len(is_video)
        while i < n:
            if is_video[i]:
                t, h, w = next(grids)
                h, w = h // merge, w // merge
                grid = torch.stack(torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"))
                chunks.append(grid.reshape(3, -1) + start)  # [3, t*h*w]
                start = int(chunks[-1].max()) + 1
                i += t * h * w
            else:
                j = i
                while j < n and not is_video[j]:
                    j += 1
                chunks.append(torch.arange(start, start + j - i).expand(3, -1))
                start += j - i
                i = j
        positions[:, b, mask] = torch.cat(chunks, dim=1).to(positions.device)
    return positions


def default_threads() -> int | None:
    """One torch thread per actor unless told otherwise (shared cores: more threads gave erratic timings)."""
    value = os.environ.get("TARA_BATCH_TORCH_THREADS")
    return int(value) if value else None
