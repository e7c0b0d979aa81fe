"""Checking a converted checkpoint without trusting the converter: tensor names and shapes against the model class,
processor and token ids; safetensors headers read without loading data; file hashes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from pathlib import Path
from typing import Any

from tara_batch.errors import ConfigError
from tara_batch.models.convert_config import VISION_TOKENS

log = logging.getLogger(__name__)

SAFETENSORS_DTYPES = {"BF16": "bfloat16", "F16": "float16", "F32": "float32", "F64": "float64"}

# Full from_pretrained load during verification only below this size (a 7B would need ~16 GB of RAM and minutes).
FULL_LOAD_MAX_BYTES = 1 << 30


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
    check_against_model(config, shapes, field)

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
    log.info("verified %s: %d tensors, %s%s", root, len(shapes), human_bytes(total), " (full load)" if full_load else "")
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


def check_against_model(config, actual: dict[str, tuple[int, ...]], field: str) -> None:
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


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} GiB"
