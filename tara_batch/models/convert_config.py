"""The Qwen2-VL side of a conversion: config, token ids and processor settings derived from a Tarsier2 (llava) checkpoint.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tara_batch.errors import ConfigError

log = logging.getLogger(__name__)

# Qwen2VLTextConfig fields carried over from the LLaVA text_config (rope handled separately).
TEXT_FIELDS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "hidden_act", "max_position_embeddings", "initializer_range", "rms_norm_eps",
    "use_cache", "use_sliding_window", "sliding_window", "max_window_layers", "layer_types", "attention_dropout",
    "bos_token_id", "eos_token_id", "pad_token_id",
)

# Qwen2VLVisionConfig fields. The LLaVA vision_config also holds Qwen2VLConfig *text* defaults (vocab_size,
# num_hidden_layers=80, ...) because the 4.45 LLaVA class instantiated a whole Qwen2VLConfig for it: only these count.
VISION_FIELDS = (
    "depth", "embed_dim", "hidden_size", "hidden_act", "mlp_ratio", "num_heads", "in_channels", "patch_size",
    "spatial_merge_size", "temporal_patch_size", "initializer_range",
)

# Token string -> Qwen2VLConfig field (Qwen2-VL's special tokens; the tokenizer is the authority for their ids).
VISION_TOKENS = {
    "image_token_id": "<|image_pad|>",
    "video_token_id": "<|video_pad|>",
    "vision_start_token_id": "<|vision_start|>",
    "vision_end_token_id": "<|vision_end|>",
}

TOKENIZER_FILES = (
    "tokenizer.json", "vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json", "tokenizer.model",
)

IMAGE_PROCESSOR_FIELDS = (
    "do_resize", "resample", "do_rescale", "rescale_factor", "do_normalize", "image_mean", "image_std",
    "do_convert_rgb", "patch_size", "temporal_patch_size", "merge_size",
)

# Qwen2-VL's own processor defaults, used only when the source ships no preprocessor config.
DEFAULT_MIN_PIXELS = 56 * 56

DEFAULT_MAX_PIXELS = 28 * 28 * 16384


def detect_layout(config: dict[str, Any], where: str) -> str:
    """'qwen2_vl' (use as is) or 'tarsier2' (convert); anything else raises ConfigError naming what was found."""
    model_type = config.get("model_type")
    if model_type == "qwen2_vl":
        return "qwen2_vl"
    if model_type == "llava":
        text = config.get("text_config") or {}
        text_type = text.get("model_type") if isinstance(text, dict) else None
        if text_type == "qwen2_vl":
            return "tarsier2"
        raise ConfigError(
            "convert.src",
            f"{where} is a LLaVA checkpoint whose text model is {text_type!r}, not 'qwen2_vl': only Tarsier2/TARA "
            f"(LLaVA layout around a Qwen2-VL, architectures {config.get('architectures')}) can be converted; "
            "Tarsier v1 and other LLaVA models are a different architecture",
        )
    raise ConfigError(
        "convert.src",
        f"{where} has model_type {model_type!r}; `convert` accepts a Tarsier2/TARA checkpoint (model_type 'llava' with a "
        "'qwen2_vl' text_config, architectures ['Tarsier2ForConditionalGeneration']) and leaves a 'qwen2_vl' "
        "checkpoint as it is",
    )


def build_qwen2vl_config(llava: dict[str, Any], token_ids: dict[str, int], dtype: str):
    """A validated `transformers.Qwen2VLConfig` from a Tarsier2 LLaVA config dict."""
    from transformers import Qwen2VLConfig

    text_src = dict(llava["text_config"])
    # A text_config saved by a newer transformers nests the text fields one level down: those win.
    if isinstance(text_src.get("text_config"), dict):
        text_src.update(text_src["text_config"])
    vision_src = llava.get("vision_config")
    if not isinstance(vision_src, dict):
        # Tarsier2 builds its tower from the top-level vision_config; without it the nested default is all we have.
        vision_src = text_src.get("vision_config")
        log.warning("no top-level vision_config; using the one nested in text_config")
    if not isinstance(vision_src, dict):
        raise ConfigError("convert.src", "config.json has no vision_config: cannot size the vision tower")

    nested = text_src.get("vision_config")
    if isinstance(nested, dict) and nested is not vision_src:
        # vLLM's old Tarsier2 loader built the tower from this nested copy, the original code from the top-level one;
        # for the released 7B both are Qwen2-VL-7B's. If they differ the weight shapes decide (checked below).
        differs = sorted(k for k in ("depth", "embed_dim", "num_heads", "mlp_ratio", "patch_size")
                         if k in nested and k in vision_src and nested[k] != vision_src[k])
        if differs:
            log.warning("text_config.vision_config differs from the top-level vision_config in %s; using the "
                        "top-level one (what Tarsier2ForConditionalGeneration builds its vision tower from)", differs)
    text = {k: text_src[k] for k in TEXT_FIELDS if k in text_src}
    text["rope_parameters"] = _rope_parameters(text_src)
    vision = {k: vision_src[k] for k in VISION_FIELDS if k in vision_src}
    if "in_channels" not in vision and "in_chans" in vision_src:  # Qwen2-VL hub spelling
        vision["in_channels"] = vision_src["in_chans"]
    missing = [k for k in ("depth", "embed_dim", "num_heads") if k not in vision]
    if missing:
        raise ConfigError("convert.src", f"vision_config lacks {missing}: not a Qwen2-VL vision tower config")
    if vision.get("hidden_size", text.get("hidden_size")) != text.get("hidden_size"):
        raise ConfigError(
            "convert.src",
            f"vision_config.hidden_size {vision.get('hidden_size')} != text_config.hidden_size "
            f"{text.get('hidden_size')}: the merger must output the LLM width",
        )
    vision.setdefault("hidden_size", text.get("hidden_size"))
    tie = bool(llava.get("tie_word_embeddings", text_src.get("tie_word_embeddings", False)))
    try:
        return Qwen2VLConfig(
            architectures=["Qwen2VLForConditionalGeneration"],
            text_config=text,
            vision_config=vision,
            tie_word_embeddings=tie,
            dtype=dtype,
            **token_ids,
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError("convert.src", f"the rebuilt Qwen2-VL config is invalid: {exc}") from exc


def build_processor_config(src: Path, qwen_config) -> dict[str, Any]:
    """processor_config.json for `Qwen2VLProcessor`: image + video processor with the source's pixel limits."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLVideoProcessor

    pre: dict[str, Any] = {}
    if (src / "preprocessor_config.json").exists():  # transformers 4.x image processor (Tarsier2's case)
        pre = json.loads((src / "preprocessor_config.json").read_text())
    elif (src / "processor_config.json").exists():
        # A transformers-5 save nests the image processor here. A TarsierProcessor processor_config.json is flat and
        # its patch/merge sizes are that processor's own token bookkeeping (defaults 1), not the image processor's.
        pre = json.loads((src / "processor_config.json").read_text()).get("image_processor") or {}
    if not pre:
        log.warning("no preprocessor config in %s: using Qwen2-VL's default pixel limits", src)
    min_pixels, max_pixels = _pixel_limits(pre)
    common = {k: pre[k] for k in IMAGE_PROCESSOR_FIELDS if k in pre}
    vision = qwen_config.vision_config
    # Patch geometry must agree with the vision tower, or token counts silently disagree with pixel_values.
    for proc_key, model_value in (("patch_size", vision.patch_size), ("temporal_patch_size", vision.temporal_patch_size),
                                  ("merge_size", vision.spatial_merge_size)):
        if common.setdefault(proc_key, model_value) != model_value:
            raise ConfigError("convert.src", f"preprocessor {proc_key}={common[proc_key]} but the vision tower "
                                             f"uses {model_value}")
    size = {"shortest_edge": int(min_pixels), "longest_edge": int(max_pixels)}
    image = Qwen2VLImageProcessor(size=size, **common)
    # cap_pixels_per_frame pinned like tara_batch.models.tiny: transformers 5.22 flips its default.
    video = Qwen2VLVideoProcessor(size=size, cap_pixels_per_frame=False, **common)
    return {
        "image_processor": json.loads(image.to_json_string()),
        "video_processor": json.loads(video.to_json_string()),
        "processor_class": "Qwen2VLProcessor",
    }


