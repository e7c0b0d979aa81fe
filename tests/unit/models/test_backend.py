"""Last-token pooling on the tiny Qwen2-VL: batched == single, unit norm, float32, no LM head, duplication."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tara_batch.models.backend import TransformersEmbedder, l2_normalize
from tara_batch.models.preprocess import prepare_frames
from tara_batch.models.profile import get_profile

TEXTS = ["cut", "someone is folding a paper", "a person opens the door and walks in, then closes it behind them slowly"]


@pytest.fixture(scope="module")
def embedder(tiny_model_dir):
    return TransformersEmbedder(tiny_model_dir, get_profile(), threads=1)


def _videos():
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, (8, 48, 64, 3), dtype=np.uint8),
        rng.integers(0, 256, (8, 112, 84, 3), dtype=np.uint8),
        rng.integers(0, 256, (3, 120, 160, 3), dtype=np.uint8),  # fewer frames than wanted (short clip)
        rng.integers(0, 256, (1, 56, 56, 3), dtype=np.uint8),
    ]


def test_text_batched_equals_single(embedder):
    batched = embedder.embed_texts(TEXTS)
    single = np.stack([embedder.embed_texts([t])[0] for t in TEXTS])
    assert batched.dtype == np.float32 and batched.shape == (3, embedder.dim)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    assert np.all(np.sum(batched * single, axis=1) >= 0.9999)
    assert np.abs(batched - single).max() < 1e-4


def test_video_batched_equals_single(embedder):
    vids = _videos()
    batched = embedder.embed_videos(vids)
    single = np.stack([embedder.embed_videos([v])[0] for v in vids])
    assert np.all(np.sum(batched * single, axis=1) >= 0.9999)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    # different inputs give different vectors (a constant output would pass the parity check too)
    assert np.max(batched @ batched.T - np.eye(len(vids))) < 0.9999


def test_pooling_is_final_norm_hidden_state_at_last_position(embedder, tiny_model_dir):
    """Independent reference: the full model with output_hidden_states, hidden_states[-1][:, -1], one at a time."""
    from transformers import Qwen2VLForConditionalGeneration

    full = Qwen2VLForConditionalGeneration.from_pretrained(str(tiny_model_dir), local_files_only=True).eval()
    inputs = embedder.text_inputs([TEXTS[1]])
    with torch.inference_mode():
        out = full(**inputs, output_hidden_states=True)
    ref = l2_normalize(out.hidden_states[-1][:, -1].float().numpy())
    np.testing.assert_allclose(embedder.embed_texts([TEXTS[1]]), ref, atol=1e-5)
    # and it is *after* the final RMSNorm: the pre-norm state of the last layer differs
    assert not hasattr(embedder.model, "lm_head")


def test_frame_duplication_sets_grid_t_to_frames(embedder):
    v = np.zeros((5, 56, 56, 3), np.uint8)
    assert embedder.video_inputs([v])["video_grid_thw"].tolist() == [[5, 4, 4]]
    assert prepare_frames([v], get_profile(duplicate_frames=False))[0].shape[0] == 5
    assert prepare_frames([v], get_profile())[0].shape[0] == 10
    with pytest.raises(ValueError, match="uint8"):
        prepare_frames([v.astype(np.float32)], get_profile())


def test_golden_text_embedding(embedder):
    """Regression pin for the tiny model (seed 0): catches silent changes in prompts, pooling or preprocessing."""
    got = embedder.embed_texts(["someone is folding a paper"])[0][:4]
    np.testing.assert_allclose(got, [0.0706111, 0.08432344, -0.02077555, -0.11551371], atol=1e-4)


def test_composed_prompt_runs_and_depends_on_edit(embedder):
    v = _videos()[0]
    a, b = embedder.embed_composed([v, v], ["make it night", "reverse the motion"])
    assert float(a @ b) < 0.99999


def _reference_positions(n_text_before: int, grid: tuple[int, int, int], n_text_after: int) -> np.ndarray:
    """Qwen2-VL's original numbering written out by hand for one row: text, clip (t, h, w merged), text."""
    t, h, w = grid
    pos = [[i, i, i] for i in range(n_text_before)]
    s = n_text_before
    pos += [[s + a, s + b, s + c] for a in range(t) for b in range(h) for c in range(w)]
    s = s + max(t, h, w)  # resume after the largest position used, temporal extent included
    pos += [[s + i, s + i, s + i] for i in range(n_text_after)]
    return np.array(pos).T  # [3, seq]


def test_video_positions_follow_original_qwen2vl_including_time(embedder):
    from tara_batch.models.backend import mrope_positions

    long_low_res = np.zeros((8, 56, 56, 3), np.uint8)  # grid (8, 4, 4) -> merged (8, 2, 2): time dominates
    inputs = embedder.video_inputs([long_low_res, _videos()[1]])
    cfg = embedder.model.config
    pos = mrope_positions(inputs["input_ids"], inputs["attention_mask"], inputs["video_grid_thw"],
                          cfg.video_token_id, cfg.vision_config.spatial_merge_size)
    ids = inputs["input_ids"][0][inputs["attention_mask"][0].bool()].tolist()
    first = ids.index(cfg.video_token_id)
    n_vid = ids.count(cfg.video_token_id)
    ref = _reference_positions(first, (8, 2, 2), len(ids) - first - n_vid)
    row = pos[:, 0, inputs["attention_mask"][0].bool()].numpy()
    np.testing.assert_array_equal(row, ref)
    # transformers 5.19's own numbering differs on exactly this kind of clip (why we pass positions explicitly)
    own, _ = embedder.model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                           image_grid_thw=None, video_grid_thw=inputs["video_grid_thw"],
                                           attention_mask=inputs["attention_mask"])
    assert not np.array_equal(own[:, 0, inputs["attention_mask"][0].bool()].numpy(), ref)
