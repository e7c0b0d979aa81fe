"""A tiny, random Tarsier2/TARA-layout checkpoint (LLaVA-style), and an independent way to load it.

The real TARA model (`bpiyush/TARA`) and its base (`omni-research/Tarsier2-7b-0115`) are saved by ByteDance's custom
`Tarsier2ForConditionalGeneration` under a `model_type: llava` config. `build_tiny_tarsier` writes the same layout
with the sizes of `tara_batch.models.tiny` so `tara-batch convert` can be tested offline; `load_tarsier_reference`
reads that layout *without* `tara_batch.models.convert`, so a test comparing the two proves the converter.

What the real layout looks like, and where each fact comes from (GitHub sources read for this module):

* Module tree / weight names -- `bpiyush/TARA:tarsier2/modeling_tarsier2.py` (class `Tarsier2ForConditionalGeneration`)
  and `bytedance/tarsier:models/modeling_qwen2_vl_fast.py` (branch tarsier2, merged into main):
  `vision_tower` = `Qwen2VisionTransformerPretrainedModel` (patch_embed, blocks.N.{norm1,norm2,attn.qkv,attn.proj,
  mlp.fc1,mlp.fc2}, merger.{ln_q,mlp.0,mlp.2}) -- the Qwen2-VL *merger is the projector* and lives inside the vision
  tower; `language_model` = `Qwen2VLForCausalLM` (model.embed_tokens, model.layers.N.*, model.norm, lm_head).
  Checkpoint keys are therefore `vision_tower.*`, `language_model.model.*`, `language_model.lm_head.*`.
  Rotary `inv_freq` buffers are registered `persistent=False`, so they are not in the files.
* `multi_modal_projector` exists only when `projection_head` is "MLP"/"Pixel_Shuffle"; with a `qwen2_vl` text model the
  forward pass never calls it (`vision_tower(pixel_values, image_grid_thw)` feeds the LLM directly). Real Tarsier2
  configs evidently use `projection_head: null` (inferred, not read from the file): LightLLM (`ModelTC/LightLLM:lightllm/models/tarsier2/tarsier2_visual.py`)
  strictly loads only `vision_tower.*` into that module, and vLLM's Tarsier2 loader
  (`vllm-project/vllm:vllm/model_executor/models/qwen2_vl.py`, `Tarsier2ForConditionalGeneration.hf_to_vllm_mapper`)
  maps only `vision_tower.` -> `visual.` and keeps `language_model.*`, so no projector tensors exist.
* config.json: `model_type: llava`, `architectures: [Tarsier2ForConditionalGeneration]`, top-level `text_config`
  (a full *flat* Qwen2-VL config dict, `model_type: qwen2_vl`, hidden_size 3584 / 28 layers for 7B, carrying
  `image_token_id`, `vision_start_token_id`, `vision_end_token_id`: LightLLM `lightllm/models/tarsier2/model.py` reads
  them from `text_config`; `modeling_qwen2_vl_fast.get_rope_index` uses `config.image_token_id`) and top-level
  `vision_config` (also `model_type: qwen2_vl`, patch_size 14): vLLM `vllm/transformers_utils/configs/tarsier2.py`
  ("LlavaConfig -> Qwen2VLConfig -> Qwen2VLTextConfig/Qwen2VLVisionConfig" nesting) and vLLM PR #44957/#47049
  ("Tarsier2's config.json stores a full Qwen2VLConfig as its text_config"). vLLM's Tarsier2 class even runs the
  whole model from `config.text_config` (`qwen2vl_config = config.text_config`), so text_config carries its own
  (default Qwen2-VL-7B) vision_config too; Tarsier2's own code builds the tower from the top-level one. LLaVA fields from the config class in
  `modeling_tarsier2.py`: `ignore_index`, `image_token_index`, `projector_hidden_act`,
  `vision_feature_select_strategy`, `vision_feature_layer`, `image_newline_idx`, `image_new_idx`, `projection_head`.
  Tarsier2 feeds video frames through the *image* token (`image_token_index`, "videos are treated as multi-images").
* Processor files: `preprocessor_config.json` of a transformers-4.45 `Qwen2VLImageProcessor` whose `size` is
  `{"min_pixels", "max_pixels"}` (vLLM's `Tarsier2ImageProcessor` remaps exactly that format), a
  `processor_config.json` for ByteDance's `TarsierProcessor` (`bpiyush/TARA:tarsier2/tarsier2_processor.py`,
  attributes image_token / patch_size / merge_size / temporal_patch_size / max_seq_len), a `chat_template.json` (the
  TARA snapshot requires it), Qwen2 tokenizer files, `generation_config.json`, and sharded safetensors with
  `model.safetensors.index.json` (`{"metadata": {"total_size"}, "weight_map"}`).

Reconstructed, not verified (no hub file could be read here): the exact byte content of config.json (field order,
the 4.45 defaults that leak into `vision_config`, whether `text_config` nests its own default `vision_config`), the
chat template text (we ship Qwen2-VL's ChatML template) and the TarsierProcessor defaults. The converter is written to
accept the plausible variants of each (see `tara_batch.models.convert`).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tara_batch.models.tiny import SPECIAL_TOKENS, TEXT_CONFIG, VISION_CONFIG, build_tokenizer, tiny_config

log = logging.getLogger(__name__)

# Qwen2-VL's ChatML template as it would sit in the Tarsier2 repo's chat_template.json, with the `{% generation %}`
# markers TarsierProcessor needs for `return_assistant_tokens_mask=True`.
TARSIER_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for item in message['content'] %}"
    "{% if item['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{% if message['role'] == 'assistant' %}{% generation %}{{ item['text'] }}"
    "{% endgeneration %}{% else %}{{ item['text'] }}{% endif %}{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Native transformers-5 Qwen2VLForConditionalGeneration state-dict prefix -> Tarsier2 checkpoint prefix. Used to
# *write* the tiny checkpoint and to *read* it back in `load_tarsier_reference`; deliberately not shared with
# convert.py (which maps the other way), so the two implementations check each other.
_NATIVE_TO_TARSIER = (
    ("model.visual.", "vision_tower."),
    ("model.language_model.", "language_model.model."),
    ("lm_head.", "language_model.lm_head."),
)

# Qwen2VLConfig (transformers 4.45) defaults that leak into the LLaVA `vision_config` because the LLaVA config class
# instantiates CONFIG_MAPPING["qwen2_vl"] for it: text-model fields the vision tower never reads.
_LEAKED_TEXT_DEFAULTS = {
    "vocab_size": 152064,
    "intermediate_size": 29568,
    "num_hidden_layers": 80,
    "num_attention_heads": 64,
    "num_key_value_heads": 8,
    "max_position_embeddings": 32768,
    "rope_theta": 1000000.0,
    "use_sliding_window": False,
    "sliding_window": 4096,
    "max_window_layers": 80,
}
# Default Qwen2-VL-7B vision settings a 4.45 Qwen2VLConfig serialises inside text_config (unused by Tarsier2: the vision
# tower is built from the *top-level* vision_config). Deliberately different from the tiny sizes, so a converter that
# picked this one would fail loudly with shape mismatches.
_NESTED_DEFAULT_VISION = {
    "depth": 32,
    "embed_dim": 1280,
    "hidden_size": 3584,
    "hidden_act": "quick_gelu",
    "mlp_ratio": 4,
    "num_heads": 16,
    "in_channels": 3,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "model_type": "qwen2_vl",
}


def _tarsier_name(native: str) -> str:
    for new, old in _NATIVE_TO_TARSIER:
        if native.startswith(new):
            return old + native[len(new):]
    raise KeyError(f"no Tarsier2 name for {native!r}")


def _llava_config(ids: dict[str, int], vocab: int, dtype: str) -> dict[str, Any]:
    text = TEXT_CONFIG
    rope = text["rope_parameters"]
    head_dim = text["hidden_size"] // text["num_attention_heads"]
    assert sum(rope["mrope_section"]) * 2 == head_dim
    text_config = {
        "model_type": "qwen2_vl",
        "vocab_size": vocab,
        "hidden_size": text["hidden_size"],
        "intermediate_size": text["intermediate_size"],
        "num_hidden_layers": text["num_hidden_layers"],
        "num_attention_heads": text["num_attention_heads"],
        "num_key_value_heads": text["num_key_value_heads"],
        "hidden_act": "silu",
        "max_position_embeddings": text["max_position_embeddings"],
        "initializer_range": 0.02,
        "rms_norm_eps": text["rms_norm_eps"],
        "use_cache": True,
        "tie_word_embeddings": False,
        # transformers 4.45 stores M-RoPE as rope_scaling (type "mrope" rewritten to "default") + a flat rope_theta
        "rope_theta": rope["rope_theta"],
        "rope_scaling": {"type": "default", "rope_type": "default", "mrope_section": list(rope["mrope_section"])},
        "use_sliding_window": False,
        "sliding_window": text["max_position_embeddings"],
        "max_window_layers": text["num_hidden_layers"],
        "attention_dropout": 0.0,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
        "vision_token_id": ids["<|vision_pad|>"],
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "spatial_merge_size": VISION_CONFIG["spatial_merge_size"],
        "torch_dtype": dtype,
        "vision_config": dict(_NESTED_DEFAULT_VISION),
    }
    vision = VISION_CONFIG
    vision_config = {
        **_LEAKED_TEXT_DEFAULTS,
        "model_type": "qwen2_vl",
        "depth": vision["depth"],
        "embed_dim": vision["embed_dim"],
        "hidden_size": vision["hidden_size"],
        "hidden_act": "quick_gelu",
        "mlp_ratio": vision["mlp_ratio"],
        "num_heads": vision["num_heads"],
        "in_chans": 3,  # Qwen2-VL hub configs spell it this way (transformers' class calls it in_channels)
        "patch_size": vision["patch_size"],
        "spatial_patch_size": vision["patch_size"],
        "spatial_merge_size": vision["spatial_merge_size"],
        "temporal_patch_size": vision["temporal_patch_size"],
        "torch_dtype": dtype,
    }
    return {
        "architectures": ["Tarsier2ForConditionalGeneration"],
        "model_type": "llava",
        "ignore_index": -100,
        "image_token_index": ids["<|image_pad|>"],
        "image_seq_length": 576,
        "image_newline_idx": 32002,
        "image_new_idx": 32003,
        "projection_head": None,
        "projector_hidden_act": "gelu",
        "vision_feature_layer": -2,
        "vision_feature_select_strategy": "default",
        "text_config": text_config,
        "vision_config": vision_config,
        "torch_dtype": dtype,
        "transformers_version": "4.45.0",
    }


def _write_shards(out: Path, tensors: dict[str, Any], shards: int) -> None:
    """Split into `shards` files of about equal bytes, in key order, with the standard index."""
    from safetensors.torch import save_file

    keys = list(tensors)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    target = total / shards
    groups: list[list[str]] = [[]]
    acc = 0
    for k in keys:
        size = tensors[k].numel() * tensors[k].element_size()
        if groups[-1] and acc + size > target * len(groups) and len(groups) < shards:
            groups.append([])
        groups[-1].append(k)
        acc += size
    while len(groups) < shards:  # more shards than needed (tiny tensors): split the largest group
        big = max(range(len(groups)), key=lambda i: len(groups[i]))
        half = len(groups[big]) // 2
        groups[big:big + 1] = [groups[big][:half], groups[big][half:]]
    weight_map = {}
    for i, group in enumerate(groups, start=1):
        name = f"model-{i:05d}-of-{len(groups):05d}.safetensors"
        save_file({k: tensors[k].contiguous() for k in group}, str(out / name), metadata={"format": "pt"})
        weight_map.update({k: name for k in group})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def build_tiny_tarsier(
    out_dir: str | Path,
    seed: int = 0,
    *,
    shards: int = 2,
    dtype: str = "bfloat16",
    min_pixels: int = 3136,
    max_pixels: int = 460_800,
) -> Path:
    """Write a tiny random checkpoint in the Tarsier2/TARA (LLaVA-style) layout to `out_dir` and return it.

    Same architecture as `tara_batch.models.tiny` (a Qwen2-VL with the same sizes and tokenizer), saved the way the
    custom Tarsier2 class saves: LLaVA config, `vision_tower.*` / `language_model.*` keys over `shards` safetensors
    files + index, TarsierProcessor-era processor files and a chat_template.json. Deterministic for a seed.
    """
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab = len(tokenizer)
    torch_dtype = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}[dtype]

    # The weights: a genuine Qwen2-VL module tree (so shapes are right by construction) ...
    config = tiny_config(tokenizer)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    # ... with every tensor made distinct: init leaves norms at 1 and biases at 0, so a converter that swapped, say,
    # norm1 and norm2 would otherwise go unnoticed by an output comparison.
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    tensors = {_tarsier_name(k): v.detach().to(torch_dtype).clone() for k, v in model.state_dict().items()}
    del model
    _write_shards(out, tensors, shards)

    (out / "config.json").write_text(
        json.dumps(_llava_config(ids, vocab, dtype), indent=2, sort_keys=True) + "\n"
    )
    (out / "generation_config.json").write_text(json.dumps({
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "do_sample": False,
        "transformers_version": "4.45.0",
    }, indent=2) + "\n")

    # Tokenizer files as a processor save would leave them: processor_class names the custom processor, and the
    # template lives in the legacy chat_template.json, not in a .jinja file.
    tokenizer.chat_template = None
    tokenizer.save_pretrained(out)
    for stray in ("chat_template.jinja", "processor_config.json"):
        (out / stray).unlink(missing_ok=True)
    tok_cfg_path = out / "tokenizer_config.json"
    tok_cfg = json.loads(tok_cfg_path.read_text())
    tok_cfg["processor_class"] = "TarsierProcessor"
    tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2) + "\n")
    (out / "chat_template.json").write_text(json.dumps({"chat_template": TARSIER_CHAT_TEMPLATE}, indent=2) + "\n")

    # transformers 4.45 Qwen2VLImageProcessor serialisation: size = {min_pixels, max_pixels} + flat copies.
    (out / "preprocessor_config.json").write_text(json.dumps({
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor",
        "max_pixels": max_pixels,
        "min_pixels": min_pixels,
        "merge_size": VISION_CONFIG["spatial_merge_size"],
        "patch_size": VISION_CONFIG["patch_size"],
        "processor_class": "TarsierProcessor",
        "resample": 3,
        "rescale_factor": 0.00392156862745098,
        "size": {"max_pixels": max_pixels, "min_pixels": min_pixels},
        "temporal_patch_size": VISION_CONFIG["temporal_patch_size"],
    }, indent=2, sort_keys=True) + "\n")
    (out / "processor_config.json").write_text(json.dumps({
        "image_token": "<|image_pad|>",
        "max_seq_len": 16384,
        "merge_size": VISION_CONFIG["spatial_merge_size"],
        "patch_size": VISION_CONFIG["patch_size"],
        "processor_class": "TarsierProcessor",
        "temporal_patch_size": VISION_CONFIG["temporal_patch_size"],
    }, indent=2, sort_keys=True) + "\n")
    # A file the converter must not carry over (the TARA hub repo also holds code, assets and a README).
    (out / "README.md").write_text("# tiny Tarsier2-layout checkpoint (random weights, tests only)\n")
    (out / "tara_batch_tiny.json").write_text(
        json.dumps({"builder": "tara_batch.models.tiny_tarsier", "seed": seed, "shards": shards}) + "\n"
    )
    log.info("tiny Tarsier2-layout checkpoint written to %s (%d tensors, %d shards)", out, len(tensors), shards)
    return out


def load_tarsier_reference(path: str | Path, *, dtype=None):
    """Load a Tarsier2-layout checkpoint into a transformers `Qwen2VLForConditionalGeneration`, without convert.py.

    The "original way" for tests: the LLaVA config's sub-configs become a Qwen2-VL config (top-level vision_config for
    the tower, as Tarsier2ForConditionalGeneration builds it; token ids from text_config), and every parameter of
    the fresh model is filled from the Tarsier2 name it was saved under, strictly (a missing or leftover tensor
    raises). Returns the model in eval mode (float32 unless `dtype` is given).
    """
    import torch
    from safetensors import safe_open
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    root = Path(path)
    llava = json.loads((root / "config.json").read_text())
    if llava.get("model_type") != "llava":
        raise ValueError(f"{root} is not a LLaVA/Tarsier2-layout checkpoint (model_type {llava.get('model_type')!r})")
    tc, vc = llava["text_config"], llava["vision_config"]
    rope = dict(tc.get("rope_scaling") or {})
    text = {
        "vocab_size": tc["vocab_size"],
        "hidden_size": tc["hidden_size"],
        "intermediate_size": tc["intermediate_size"],
        "num_hidden_layers": tc["num_hidden_layers"],
        "num_attention_heads": tc["num_attention_heads"],
        "num_key_value_heads": tc["num_key_value_heads"],
        "hidden_act": tc["hidden_act"],
        "max_position_embeddings": tc["max_position_embeddings"],
        "rms_norm_eps": tc["rms_norm_eps"],
        "rope_parameters": {"rope_type": "default", "mrope_section": rope["mrope_section"],
                            "rope_theta": tc["rope_theta"]},
        "bos_token_id": tc.get("bos_token_id"),
        "eos_token_id": tc.get("eos_token_id"),
    }
    vision = {
        "depth": vc["depth"],
        "embed_dim": vc["embed_dim"],
        "hidden_size": vc["hidden_size"],
        "hidden_act": vc["hidden_act"],
        "mlp_ratio": vc["mlp_ratio"],
        "num_heads": vc["num_heads"],
        "in_channels": vc.get("in_chans", vc.get("in_channels", 3)),
        "patch_size": vc["patch_size"],
        "spatial_merge_size": vc["spatial_merge_size"],
        "temporal_patch_size": vc["temporal_patch_size"],
    }
    config = Qwen2VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=tc["image_token_id"],
        video_token_id=tc["video_token_id"],
        vision_start_token_id=tc["vision_start_token_id"],
        vision_end_token_id=tc["vision_end_token_id"],
        tie_word_embeddings=False,
    )
    model = Qwen2VLForConditionalGeneration(config)

    index_file = root / "model.safetensors.index.json"
    files = sorted(set(json.loads(index_file.read_text())["weight_map"].values())) if index_file.exists() \
        else ["model.safetensors"]
    saved: dict[str, Any] = {}
    for name in files:
        with safe_open(str(root / name), framework="pt") as f:
            for k in f.keys():  # noqa: SIM118 -- safe_open handles are not dicts
                saved[k] = f.get_tensor(k)
    state = {}
    for native in model.state_dict():
        state[native] = saved.pop(_tarsier_name(native))
    if saved:
        raise ValueError(f"tensors in {root} that the model does not have: {sorted(saved)[:5]}")
    model.load_state_dict(state, strict=True)
    return model.to(dtype or torch.float32).eval()