def read_source_config(src: Path) -> dict[str, Any]:
    if not src.is_dir():
        raise ConfigError("convert.src", f"{src} is not a directory; pass a local checkpoint directory")
    path = src / "config.json"
    if not path.exists():
        raise ConfigError("convert.src", f"{src} has no config.json: not a transformers checkpoint directory")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError("convert.src", f"{path} is not valid JSON: {exc}") from exc


def _added_tokens(src: Path) -> dict[str, int]:
    """Special/added token string -> id from the tokenizer files, without loading a tokenizer."""
    tokens: dict[str, int] = {}
    tok_json = src / "tokenizer.json"
    if tok_json.exists():
        for item in json.loads(tok_json.read_text()).get("added_tokens", []):
            tokens[item["content"]] = int(item["id"])
    tok_cfg = src / "tokenizer_config.json"
    if tok_cfg.exists():
        for tid, item in (json.loads(tok_cfg.read_text()).get("added_tokens_decoder") or {}).items():
            tokens.setdefault(item["content"], int(tid))
    added = src / "added_tokens.json"
    if added.exists():
        for content, tid in json.loads(added.read_text()).items():
            tokens.setdefault(content, int(tid))
    return tokens


def vision_token_ids(src: Path, llava: dict[str, Any]) -> dict[str, int]:
    """Qwen2-VL vision token ids: the tokenizer decides (the processor inserts tokens by string); config must agree."""
    text = llava.get("text_config") or {}
    vocab = _added_tokens(src)
    out: dict[str, int] = {}
    for cfg_field, token in VISION_TOKENS.items():
        from_config = text.get(cfg_field)
        if from_config is None and cfg_field == "image_token_id":
            from_config = llava.get("image_token_index")  # the LLaVA-level name of the same token
        from_tokenizer = vocab.get(token)
        if from_tokenizer is not None and from_config is not None and int(from_config) != from_tokenizer:
            raise ConfigError("convert.src", f"text_config.{cfg_field}={from_config} but the tokenizer maps {token} "
                                             f"to {from_tokenizer}: inconsistent checkpoint")
        value = from_tokenizer if from_tokenizer is not None else from_config
        if value is None:
            raise ConfigError("convert.src", f"cannot find the id of {token}: neither the tokenizer files nor "
                                             f"text_config.{cfg_field} define it")
        out[cfg_field] = int(value)
    image_index = llava.get("image_token_index")
    if image_index is not None and int(image_index) != out["image_token_id"]:
        log.warning("LLaVA image_token_index %s differs from <|image_pad|> id %s; using the tokenizer's",
                    image_index, out["image_token_id"])
    return out


