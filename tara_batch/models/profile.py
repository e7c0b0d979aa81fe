"""Model profiles: everything that makes an embedding *TARA's* besides the weights.

A profile bundles the EOL prompt strings, the chat template that wraps them, the frame count, frame duplication and
the pixel caps. Two tables embedded with different profiles are different model versions, even with the same
weights. The `tara` profile follows the released TARA v2 code (see docs/LOG.md for the open questions we decided).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any

from tara_batch.errors import ConfigError

# Placeholders inside the prompt strings (Tarsier's literal tokens), replaced at render time.
SENT = "<sent>"
VIDEO = "<video>"
IMAGE = "<image>"

TARA_TEXT_PROMPT = "<sent>\nSummary above sentence in one word:"
TARA_VIDEO_PROMPT = "<video>\nSummary above video in one word:"
TARA_IMAGE_PROMPT = "<image>\nSummary above image in one word:"
TARA_COMPOSED_PROMPT = (
    "USER: Source video: <video>\nEdit instruction: <sent>\n"
    "Look at the attached video carefully. The provided text is instruction to edit the video. "
    "Imagine this edit instruction being applied to the provided video frame.\n"
    "Summarize the resulting edited video in one word: ASSISTANT:"
)
# Qwen2-VL ChatML user turn, no system prompt, ending where the assistant's answer would begin: the pooled token is
# the "\n" closing the assistant header (tara-method.md section 1).
QWEN2VL_CHAT_TEMPLATE = "<|im_start|>user\n{content}<|im_end|>\n<|im_start|>assistant\n"
QWEN2VL_VIDEO_PLACEHOLDER = "<|vision_start|><|video_pad|><|vision_end|>"
QWEN2VL_IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"

DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True)
class ModelProfile:
    """What turns a checkpoint into a TARA embedder. Every field can be overridden from config."""

    name: str = "tara"
    text_prompt: str = TARA_TEXT_PROMPT
    video_prompt: str = TARA_VIDEO_PROMPT
    image_prompt: str = TARA_IMAGE_PROMPT
    composed_prompt: str = TARA_COMPOSED_PROMPT
    chat_template: str = QWEN2VL_CHAT_TEMPLATE
    video_placeholder: str = QWEN2VL_VIDEO_PLACEHOLDER
    image_placeholder: str = QWEN2VL_IMAGE_PLACEHOLDER
    # The paper says 16 frames, the released config 8: the released code wins (tara-method.md section 2).
    num_frames: int = 8
    # Each sampled frame is fed twice so that one temporal patch (temporal_patch_size=2) holds one real frame.
    duplicate_frames: bool = True
    # Decode-time cap on pixels per frame (aspect kept, no crop); the processor then rounds sides to multiples of 28.
    max_pixels: int = 460_800
    min_pixels: int = 3_136
    # "auto": bfloat16 on GPU, float32 on CPU.
    dtype: str = "auto"

    def __post_init__(self) -> None:
        _check(self.num_frames >= 1, "profile.num_frames", f"must be >= 1, got {self.num_frames}")
        _check(self.max_pixels >= self.min_pixels > 0, "profile.max_pixels",
               f"need max_pixels >= min_pixels > 0, got max={self.max_pixels} min={self.min_pixels}")
        _check(self.dtype in DTYPES, "profile.dtype", f"must be one of {DTYPES}, got {self.dtype!r}")
        _check("{content}" in self.chat_template, "profile.chat_template",
               "must contain '{content}' where the user turn's text goes")
        _check(SENT in self.text_prompt, "profile.text_prompt", f"must contain {SENT!r}")
        _check(VIDEO in self.video_prompt, "profile.video_prompt", f"must contain {VIDEO!r}")
        _check(VIDEO in self.composed_prompt and SENT in self.composed_prompt, "profile.composed_prompt",
               f"must contain {VIDEO!r} and {SENT!r}")

    def settings(self) -> dict[str, Any]:
        """The profile as plain data (recorded in table metadata; part of the model version)."""
        return dataclasses.asdict(self)

    def settings_json(self) -> str:
        return json.dumps(self.settings(), sort_keys=True)


def _check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ConfigError(field, message)


PROFILES: dict[str, ModelProfile] = {"tara": ModelProfile()}


def get_profile(name: str = "tara", **overrides: Any) -> ModelProfile:
    """A shipped profile by name, with field overrides (unknown fields raise ConfigError naming them)."""
    if name not in PROFILES:
        raise ConfigError("model.profile", f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    known = {f.name for f in dataclasses.fields(ModelProfile)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ConfigError(f"profile.{unknown[0]}", f"not a profile field; known fields: {sorted(known - {'name'})}")
    return dataclasses.replace(PROFILES[name], **overrides)


# --- prompt rendering (the one renderer used by inference and training) ---

def render_text(profile: ModelProfile, sentence: str) -> str:
    """Full model input for a text query: chat template around the text EOL prompt."""
    return _wrap(profile, profile.text_prompt.replace(SENT, sentence))


def render_video(profile: ModelProfile) -> str:
    """Full model input for one video (the processor expands the single <|video_pad|> to the clip's tokens)."""
    return _wrap(profile, profile.video_prompt.replace(VIDEO, profile.video_placeholder))


def render_composed(profile: ModelProfile, edit: str) -> str:
    """Full model input for a composed query: source video + edit instruction."""
    body = profile.composed_prompt.replace(VIDEO, profile.video_placeholder).replace(SENT, edit)
    return _wrap(profile, body)


def render_video_prompts(profile: ModelProfile, n: int, edits: list[str] | tuple[str, ...] | None = None) -> list[str]:
    """Prompts for n clips: the video EOL prompt, or one composed prompt per edit instruction."""
    if edits is None:
        return [render_video(profile)] * n
    if len(edits) != n:
        raise ValueError(f"{n} videos but {len(edits)} edit instructions")
    return [render_composed(profile, e) for e in edits]


def _wrap(profile: ModelProfile, content: str) -> str:
    # str.replace, not str.format: prompts and templates may legitimately contain braces.
    return profile.chat_template.replace("{content}", content)


def render_user(profile: ModelProfile, content: str) -> str:
    """Any user turn (a training prompt, a question): `<video>` / `<image>` placeholders become the vision
    placeholders, then the chat template wraps it exactly like the EOL prompts."""
    return _wrap(profile, content.replace(VIDEO, profile.video_placeholder).replace(IMAGE, profile.image_placeholder))
