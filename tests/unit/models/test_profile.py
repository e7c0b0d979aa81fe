"""The EOL prompts, the chat template and their token ids are pinned to tara-method.md section 1."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tara_batch.errors import ConfigError
from tara_batch.models.profile import ModelProfile, get_profile, render_composed, render_text, render_video

# Golden ids of the tiny model's tokenizer (deterministic BPE trained by tara_batch.models.tiny, seed-independent).
TEXT_IDS = [1, 92, 90, 278, 206, 90, 380, 301, 288, 354, 299, 267, 336, 206, 333, 325, 282, 284, 91, 284, 341, 272,
            308, 311, 33, 2, 206, 1, 72, 90, 90, 80, 294, 312, 91, 206]
# One 8-frame 56x56 clip: grid (8, 4, 4) -> 8*4*4/4 = 32 <|video_pad|> (id 7) between vision_start (3) / end (4).
VIDEO_IDS = [1, 92, 90, 278, 206, 3] + [7] * 32 + [4, 206, 333, 325, 292, 272, 308, 311, 33, 2, 206, 1, 72, 90, 90,
                                                   80, 294, 312, 91, 206]


def test_tara_prompt_strings_are_the_released_v2_ones():
    p = get_profile("tara")
    assert p.text_prompt == "<sent>\nSummary above sentence in one word:"
    assert p.video_prompt == "<video>\nSummary above video in one word:"
    assert p.image_prompt == "<image>\nSummary above image in one word:"
    assert p.composed_prompt == (
        "USER: Source video: <video>\nEdit instruction: <sent>\nLook at the attached video carefully. The provided "
        "text is instruction to edit the video. Imagine this edit instruction being applied to the provided video "
        "frame.\nSummarize the resulting edited video in one word: ASSISTANT:"
    )
    assert (p.num_frames, p.duplicate_frames, p.max_pixels, p.dtype) == (8, True, 460_800, "auto")


def test_rendering_matches_qwen2vl_chatml_user_turn_without_system_prompt():
    p = get_profile()
    assert render_text(p, "a cat") == (
        "<|im_start|>user\na cat\nSummary above sentence in one word:<|im_end|>\n<|im_start|>assistant\n")
    assert render_video(p) == (
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>\nSummary above video in one word:<|im_end|>\n"
        "<|im_start|>assistant\n")
    composed = render_composed(p, "make it night")
    assert "Source video: <|vision_start|><|video_pad|><|vision_end|>\nEdit instruction: make it night\n" in composed
    assert composed.endswith("ASSISTANT:<|im_end|>\n<|im_start|>assistant\n")


def test_braces_in_text_are_literal():
    assert "{x}" in render_text(get_profile(), "{x}")


def test_profile_template_equals_the_checkpoint_jinja_template(tiny_model_dir):
    from transformers import AutoProcessor

    proc = AutoProcessor.from_pretrained(str(tiny_model_dir), local_files_only=True)
    msgs = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "\nSummary above video in one word:"}]}]
    assert proc.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == render_video(get_profile())


def test_golden_token_ids(tiny_model_dir):
    from tara_batch.models.backend import TransformersEmbedder

    emb = TransformersEmbedder(tiny_model_dir, get_profile())
    text = emb.text_inputs(["someone is folding a paper"])
    assert text["input_ids"][0].tolist() == TEXT_IDS
    video = emb.video_inputs([np.zeros((8, 56, 56, 3), np.uint8)])
    assert video["video_grid_thw"].tolist() == [[8, 4, 4]]  # duplication: 8 frames -> grid_t 8
    assert video["input_ids"][0].tolist() == VIDEO_IDS
    # The pooled token is the "\n" closing the assistant header.
    assert emb.processor.tokenizer.decode(TEXT_IDS[-1:]) == "\n"
    assert emb.processor.tokenizer.decode(TEXT_IDS) == render_text(get_profile(), "someone is folding a paper")


def test_overrides_and_validation():
    assert get_profile(num_frames=16).num_frames == 16
    with pytest.raises(ConfigError, match=r"profile\.num_frame"):
        get_profile(num_frame=16)
    with pytest.raises(ConfigError, match=r"profile\.num_frames"):
        ModelProfile(num_frames=0)
    with pytest.raises(ConfigError, match=r"profile\.chat_template.*\{content\}"):
        ModelProfile(chat_template="no slot")
    with pytest.raises(ConfigError, match=r"profile\.dtype"):
        ModelProfile(dtype="fp8")
    with pytest.raises(ConfigError, match="model.profile"):
        get_profile("nope")


def test_settings_are_plain_data_and_stable():
    p = get_profile()
    assert p.settings() == dataclasses.asdict(p)
    assert p.settings_json() == get_profile().settings_json()
    assert p.settings_json() != get_profile(num_frames=16).settings_json()