def _rope_parameters(text: dict[str, Any]) -> dict[str, Any]:
    """transformers-5 rope_parameters from either a v5 `rope_parameters` or a v4 `rope_scaling` + `rope_theta`."""
    rope = dict(text.get("rope_parameters") or text.get("rope_scaling") or {})
    if "mrope_section" not in rope:
        raise ConfigError("convert.src", "text_config has no M-RoPE mrope_section (rope_scaling/rope_parameters): "
                                         "not a Qwen2-VL text model")
    rope_type = rope.pop("rope_type", None) or rope.pop("type", None) or "default"
    rope.pop("type", None)
    # "mrope" is only a marker in Qwen2-VL configs; the frequencies are plain ("default") RoPE split in 3 sections.
    rope["rope_type"] = "default" if rope_type == "mrope" else rope_type
    rope.setdefault("rope_theta", text.get("rope_theta", 1_000_000.0))
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    if sum(rope["mrope_section"]) * 2 != head_dim:
        raise ConfigError("convert.src", f"mrope_section {rope['mrope_section']} does not sum to head_dim/2 = "
                                         f"{head_dim // 2}")
    return rope


def _pixel_limits(pre: dict[str, Any]) -> tuple[int, int]:
    size = pre.get("size") or {}
    if "shortest_edge" in size and "longest_edge" in size:  # transformers >= 4.5x
        return size["shortest_edge"], size["longest_edge"]
    if "min_pixels" in size and "max_pixels" in size:  # transformers 4.45 (Tarsier2's era)
        return size["min_pixels"], size["max_pixels"]
    return pre.get("min_pixels", DEFAULT_MIN_PIXELS), pre.get("max_pixels", DEFAULT_MAX_PIXELS)
