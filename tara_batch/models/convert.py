"""Convert a Tarsier2/TARA checkpoint (custom LLaVA-style layout) to the plain Qwen2-VL layout, once, offline.

Why: `bpiyush/TARA` and its base `omni-research/Tarsier2-7b-0115` are saved by ByteDance's own
`Tarsier2ForConditionalGeneration` (config `model_type: llava`), which neither transformers 5 nor vLLM >= 0.24 load.
The weights are exactly a Qwen2-VL-7B, so a rename + a rebuilt config gives a checkpoint both engines load natively
(tara-method.md section 3).

Layout facts (sources: see the docstring of `tara_batch.models.tiny_tarsier`; in short `bpiyush/TARA:
tarsier2/modeling_tarsier2.py`, `bytedance/tarsier:models/modeling_qwen2_vl_fast.py`,
`vllm-project/vllm:vllm/model_executor/models/qwen2_vl.py` + `vllm/transformers_utils/configs/tarsier2.py`,
`ModelTC/LightLLM:lightllm/models/tarsier2/{model.py,tarsier2_visual.py}`):

    Tarsier2 key                      ->  transformers 5 Qwen2VLForConditionalGeneration key
    vision_tower.<rest>               ->  model.visual.<rest>          (patch_embed, blocks, merger = the projector)
    language_model.model.<rest>       ->  model.language_model.<rest>  (embed_tokens, layers, norm)
    language_model.lm_head.<rest>     ->  lm_head.<rest>
    multi_modal_projector.*           ->  dropped: never called with a Qwen2-VL text model (absent in real files)
    *.inv_freq                        ->  dropped: rotary buffers, recomputed at load (absent in real files)

We write the names transformers 5.19's class uses in its own state dict (`model.visual.*`,
`model.language_model.*`, `lm_head.*`). Its loader also maps the legacy `visual.*` / `model.*` names (the
`Qwen2VLForConditionalGeneration` entry of `transformers/conversion_mapping.py`, and `save_pretrained` writes those),
and vLLM's Qwen2-VL `hf_to_vllm_mapper` accepts both spellings, so either loads; the native names need no mapping.

Config: the LLaVA `text_config` is a flat (transformers 4.45) Qwen2-VL config; its text fields become
`text_config`, M-RoPE (`rope_scaling` {type mrope|default, mrope_section} + `rope_theta`) becomes `rope_parameters`,
the *top-level* `vision_config` (the one Tarsier2 builds its vision tower from; it also carries leaked text
defaults we ignore) becomes `vision_config`, and the vision token ids are taken from the tokenizer and checked
against `text_config`. Processor files are rewritten for `Qwen2VLProcessor` (image + video processor, same
min/max pixels), tokenizer and generation files copied, `chat_template.json` becomes `chat_template.jinja`.

Memory: tensors are streamed source shard -> output shard; at most one output shard (`max_shard_bytes`, plus the
tensor being added) is held in memory, never the model. Output is written to a hidden sibling directory and renamed
into place only after verification, so a failed run never leaves a half-written checkpoint at `dst`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tara_batch.errors import ConfigError

log = logging.getLogger(__name__)

# Source prefix -> output prefix (order matters only for readability; prefixes are disjoint).
KEY_MAP: tuple[tuple[str, str], ...] = (
    ("vision_tower.", "model.visual."),
    ("language_model.model.", "model.language_model."),
    ("language_model.lm_head.", "lm_head."),
)
# Tensors known to be unused by the Qwen2-VL forward pass: dropped (and listed in the report), not refused.
DROP_PREFIXES: tuple[str, ...] = ("multi_modal_projector.",)
DROP_SUFFIXES: tuple[str, ...] = (".inv_freq", ".original_inv_freq")

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
RECORD_FILE = "tara_batch_convert.json"
_SAFETENSORS_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64"}
# Full from_pretrained load during verification only below this size (a 7B would need ~16 GB of RAM and minutes).
FULL_LOAD_MAX_BYTES = 1 << 30


@dataclass
class ConvertReport:
    """What `convert_checkpoint` did. `noop` means the source needed no conversion and nothing was written."""

    src: Path
    dst: Path
    noop: bool
    message: str
    tensors: int = 0
    bytes: int = 0
    shards: int = 0
    source_sha256: dict[str, str] = field(default_factory=dict)
    output_sha256: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    # Extras: source tensors deliberately not carried over, and source files not copied (code, assets, README ...).
    dropped: list[str] = field(default_factory=list)
    skipped_files: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Tensor:
    file: str  # source shard, relative to src
    src_key: str
    dst_key: str
    nbytes: int
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype tag, e.g. "BF16"


# --------------------------------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------------------------------

def convert_checkpoint(
    src: str | Path,
    dst: str | Path,
    *,
    max_shard_bytes: int = 5 << 30,
    verify: bool = True,
    overwrite: bool = False,
    progress: bool = False,
) -> ConvertReport:
    """Convert the Tarsier2/TARA checkpoint directory `src` into a Qwen2-VL checkpoint directory `dst`.

    * `src` already in the Qwen2-VL layout: nothing is written; the report has `noop=True` and says so.
    * any other layout, unknown tensor names, or a non-empty `dst` (unless `overwrite`): `ConfigError`.
    * `verify`: re-read the output and check it against the model transformers would build from the new config
      (keys + shapes, cheap at 7B), load the processor, and for checkpoints under 1 GiB do a full `from_pretrained`.
    """
    started = time.monotonic()
    src_path = Path(src).expanduser().resolve()
    dst_path = Path(dst).expanduser().resolve()
    if max_shard_bytes <= 0:
        raise ConfigError("convert.max_shard_bytes", f"must be > 0, got {max_shard_bytes}")
    config = _read_source_config(src_path)
    if detect_layout(config, str(src_path)) == "qwen2_vl":
        message = (f"{src_path} is already in the Qwen2-VL layout (model_type 'qwen2_vl'): use it directly; "
                   "nothing was written")
        log.info(message)
        return ConvertReport(src=src_path, dst=dst_path, noop=True, message=message,
                             seconds=time.monotonic() - started)
    _check_destination(src_path, dst_path, overwrite)

    # Plan everything from headers and small files first: a bad source fails before a byte is written.
    tensors, dropped = plan_tensors(src_path)
    token_ids = _vision_token_ids(src_path, config)
    dtype = _checkpoint_dtype(config, tensors)
    qwen_config = build_qwen2vl_config(config, token_ids, dtype)
    _check_against_model(qwen_config, {t.dst_key: t.shape for t in tensors}, "convert.src")
    processor_config = build_processor_config(src_path, qwen_config)

    tmp = dst_path.parent / f".{dst_path.name}.converting-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        shard_names = _write_weights(src_path, tmp, tensors, max_shard_bytes, progress)
        qwen_config.save_pretrained(tmp)
        (tmp / "processor_config.json").write_text(json.dumps(processor_config, indent=2, sort_keys=True) + "\n")
        copied = _copy_side_files(src_path, tmp)
        if verify:
            verify_checkpoint(tmp, error_field="convert.src")
        skipped = sorted(set(_list_files(src_path)) - copied - {t.file for t in tensors}
                         - {"config.json", "model.safetensors.index.json", "preprocessor_config.json",
                            "processor_config.json", "video_preprocessor_config.json"})
        source_sha = {name: sha256_file(src_path / name) for name in _list_files(src_path)}
        output_sha = {name: sha256_file(tmp / name) for name in _list_files(tmp)}
        total = sum(t.nbytes for t in tensors)
        seconds = time.monotonic() - started
        record = {
            "tool": "tara-batch convert",
            "tara_batch_version": _version(),
            "transformers_version": _module_version("transformers"),
            "created_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": str(src_path),
            "source_model_type": config.get("model_type"),
            "source_architectures": config.get("architectures"),
            "key_map": dict(KEY_MAP),
            "tensors": len(tensors),
            "total_size": total,
            "shards": len(shard_names),
            "dropped_tensors": dropped,
            "skipped_files": skipped,
            "source_sha256": source_sha,
            "output_sha256": output_sha,
            "seconds": round(seconds, 3),
        }
        (tmp / RECORD_FILE).write_text(json.dumps(record, indent=2) + "\n")
        _move_into_place(tmp, dst_path, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    message = (f"converted {len(tensors)} tensors ({_human(total)}) from the Tarsier2/LLaVA layout to the "
               f"Qwen2-VL layout in {len(shard_names)} shard(s): {dst_path}")
    log.info(message)
    return ConvertReport(
        src=src_path, dst=dst_path, noop=False, message=message, tensors=len(tensors), bytes=total,
        shards=len(shard_names), source_sha256=source_sha, output_sha256=output_sha, seconds=seconds,
        dropped=dropped, skipped_files=skipped,
    )


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


def rename_key(key: str) -> str | None:
    """Qwen2-VL name of a Tarsier2 tensor, None if it is dropped on purpose; KeyError if it is unknown."""
    for old, new in KEY_MAP:
        if key.startswith(old):
            return new + key[len(old):]
    if key.startswith(DROP_PREFIXES) or key.endswith(DROP_SUFFIXES):
        return None
    raise KeyError(key)


def plan_tensors(src: Path) -> tuple[list[_Tensor], list[str]]:
    """Every source tensor with its new name and size, read from the safetensors headers only (no tensor data)."""
    files = _weight_files(src)
    planned: list[_Tensor] = []
    dropped: list[str] = []
    unknown: list[str] = []
    seen: dict[str, str] = {}
    for name in files:
        header = read_safetensors_header(src / name)
        # Data-offset order = file order: the copy then reads each shard front to back.
        for key, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
            try:
                new = rename_key(key)
            except KeyError:
                unknown.append(key)
                continue
            if new is None:
                dropped.append(key)
                continue
            if new in seen:
                raise ConfigError("convert.src", f"tensor {new!r} appears twice ({seen[new]} and {name}:{key})")
            seen[new] = f"{name}:{key}"
            start, end = info["data_offsets"]
            planned.append(_Tensor(name, key, new, end - start, tuple(info["shape"]), info["dtype"]))
    if unknown:
        raise ConfigError(
            "convert.src",
            f"{len(unknown)} tensor(s) in {src} match no known Tarsier2 prefix "
            f"({', '.join(old for old, _ in KEY_MAP)}; dropped on purpose: {', '.join(DROP_PREFIXES)}, "
            f"*{', *'.join(DROP_SUFFIXES)}), e.g. {unknown[:5]}: refusing to guess where they belong",
        )
    if not planned:
        raise ConfigError("convert.src", f"no tensors found in {src}")
    if dropped:
        log.warning("dropping %d tensor(s) unused by the Qwen2-VL forward pass, e.g. %s", len(dropped), dropped[:3])
    return planned, dropped


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


def verify_checkpoint(
    path: str | Path, *, error_field: str = "model.path", full_load: bool | None = None
) -> dict[str, Any]:
    """Check a Qwen2-VL checkpoint directory loads cleanly; raise ConfigError(field) listing what is wrong.

    Cheap at any size: the config parses as Qwen2VLConfig, the model transformers builds from it on the meta device
    (no memory) has exactly the tensors in the files (names and shapes; no missing, no unexpected), the index is
    consistent (each key once, total_size right), AutoProcessor gives a Qwen2VLProcessor with image and video
    processors whose tokenizer agrees with the config's vision token ids, and generation_config.json parses.
    `full_load` (default: only under 1 GiB) also runs `from_pretrained` and requires an empty loading report.
    Problems raise ConfigError(error_field, ...).
    """
    field = error_field
    from transformers import AutoConfig, AutoProcessor, GenerationConfig, Qwen2VLProcessor

    root = Path(path)
    try:
        config = AutoConfig.from_pretrained(str(root), local_files_only=True)
    except Exception as exc:  # any parse failure is a verification failure
        raise ConfigError(field, f"{root}/config.json does not load: {exc}") from exc
    if config.model_type != "qwen2_vl":
        raise ConfigError(field, f"{root} has model_type {config.model_type!r}, expected 'qwen2_vl'")

    shapes, total = _output_shapes(root, field)
    _check_against_model(config, shapes, field)

    try:
        processor = AutoProcessor.from_pretrained(str(root), local_files_only=True)
    except Exception as exc:
        raise ConfigError(field, f"AutoProcessor cannot load {root}: {exc}") from exc
    if not isinstance(processor, Qwen2VLProcessor) or getattr(processor, "video_processor", None) is None \
            or getattr(processor, "image_processor", None) is None:
        raise ConfigError(field, f"{root}: AutoProcessor gave {type(processor).__name__} without image and video "
                                 "processors; expected Qwen2VLProcessor")
    for cfg_field, token in VISION_TOKENS.items():
        tok_id = processor.tokenizer.convert_tokens_to_ids(token)
        if tok_id != getattr(config, cfg_field):
            raise ConfigError(field, f"tokenizer id of {token} is {tok_id} but config.{cfg_field} is "
                                     f"{getattr(config, cfg_field)}")
    if (root / "generation_config.json").exists():
        try:
            GenerationConfig.from_pretrained(str(root), local_files_only=True)
        except Exception as exc:
            raise ConfigError(field, f"{root}/generation_config.json does not load: {exc}") from exc

    if full_load is None:
        full_load = total <= FULL_LOAD_MAX_BYTES
    if full_load:
        from transformers import Qwen2VLForConditionalGeneration
        from transformers.utils import logging as hf_logging

        bars = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()  # a "Loading weights" bar per verification is noise in a CLI run
        try:
            _, info = Qwen2VLForConditionalGeneration.from_pretrained(
                str(root), local_files_only=True, output_loading_info=True
            )
        finally:
            if bars:
                hf_logging.enable_progress_bar()
        problems = {k: sorted(v)[:5] for k, v in info.items() if v and k != "error_msgs"}
        if problems or info.get("error_msgs"):
            raise ConfigError(field, f"from_pretrained({root}) reported {problems or info['error_msgs']}")
    log.info("verified %s: %d tensors, %s%s", root, len(shapes), _human(total), " (full load)" if full_load else "")
    return {"tensors": len(shapes), "bytes": total, "full_load": full_load}


def read_safetensors_header(path: Path) -> dict[str, dict[str, Any]]:
    """Tensor name -> {dtype, shape, data_offsets} from a .safetensors file's JSON header (no data read)."""
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise ConfigError("convert.src", f"{path} is not a safetensors file (too short)")
        (length,) = struct.unpack("<Q", raw)
        if length > 100 << 20:  # a real header is KBs to a few MB; anything bigger is not safetensors
            raise ConfigError("convert.src", f"{path} is not a safetensors file (header of {length} bytes)")
        header = json.loads(fh.read(length))
    header.pop("__metadata__", None)
    return header


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------------------------

