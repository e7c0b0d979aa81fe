"""The caption objective (stage 1 of the toy recipe) trains on exactly what the embedder runs.

Pinned: the token ids of a prompt with no answer equal the processor's for the same video and prompt; the hidden
state at the last prompt position of the training forward equals the inference embedding (same template, same
frames path, same M-RoPE positions, same pooling); labels cover the answer and its end token only; a few steps on
one task lower its loss (the gradient reaches the vision tower too).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tara_batch.models.backend import TransformersEmbedder
from tara_batch.models.profile import TARA_TEXT_PROMPT, TARA_VIDEO_PROMPT, get_profile
from tara_batch.train.caption import CaptionObjective, Tasks

PROFILE = get_profile(num_frames=4, max_pixels=112 * 112)


@pytest.fixture(scope="module")
def clips():
    from tara_batch.video.samples import make_clip_frames

    return {"a.mp4": make_clip_frames(64, 96, 4, seed=1), "b.mp4": make_clip_frames(48, 48, 4, seed=2)}


@pytest.fixture(scope="module")
def objective(tiny_model_dir, clips):
    return CaptionObjective(tiny_model_dir, PROFILE, clips)


def test_prompt_tokens_equal_the_processors(objective, clips):
    ids, labels = objective.encode(TARA_VIDEO_PROMPT, None, "a.mp4")
    assert ids == objective.pre.one(clips["a.mp4"])["input_ids"].tolist()
    assert set(labels) == {-100}
    ids2, labels2 = objective.encode(TARA_VIDEO_PROMPT, "circle", "a.mp4")
    answer = objective.tokenizer("circle", add_special_tokens=False)["input_ids"] + [objective.end_id]
    assert ids2 == ids + answer and labels2 == [-100] * len(ids) + answer


def test_training_forward_state_is_the_inference_embedding(objective, tiny_model_dir, clips):
    model = objective.load(torch.float32, torch.device("cpu"), gradient_checkpointing=False).eval()
    rows = Tasks([TARA_VIDEO_PROMPT, TARA_TEXT_PROMPT.replace("<sent>", "a red circle moves left"),
                  TARA_VIDEO_PROMPT], ["x", "y", "z"], ["a.mp4", "", "b.mp4"], ["v", "t", "v"])
    prompts = rows.take([0, 1, 2])
    prompts.answer = [None] * 3  # no answer: the sequence ends where the embedder pools
    inputs, _ = objective.batch(prompts, torch.device("cpu"))
    with torch.no_grad():
        h = model.model(**inputs, use_cache=False).last_hidden_state[:, -1].numpy()
    h /= np.linalg.norm(h, axis=1, keepdims=True)
    emb = TransformersEmbedder(tiny_model_dir, PROFILE)
    expected = np.stack([emb.embed_videos([clips["a.mp4"]])[0], emb.embed_texts(["a red circle moves left"])[0],
                         emb.embed_videos([clips["b.mp4"]])[0]])
    np.testing.assert_allclose(h, expected, atol=2e-5)


def test_a_few_steps_lower_the_loss_and_reach_the_vision_tower(objective, clips):
    model = objective.load(torch.float32, torch.device("cpu"), gradient_checkpointing=False)
    model.train()
    rows = Tasks(["<video>\nWhat is it?"] * 2, ["circle", "square"], ["a.mp4", "b.mp4"], ["qa", "qa"])
    vision = next(p for n, p in model.named_parameters() if "visual" in n).detach().clone()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss, tokens = objective.micro_step(model, rows, torch.device("cpu"), autocast_bf16=False)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    answers = sum(len(objective.tokenizer(a, add_special_tokens=False)["input_ids"]) + 1 for a in rows.answer)
    assert tokens == answers  # the answers and their end tokens, nothing else
    assert losses[-1] < 0.5 * losses[0]
    assert not torch.equal(vision, next(p for n, p in model.named_parameters() if "visual" in n))
    ev = objective.evaluate(model, rows, ["qa"], rank=0, world=1, batch_size=2, device=torch.device("cpu"),
                            autocast_bf16=False)
    assert set(ev) == {"qa", "all"} and ev["all"]["n"] == 2
