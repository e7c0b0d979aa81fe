"""CPU-side model inputs and token-budget batching: per-video preprocessing + collate is bit-identical to the
processor's own batch, our token arithmetic equals the processor's grid, and batching by a visual-token budget never
exceeds the budget, drops or reorders a row."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from tara_batch.models.backend import TransformersEmbedder
from tara_batch.models.preprocess import (
    GRID_THW,
    INPUT_IDS,
    PIXEL_VALUES,
    VISUAL_TOKENS,
    VideoPreprocessor,
    max_visual_tokens,
    plan_batches,
    smart_resize,
    visual_tokens,
)
from tara_batch.models.profile import get_profile
from tara_batch.video.samples import make_clip_frames


def _clips():
    # mixed sizes and lengths: different token counts, so the collate really pads
    return [make_clip_frames(h, w, n, seed=i) for i, (h, w, n) in
            enumerate([(64, 96, 8), (120, 80, 8), (36, 36, 3), (200, 356, 8)])]


@pytest.fixture(scope="module")
def pre(tiny_model_dir):
    return VideoPreprocessor(tiny_model_dir, get_profile())


def test_collate_of_per_video_inputs_is_bit_identical_to_the_batch(pre):
    clips = _clips()
    ref = pre.batch(clips)
    got = pre.collate([pre.one(c) for c in clips])
    assert set(got) == {"input_ids", "attention_mask", PIXEL_VALUES, GRID_THW}
    for k, v in got.items():
        assert v.dtype == ref[k].dtype, k
        assert torch.equal(v, ref[k]), k
    assert int(ref["attention_mask"].sum(dim=1).min()) < ref["input_ids"].shape[1]  # padding really happened


def test_cpu_actor_inputs_give_the_same_embeddings(pre, tiny_model_dir):
    emb = TransformersEmbedder(tiny_model_dir, get_profile(), threads=1)
    clips = _clips()
    np.testing.assert_array_equal(emb.embed_inputs([pre.one(c) for c in clips]), emb.embed_videos(clips))


def test_visual_tokens_match_the_processor(pre):
    prof = get_profile()
    for c in _clips():
        item = pre.one(c)
        t, h, w = item[GRID_THW].tolist()
        assert item[VISUAL_TOKENS] == t * h * w // 4
        assert visual_tokens(c.shape[0], c.shape[1], c.shape[2], prof) == item[VISUAL_TOKENS]
        assert item[VISUAL_TOKENS] <= max_visual_tokens(prof)
        assert len(item[INPUT_IDS]) > item[VISUAL_TOKENS]  # the prompt's text tokens come on top


@pytest.mark.parametrize("seed", range(10))
def test_smart_resize_equals_transformers(seed):
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import smart_resize as ref

    rng = np.random.default_rng(seed)
    for _ in range(50):
        h, w = int(rng.integers(20, 4000)), int(rng.integers(20, 4000))
        lo, hi = int(rng.integers(28 * 28, 200_000)), int(rng.integers(200_000, 2_000_000))
        assert smart_resize(h, w, lo, hi) == ref(h, w, factor=28, min_pixels=lo, max_pixels=hi)


def test_plan_batches_hand_cases():
    assert plan_batches([5, 5, 5, 5], budget=10, max_rows=8) == [slice(0, 2), slice(2, 4)]
    assert plan_batches([9, 2, 9], budget=10, max_rows=8) == [slice(0, 1), slice(1, 2), slice(2, 3)]
    assert plan_batches([1] * 5, budget=None, max_rows=2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert plan_batches([10, 10], budget=10, max_rows=8) == [slice(0, 1), slice(1, 2)]  # exactly the budget fits
    assert plan_batches([], budget=10, max_rows=4) == []
    with pytest.raises(ValueError, match="over the budget"):
        plan_batches([3, 11], budget=10, max_rows=4)


@pytest.mark.parametrize("seed", range(30))
def test_plan_batches_never_exceeds_drops_or_reorders(seed):
    rng = np.random.default_rng(seed)
    budget = int(rng.integers(1, 5000))
    max_rows = int(rng.integers(1, 12))
    tokens = rng.integers(0, budget + 1, size=int(rng.integers(0, 200))).tolist()
    batches = plan_batches(tokens, budget, max_rows)
    rows = [i for b in batches for i in range(b.start, b.stop)]
    assert rows == list(range(len(tokens)))  # every row once, in order
    for b in batches:
        assert 1 <= b.stop - b.start <= max_rows
        assert sum(tokens[b]) <= budget
    for b, nxt in itertools.pairwise(batches):  # greedy: a batch closes only when the next row won't fit
        assert b.stop - b.start == max_rows or sum(tokens[b]) + tokens[nxt.start] > budget


class _RecordingEmbedder:
    """Pure-logic stand-in for a backend: records the rows of every forward, embeds a row as a one-hot of its id."""

    def __init__(self):
        from tara_batch.models.profile import get_profile

        self.profile = get_profile()
        self.dim = 64
        self.calls: list[list[int]] = []

    def embed_videos(self, videos):
        ids = [int(v[0, 0, 0, 0]) for v in videos]
        self.calls.append(ids)
        out = np.zeros((len(ids), self.dim), np.float32)
        out[np.arange(len(ids)), ids] = 1
        return out


def test_embed_stage_forwards_stay_under_the_token_budget_in_order():
    from tara_batch import schema as S
    from tara_batch.embed.stages import EmbedStage

    rng = np.random.default_rng(0)
    sizes = [(int(h), int(w)) for h, w in rng.choice([(64, 96), (240, 320), (480, 640), (720, 1280)], size=20)]
    frames = []
    for i, (h, w) in enumerate(sizes):
        f = np.zeros((2, h, w, 3), np.uint8)
        f[0, 0, 0, 0] = i  # the row's id, read back by the fake embedder
        frames.append(f)
    n = len(frames)
    status = np.array(["ok"] * n, dtype=object)
    status[[3, 11]] = "failed"  # failed rows pass through and are never embedded
    batch = {S.VIDEO_ID: np.array([f"v{i}" for i in range(n)], dtype=object), S.URI: np.array(["u"] * n, dtype=object),
             S.SIZE: np.zeros(n, np.int64), S.ETAG: np.array(["e"] * n, dtype=object), S.STATUS: status,
             S.ERROR_STAGE: np.array([""] * n, dtype=object), S.ERROR_KIND: np.array([""] * n, dtype=object),
             S.ERROR_MESSAGE: np.array([""] * n, dtype=object), S.FRAMES: np.array([*frames, None], dtype=object)[:-1]}
    fake = _RecordingEmbedder()
    prof = fake.profile
    tokens = {i: visual_tokens(2, h, w, prof) for i, (h, w) in enumerate(sizes)}
    budget = max(tokens.values()) + 100
    out = EmbedStage(embedder_factory=lambda: fake, token_budget=budget, max_rows=6)(batch)
    flat = [i for call in fake.calls for i in call]
    assert flat == [i for i in range(n) if status[i] == "ok"]  # every ok row once, in order
    assert all(sum(tokens[i] for i in call) <= budget and len(call) <= 6 for call in fake.calls)
    assert len(fake.calls) > 3  # the budget, not the row cap, split this batch
    assert [int(np.argmax(e)) for e, s in zip(out[S.EMBEDDING], status, strict=True) if s == "ok"] == flat
    assert out[S.VISUAL_TOKENS].tolist() == [tokens[i] if status[i] == "ok" else 0 for i in range(n)]
