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

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tara_batch.errors import ConfigError
from tara_batch.models.convert_config import (
    TOKENIZER_FILES,
    build_processor_config,
    build_qwen2vl_config,
    detect_layout,
    read_source_config,
    vision_token_ids,
)
from tara_batch.models.verify import (
    SAFETENSORS_DTYPES,
    check_against_model,
    human_bytes,
    read_safetensors_header,
    sha256_file,
    verify_checkpoint,
)

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

RECORD_FILE = "tara_batch_convert.json"


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
    config = read_source_config(src_path)
    if detect_layout(config, str(src_path)) == "qwen2_vl":
        message = (f"{src_path} is already in the Qwen2-VL layout (model_type 'qwen2_vl'): use it directly; "
                   "nothing was written")
        log.info(message)
        return ConvertReport(src=src_path, dst=dst_path, noop=True, message=message,
                             seconds=time.monotonic() - started)
    _check_destination(src_path, dst_path, overwrite)

    # Plan everything from headers and small files first: a bad source fails before a byte is written.
    tensors, dropped = plan_tensors(src_path)
    token_ids = vision_token_ids(src_path, config)
    dtype = _checkpoint_dtype(config, tensors)
    qwen_config = build_qwen2vl_config(config, token_ids, dtype)
    check_against_model(qwen_config, {t.dst_key: t.shape for t in tensors}, "convert.src")
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
    message = (f"converted {len(tensors)} tensors ({human_bytes(total)}) from the Tarsier2/LLaVA layout to the "
               f"Qwen2-VL layout in {len(shard_names)} shard(s): {dst_path}")
    log.info(message)
    return ConvertReport(
        src=src_path, dst=dst_path, noop=False, message=message, tensors=len(tensors), bytes=total,
        shards=len(shard_names), source_sha256=source_sha, output_sha256=output_sha, seconds=seconds,
        dropped=dropped, skipped_files=skipped,
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


def _checkpoint_dtype(llava: dict[str, Any], tensors: list[_Tensor]) -> str:
    declared = llava.get("dtype") or llava.get("torch_dtype") or (llava.get("text_config") or {}).get("torch_dtype")
    if isinstance(declared, str) and declared != "auto":
        return declared
    counts: dict[str, int] = {}
    for t in tensors:
        counts[t.dtype] = counts.get(t.dtype, 0) + t.nbytes
    return SAFETENSORS_DTYPES.get(max(counts, key=counts.get), "float32")


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


def _version() -> str:
    from tara_batch import __version__

    return __version__


def _module_version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # provenance only
        return None