def _read_source_config(src: Path) -> dict[str, Any]:
    if not src.is_dir():
        raise ConfigError("convert.src", f"{src} is not a directory; pass a local checkpoint directory")
    path = src / "config.json"
    if not path.exists():
        raise ConfigError("convert.src", f"{src} has no config.json: not a transformers checkpoint directory")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError("convert.src", f"{path} is not valid JSON: {exc}") from exc


def _check_destination(src: Path, dst: Path, overwrite: bool) -> None:
    if dst == src or src in dst.parents or dst in src.parents:
        raise ConfigError("convert.dst", f"{dst} overlaps the source {src}; choose a separate directory")
    if dst.exists():
        if not dst.is_dir():
            raise ConfigError("convert.dst", f"{dst} exists and is not a directory")
        if any(dst.iterdir()) and not overwrite:
            raise ConfigError("convert.dst", f"{dst} exists and is not empty; choose a new directory or pass "
                                             "overwrite=True (--overwrite) to replace it")


def _weight_files(src: Path) -> list[str]:
    index = src / "model.safetensors.index.json"
    if index.exists():
        weight_map = json.loads(index.read_text()).get("weight_map") or {}
        files = sorted(set(weight_map.values()))
        missing = [f for f in files if not (src / f).exists()]
        if missing:
            raise ConfigError("convert.src", f"{index} lists shard(s) that are not there: {missing[:5]}")
        return files
    if (src / "model.safetensors").exists():
        return ["model.safetensors"]
    if any(src.glob("*.bin")) or any(src.glob("*.pt")):
        raise ConfigError("convert.src", f"{src} holds PyTorch pickle weights (.bin); only safetensors checkpoints "
                                         "are converted (load once with the original code and save_pretrained with "
                                         "safe_serialization=True)")
    raise ConfigError("convert.src", f"{src} has neither model.safetensors nor model.safetensors.index.json")


