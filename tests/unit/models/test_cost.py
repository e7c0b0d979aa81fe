"""Sizing arithmetic: token counts agree with the real processor, FLOPs with a hand count."""

from __future__ import annotations

import numpy as np
import pytest

from tara_batch.models.cost import TextArch, VisionArch, smart_resize, video_cost, videos_per_second_ceiling


@pytest.mark.parametrize("hw", [(720, 1280), (1080, 1920), (480, 640), (48, 64), (1280, 720), (333, 517), (2160, 3840)])
def test_smart_resize_matches_transformers(hw):
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import smart_resize as ref

    assert smart_resize(*hw, 28, 3136, 460_800) == ref(*hw, factor=28, min_pixels=3136, max_pixels=460_800)


def test_tarsier2_720p_8_frames_matches_tara_method_token_counts():
    c = video_cost(720, 1280, 8)
    assert c.frame_hw == (504, 896)
    assert c.visual_tokens == 4608  # "about 576 per 16:9 frame, about 4.6K per 8-frame clip"
    assert c.patches == 8 * 36 * 64


def test_visual_tokens_equal_the_real_processor(tiny_model_dir):
    from tara_batch.models.backend import TransformersEmbedder
    from tara_batch.models.profile import get_profile

    emb = TransformersEmbedder(tiny_model_dir, get_profile())
    for t, h, w in [(8, 90, 160), (3, 112, 84), (5, 64, 48)]:
        inputs = emb.video_inputs([np.zeros((t, h, w, 3), np.uint8)])
        n_pad = int((inputs["input_ids"] == emb.processor.video_token_id).sum())
        assert video_cost(h, w, t, arch=(VisionArch(), TextArch())).visual_tokens == n_pad


def test_flops_hand_count_on_a_toy_architecture():
    vis = VisionArch(depth=1, embed_dim=4, mlp_ratio=2, patch_size=14, temporal_patch_size=2, spatial_merge_size=2,
                     out_dim=8)
    txt = TextArch(hidden=8, layers=1, heads=2, kv_heads=1, intermediate=16, vocab=10)
    c = video_cost(28, 28, 1, arch=(vis, txt), prompt_tokens=3, min_pixels=784)  # one 2x2-patch slice, 1 token
    assert (c.patches, c.visual_tokens, c.llm_tokens) == (4, 1, 4)
    patch_embed = 3 * 2 * 14 * 14 * 4
    block = 4 * 16 + 2 * 4 * 8
    assert c.vision_flops == 2 * 4 * (patch_embed + block) + 4 * 4**2 * 4
    assert c.merger_flops == 2 * 1 * (16 * 16 + 16 * 8)
    layer = 2 * 64 + 2 * 8 * 4 + 3 * 8 * 16
    assert c.llm_flops == 2 * 4 * layer + 4 * 16 * 8
    assert videos_per_second_ceiling(c, peak_flops=c.total_flops * 3) == pytest.approx(3.0)
