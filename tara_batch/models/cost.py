"""Compute and memory-traffic estimates for one video embedding on a Qwen2-VL-architecture model.

Used to size clusters: visual tokens per clip for a profile, forward FLOPs per video for Tarsier2-7B, and the
resulting videos/s ceiling on an accelerator of a given peak throughput. Pure arithmetic, no model needed:

    python benchmarks/backends.py --ceiling-only

Counting conventions: a matmul of (m x k) by (k x n) costs 2mkn FLOPs; attention costs 4 * L^2 * d per layer per
sequence (QK^T and AV), full (non-causal) for the vision tower, causal-but-counted-full for the LLM (what a dense
kernel pays); norms, activations and rotary embeddings are ignored (< 1%).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class VisionArch:
    depth: int = 32
    embed_dim: int = 1280
    mlp_ratio: int = 4
    patch_size: int = 14
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    out_dim: int = 3584  # projector (merger) output = LLM hidden size
    in_channels: int = 3


@dataclass(frozen=True)
class TextArch:
    hidden: int = 3584
    layers: int = 28
    heads: int = 28
    kv_heads: int = 4
    intermediate: int = 18944
    vocab: int = 152064


TARSIER2_7B = (VisionArch(), TextArch())  # Qwen2-VL-7B sizes (Tarsier2-7B is architecturally Qwen2-VL-7B)


def smart_resize(height: int, width: int, factor: int = 28, min_pixels: int = 3136, max_pixels: int = 460_800):
    """Qwen2-VL's rounding of a frame to multiples of `factor` within [min_pixels, max_pixels]."""
    from tara_batch.models.preprocess import smart_resize

    return smart_resize(height, width, min_pixels, max_pixels, factor=factor)


@dataclass(frozen=True)
class VideoCost:
    frame_hw: tuple[int, int]
    patches: int  # vision-tower tokens (all temporal slices)
    visual_tokens: int  # LLM tokens after the 2x2 merger
    llm_tokens: int
    vision_flops: float
    merger_flops: float
    llm_flops: float
    total_flops: float
    weight_bytes: float  # read once per forward, shared by the batch
    activation_bytes: float  # per video: layer inputs/outputs read+written once per layer (lower bound)

    def as_dict(self) -> dict:
        return asdict(self)


def video_cost(height: int, width: int, num_frames: int, *, duplicate_frames: bool = True,
               max_pixels: int = 460_800, min_pixels: int = 3136, prompt_tokens: int = 20,
               arch: tuple[VisionArch, TextArch] = TARSIER2_7B, bytes_per_param: int = 2) -> VideoCost:
    vis, txt = arch
    factor = vis.patch_size * vis.spatial_merge_size
    h, w = smart_resize(height, width, factor, min_pixels, max_pixels)
    frames_in = num_frames * (2 if duplicate_frames else 1)
    grid_t = math.ceil(frames_in / vis.temporal_patch_size)
    per_slice = (h // vis.patch_size) * (w // vis.patch_size)
    patches = grid_t * per_slice
    visual_tokens = patches // vis.spatial_merge_size**2
    llm_tokens = visual_tokens + prompt_tokens

    d, m = vis.embed_dim, vis.embed_dim * vis.mlp_ratio
    patch_embed = vis.in_channels * vis.temporal_patch_size * vis.patch_size**2 * d
    block_params = 4 * d * d + 2 * d * m  # qkv + proj, fc1 + fc2
    # Qwen2-VL's vision attention runs within each temporal slice (cu_seqlens per grid_t step).
    attn = 4 * per_slice**2 * d * grid_t
    vision_flops = 2 * patches * (patch_embed + vis.depth * block_params) + vis.depth * attn
    merged_in = d * vis.spatial_merge_size**2
    merger_params = merged_in * merged_in + merged_in * vis.out_dim
    merger_flops = 2 * visual_tokens * merger_params

    head_dim = txt.hidden // txt.heads
    layer_params = (2 * txt.hidden * txt.hidden  # q, o
                    + 2 * txt.hidden * txt.kv_heads * head_dim  # k, v
                    + 3 * txt.hidden * txt.intermediate)  # gate, up, down
    llm_flops = txt.layers * (2 * llm_tokens * layer_params + 4 * llm_tokens**2 * txt.hidden)
    total = vision_flops + merger_flops + llm_flops  # no LM head: we pool the final-norm hidden state

    params = (vis.depth * block_params + patch_embed + merger_params + txt.layers * layer_params
              + txt.vocab * txt.hidden)  # embeddings table is read sparsely, counted once for simplicity
    act = bytes_per_param * 2 * (vis.depth * patches * d + txt.layers * llm_tokens * txt.hidden)
    return VideoCost((h, w), patches, visual_tokens, llm_tokens, float(vision_flops), float(merger_flops),
                     float(llm_flops), float(total), float(params * bytes_per_param), float(act))


def videos_per_second_ceiling(cost: VideoCost, peak_flops: float = 790e12, mfu: float = 1.0) -> float:
    """Compute-bound ceiling: peak FLOP/s x utilisation / FLOPs per video."""
    return peak_flops * mfu / cost.total_flops