def _list_files(root: Path) -> list[str]:
    """Relative names of the regular files under root, hidden files/dirs (.git, .cache) excluded."""
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.append(rel.as_posix())
    return out


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


def _vision_token_ids(src: Path, llava: dict[str, Any]) -> dict[str, int]:
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


def _checkpoint_dtype(llava: dict[str, Any], tensors: list[_Tensor]) -> str:
    declared = llava.get("dtype") or llava.get("torch_dtype") or (llava.get("text_config") or {}).get("torch_dtype")
    if isinstance(declared, str) and declared != "auto":
        return declared
    counts: dict[str, int] = {}
    for t in tensors:
        counts[t.dtype] = counts.get(t.dtype, 0) + t.nbytes
    return _SAFETENSORS_DTYPES.get(max(counts, key=counts.get), "float32")


def _pixel_limits(pre: dict[str, Any]) -> tuple[int, int]:
    size = pre.get("size") or {}
    if "shortest_edge" in size and "longest_edge" in size:  # transformers >= 4.5x
        return size["shortest_edge"], size["longest_edge"]
    if "min_pixels" in size and "max_pixels" in size:  # transformers 4.45 (Tarsier2's era)
        return size["min_pixels"], size["max_pixels"]
    return pre.get("min_pixels", DEFAULT_MIN_PIXELS), pre.get("max_pixels", DEFAULT_MAX_PIXELS)


