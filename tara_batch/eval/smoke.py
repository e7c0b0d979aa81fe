"""Smoke check of a real checkpoint: both backends on a few texts and a video, token ids, cosines, PASS/FAIL.

Meant for a GPU machine with the converted TARA checkpoint (vLLM installed: pip install -e '.[vllm]'):

    tara-batch smoke --model /models/tara-qwen2vl --video folding_paper.mp4 --golden

* parity: identical prompt token ids and per-row cosine between the transformers and vLLM backends (text, video and
  composed prompts), threshold 0.9999 in float32, 0.999 in bfloat16;
* golden (--golden, with the TARA repository's folding_paper.mp4 and 8 frames): cosines of the video against
  'someone is folding a paper' / 'cutting a paper' / 'someone is unfolding a paper' must be
  0.6488 / 0.3952 / 0.3009 within 0.005 (the published figures).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tara_batch.models.backend import TransformersEmbedder
from tara_batch.models.checkpoint import resolve_checkpoint
from tara_batch.models.profile import ModelProfile
from tara_batch.video.registry import get_sampler

log = logging.getLogger(__name__)

GOLDEN_TEXTS = ("someone is folding a paper", "cutting a paper", "someone is unfolding a paper")
GOLDEN_COSINES = (0.6488, 0.3952, 0.3009)


@dataclass
class SmokeReport:
    lines: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def check(self, ok: bool, what: str) -> None:
        self.lines.append(f"{'PASS' if ok else 'FAIL'}  {what}")
        if not ok:
            self.failures.append(what)

    def info(self, what: str) -> None:
        self.lines.append(f"      {what}")

    @property
    def passed(self) -> bool:
        return not self.failures

    def render(self) -> str:
        return "\n".join([*self.lines, "", "SMOKE: PASS" if self.passed else f"SMOKE: FAIL ({len(self.failures)})"])


def _unpadded(inputs) -> list[list[int]]:
    return [ids[mask.bool()].tolist() for ids, mask in zip(inputs["input_ids"], inputs["attention_mask"], strict=True)]


def run_smoke(model: str, profile: ModelProfile, *, video: str | None = None, golden: bool = False,
              backends: str = "both", tolerance: float = 0.005, device: str = "auto") -> SmokeReport:
    from tara_batch.models.vllm_backend import vllm_available

    rep = SmokeReport()
    path = resolve_checkpoint(model)
    if video:
        frames = get_sampler("pyav").sample(Path(video).read_bytes(), profile.num_frames, profile.max_pixels).frames
        rep.info(f"video {video}: {frames.shape[0]} frames of {frames.shape[1]}x{frames.shape[2]}")
    else:
        rng = np.random.default_rng(0)
        frames = rng.integers(0, 256, (profile.num_frames, 224, 392, 3), dtype=np.uint8)
        rep.info("no --video: a random 224x392 clip (parity only)")
    texts = list(GOLDEN_TEXTS)
    edits = ["make it night", "reverse the motion"]

    tf = TransformersEmbedder(path, profile, device=device)
    rep.info(f"transformers backend on {tf.device} ({tf.dtype}), dim {tf.dim}")
    t_text, t_video = tf.embed_texts(texts), tf.embed_videos([frames])
    t_comp = tf.embed_composed([frames, frames], edits)
    cos = (t_video @ t_text.T)[0]
    rep.info("video vs texts (transformers): " + ", ".join(f"{t!r}={c:.4f}" for t, c in zip(texts, cos, strict=True)))
    if golden:
        for t, c, g in zip(texts, cos, GOLDEN_COSINES, strict=True):
            rep.check(abs(c - g) <= tolerance, f"golden cosine {t!r}: {c:.4f} vs published {g:.4f} (+/-{tolerance})")
    if golden:
        rep.check(bool(cos[0] > cos[2]), "the video is closer to 'folding' than to 'unfolding'")

    if backends == "transformers":
        return rep
    if not vllm_available():
        rep.check(backends != "vllm", "vLLM backend available" if backends == "vllm" else "vLLM not installed: "
                  "parity skipped (pip install -e '.[vllm]' on GPU, scripts/install_vllm_cpu.sh on CPU)")
        return rep
    from tara_batch.models.vllm_backend import VLLMEmbedder

    vl = VLLMEmbedder(path, profile, device=device)
    threshold = 0.9999 if str(tf.dtype).endswith("float32") else 0.999
    try:
        for name, tf_vec, tf_inputs, run in (
            ("text", t_text, tf.text_inputs(texts), lambda: vl.embed_texts(texts)),
            ("video", t_video, tf.video_inputs([frames]), lambda: vl.embed_videos([frames])),
            ("composed", t_comp, tf.video_inputs([frames, frames], edits), lambda: vl.embed_composed([frames, frames], edits)),
        ):
            v_vec = run()
            rep.check(vl.last_prompt_token_ids == _unpadded(tf_inputs), f"{name}: identical prompt token ids")
            row_cos = np.sum(v_vec * tf_vec, axis=1)
            rep.check(bool(row_cos.min() >= threshold),
                      f"{name}: cosine vLLM vs transformers min {row_cos.min():.6f} (>= {threshold})")
    finally:
        vl.close()
    return rep