def _expected_shapes(config) -> dict[str, tuple[int, ...]]:
    """Parameter/persistent-buffer shapes of the model transformers builds from `config`, with no memory (meta)."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(config)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if getattr(config, "tie_word_embeddings", False):
        shapes.pop("lm_head.weight", None)  # tied: read from the embeddings, need not be in the files
    return shapes


def _check_against_model(config, actual: dict[str, tuple[int, ...]], field: str) -> None:
    expected = _expected_shapes(config)
    missing = sorted(set(expected) - set(actual))
    unexpected = sorted(set(actual) - set(expected))
    wrong = sorted(k for k in set(expected) & set(actual) if tuple(expected[k]) != tuple(actual[k]))
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing, e.g. {missing[:5]}")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected, e.g. {unexpected[:5]}")
        if wrong:
            parts.append("shape mismatches, e.g. " + ", ".join(
                f"{k}: file {actual[k]} vs model {expected[k]}" for k in wrong[:5]))
        raise ConfigError(field, "weights do not match the Qwen2-VL model built from the config: " + "; ".join(parts))


def _output_shapes(root: Path, field: str) -> tuple[dict[str, tuple[int, ...]], int]:
    """Shapes of every tensor in a checkpoint; checks the index (each key once, in the file it names, total_size)."""
    index_path = root / "model.safetensors.index.json"
    files = [p.name for p in sorted(root.glob("*.safetensors"))]
    shapes: dict[str, tuple[int, ...]] = {}
    where: dict[str, str] = {}
    total = 0
    for name in files:
        for key, info in read_safetensors_header(root / name).items():
            if key in shapes:
                raise ConfigError(field, f"tensor {key} is stored twice ({where[key]} and {name})")
            shapes[key] = tuple(info["shape"])
            where[key] = name
            total += info["data_offsets"][1] - info["data_offsets"][0]
    if index_path.exists():
        index = json.loads(index_path.read_text())
        weight_map = index.get("weight_map", {})
        if weight_map != where:
            diff = sorted(set(weight_map.items()) ^ set(where.items()))
            raise ConfigError(field, f"{index_path} does not match the shard contents, e.g. {diff[:5]}")
        if index.get("metadata", {}).get("total_size") != total:
            raise ConfigError(field, f"{index_path} total_size {index.get('metadata', {}).get('total_size')} "
                                     f"!= {total} bytes of tensors")
    elif files != ["model.safetensors"]:
        raise ConfigError(field, f"{root}: expected model.safetensors or an index, found {files}")
    return shapes, total


def _plan_shards(tensors: list[_Tensor], max_shard_bytes: int) -> list[list[_Tensor]]:
    shards: list[list[_Tensor]] = [[]]
    size = 0
    for t in tensors:
        if shards[-1] and size + t.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        if t.nbytes > max_shard_bytes:
            log.warning("tensor %s (%d bytes) alone exceeds max_shard_bytes=%d", t.dst_key, t.nbytes, max_shard_bytes)
        shards[-1].append(t)
        size += t.nbytes
    return shards


def _write_weights(src: Path, out: Path, tensors: list[_Tensor], max_shard_bytes: int, progress: bool) -> list[str]:
    """Stream tensors into output shards; returns the shard file names. Peak memory ~ one output shard."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    shards = _plan_shards(tensors, max_shard_bytes)
    n = len(shards)
    names = ["model.safetensors"] if n == 1 else [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=sum(t.nbytes for t in tensors), unit="B", unit_scale=True, desc="convert")
    weight_map: dict[str, str] = {}
    handles: dict[str, Any] = {}
    try:
        for name, shard in zip(names, shards, strict=True):
            buffer = {}
            for t in shard:
                if t.file not in handles:
                    # Keep only the source shard(s) this output shard reads from open (mmap'd, not loaded).
                    for stale in [f for f in handles if f not in {x.file for x in shard}]:
                        handles.pop(stale).__exit__(None, None, None)
                    handle = safe_open(str(src / t.file), framework="pt", device="cpu")
                    handles[t.file] = handle.__enter__()
                buffer[t.dst_key] = handles[t.file].get_tensor(t.src_key)
                if bar is not None:
                    bar.update(t.nbytes)
            save_file(buffer, str(out / name), metadata={"format": "pt"})
            weight_map.update({k: name for k in buffer})
            log.info("wrote %s (%d tensors, %.1f MiB)", name, len(buffer), sum(t.nbytes for t in shard) / 2**20)
            del buffer  # release this shard before reading the next one
    finally:
        for handle in handles.values():
            handle.__exit__(None, None, None)
        if bar is not None:
            bar.close()
    if n > 1:
        index = {"metadata": {"total_size": sum(t.nbytes for t in tensors)}, "weight_map": dict(sorted(weight_map.items()))}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    return names


def _copy_side_files(src: Path, out: Path) -> set[str]:
    """Tokenizer, chat template and generation config; returns the source names consumed."""
    used: set[str] = set()
    for name in (*TOKENIZER_FILES, "generation_config.json"):
        if (src / name).exists():
            shutil.copy2(src / name, out / name)
            used.add(name)
    tok_cfg_path = src / "tokenizer_config.json"
    tok_cfg: dict[str, Any] = {}
    if tok_cfg_path.exists():
        tok_cfg = json.loads(tok_cfg_path.read_text())
        # processor_class named ByteDance's TarsierProcessor (custom code we do not ship); auto_map would pull code.
        tok_cfg["processor_class"] = "Qwen2VLProcessor"
        tok_cfg.pop("auto_map", None)
        (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2, ensure_ascii=False) + "\n")
        used.add("tokenizer_config.json")
    if not (out / "tokenizer.json").exists() and not (out / "vocab.json").exists():
        raise ConfigError("convert.src", f"{src} has no tokenizer files (tokenizer.json or vocab.json + merges.txt)")
    # transformers 5 reads the processor's template from chat_template.jinja (chat_template.json is the legacy form).
    template: str | None = None
    if (src / "chat_template.jinja").exists():
        template = (src / "chat_template.jinja").read_text()
        used.add("chat_template.jinja")
    elif (src / "chat_template.json").exists():
        template = json.loads((src / "chat_template.json").read_text()).get("chat_template")
        used.add("chat_template.json")
    elif isinstance(tok_cfg.get("chat_template"), str):
        template = tok_cfg["chat_template"]
    if template:
        (out / "chat_template.jinja").write_text(template)
    else:
        log.warning("%s ships no chat template; tara-batch renders prompts from its profile, apply_chat_template "
                    "will not work on the converted checkpoint", src)
    return used


def _move_into_place(tmp: Path, dst: Path, overwrite: bool) -> None:
    if dst.exists():
        if any(dst.iterdir()):
            if not overwrite:  # re-checked: someone may have written there while we converted
                raise ConfigError("convert.dst", f"{dst} became non-empty during the conversion")
            shutil.rmtree(dst)
        else:
            dst.rmdir()
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, dst)


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"


def _version() -> str:
    from tara_batch import __version__

    return __version__


def _module_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # provenance only
        return None

