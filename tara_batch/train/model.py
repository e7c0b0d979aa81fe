"""The trainable part of TARA: the language model of a Qwen2-VL checkpoint, its pooling, and merging it back.

What is trained (tara-method.md section 4): the LLM only (embeddings + decoder layers + final norm). The vision
tower and merger are never loaded in training, so they cannot change; `merge_back` copies them byte for byte into
the output checkpoint.

* `load_text_model` builds `Qwen2VLTextModel(config.text_config)` on the meta device and assigns the LLM tensors
  read with `safe_open` from the checkpoint's safetensors (sharded or not), stripping their prefix. Both key
  layouts are understood: transformers 5.19's native `model.language_model.*` (what `tara-batch convert` writes)
  and the legacy `model.*` (what `save_pretrained` writes, e.g. the tiny test model), beside `visual.*` /
  `model.visual.*` and `lm_head.*`.
* Pooling = inference pooling (`models/backend.py`): final-norm hidden state at position -1 of a LEFT-padded batch,
  a real attention mask (no attention to padding: the reference code's `ids > 0` mask is a quirk we do not copy),
  M-RoPE positions counted from each row's first real token (text only: the three axes are identical,
  `cumsum(mask) - 1`, 0 on padding), float32, L2-normalised. tests/unit/train/test_loss.py pins it to
  `TransformersEmbedder.embed_texts` within 1e-5.
* Tokenisation: each raw sentence is truncated to `max_tokens` tokens first (cut at the character offset where
  token `max_tokens` ends, so the kept text is an exact prefix), then wrapped by `render_text` (the one renderer
  inference uses) and tokenised with left padding. The EOL prompt is therefore never truncated.
* `merge_back(src, trained, out)`: every source shard is rewritten with the same name and the same keys; LLM tensors
  come from `trained` (cast to the source dtype), every other tensor is copied untouched. Tensors keep their
  source names (so the layout the source used is kept); index, config, tokenizer, processor and chat template are
  copied; `tara_batch_train.json` records the training config and data hashes. The result loads with
  `tara-batch embed --model OUT`.

No Ray imports here.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import struct
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from tara_batch.errors import ConfigError
from tara_batch.models.profile import ModelProfile, render_text

log = logging.getLogger(__name__)

NATIVE_LLM_PREFIX = "model.language_model."
LEGACY_LLM_PREFIX = "model."
_VISION_PREFIXES = ("visual.", "model.visual.")
TRAIN_RECORD = "tara_batch_train.json"
_DTYPES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}


# --------------------------------------------------------------------------------------------------------------------
# safetensors layout
# --------------------------------------------------------------------------------------------------------------------

def weight_files(model_dir: str | Path) -> list[str]:
    """Safetensors shard names of a checkpoint directory (index order), or ['model.safetensors']."""
    root = Path(model_dir)
    index = root / "model.safetensors.index.json"
    if index.exists():
        return sorted(set(json.loads(index.read_text())["weight_map"].values()))
    if (root / "model.safetensors").exists():
        return ["model.safetensors"]
    raise ConfigError("model.path", f"{root} has neither model.safetensors nor model.safetensors.index.json; "
                                    "training reads safetensors checkpoints only")


def read_header(path: str | Path) -> dict[str, dict[str, Any]]:
    """Tensor name -> {dtype, shape, data_offsets} of a .safetensors file, without reading data."""
    with open(path, "rb") as fh:
        (length,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(length))
    header.pop("__metadata__", None)
    return header


def llm_prefix(keys: Sequence[str]) -> str:
    """The prefix of the language-model tensors in this checkpoint's key layout."""
    if any(k.startswith(NATIVE_LLM_PREFIX) for k in keys):
        return NATIVE_LLM_PREFIX
    if any(k.startswith(LEGACY_LLM_PREFIX + "layers.") for k in keys):
        return LEGACY_LLM_PREFIX
    raise ConfigError("model.path", "no language-model tensors found (expected `model.language_model.*` or "
                                    "`model.layers.*`); is this a Qwen2-VL-layout checkpoint? Convert Tarsier2 first")


def is_llm_key(key: str, prefix: str) -> bool:
    return key.startswith(prefix) and not key.startswith(_VISION_PREFIXES)


def llm_tensor_index(model_dir: str | Path) -> tuple[str, dict[str, tuple[str, str]]]:
    """(prefix, {text-model key: (shard file, checkpoint key)}) for every LLM tensor in the checkpoint."""
    root = Path(model_dir)
    files = weight_files(root)
    headers = {f: read_header(root / f) for f in files}
    prefix = llm_prefix([k for h in headers.values() for k in h])
    index = {k[len(prefix):]: (f, k) for f, h in headers.items() for k in h if is_llm_key(k, prefix)}
    return prefix, index


def source_dtype(model_dir: str | Path) -> str:
    """The dtype the checkpoint stores its LLM in ('float32', 'bfloat16', ...)."""
    root = Path(model_dir)
    _, index = llm_tensor_index(root)
    file, key = index["embed_tokens.weight"]
    return _DTYPES.get(read_header(root / file)[key]["dtype"], "float32")


class LazySafetensors(Mapping):
    """Read-only {name: tensor} over one or more safetensors files, loading each tensor on access (driver memory
    stays ~ one tensor, not the whole model)."""

    def __init__(self, files: Sequence[str | Path]) -> None:
        self._where = {k: str(f) for f in files for k in read_header(f)}

    def __getitem__(self, key: str):
        from safetensors import safe_open

        with safe_open(self._where[key], framework="pt", device="cpu") as fh:
            return fh.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


# --------------------------------------------------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------------------------------------------------

def load_text_model(model_dir: str | Path, *, dtype=None, device: str = "cpu", gradient_checkpointing: bool = False):
    """Qwen2VLTextModel with the checkpoint's LLM weights; vision tower and LM head are not read."""
    import torch
    from safetensors import safe_open
    from transformers import AutoConfig
    from transformers.models.qwen2_vl.modeling_qwen2_vl import Qwen2VLRotaryEmbedding, Qwen2VLTextModel

    dtype = dtype or torch.float32
    root = Path(model_dir)
    config = AutoConfig.from_pretrained(str(root), local_files_only=True)
    text_config = config.text_config
    with torch.device("meta"):  # no random init of billions of parameters that are overwritten next
        model = Qwen2VLTextModel(text_config)
    _, index = llm_tensor_index(root)
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(index)), sorted(set(index) - expected)
    if missing or unexpected:
        raise ConfigError("model.path", f"{root}: LLM tensors do not match Qwen2VLTextModel (missing {missing[:5]}, "
                                        f"unexpected {unexpected[:5]})")
    state: dict[str, Any] = {}
    by_file: dict[str, list[tuple[str, str]]] = {}
    for name, (file, key) in index.items():
        by_file.setdefault(file, []).append((name, key))
    for file, pairs in sorted(by_file.items()):
        with safe_open(str(root / file), framework="pt", device="cpu") as fh:
            for name, key in pairs:
                state[name] = fh.get_tensor(key).to(dtype)
    model.load_state_dict(state, strict=True, assign=True)
    # Non-persistent rotary buffers were created on meta: rebuild them for real (float32, as transformers does).
    model.rotary_emb = Qwen2VLRotaryEmbedding(config=text_config)
    model = model.to(device)
    if gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.config.use_cache = False
    return model


def load_tokenizer(model_dir: str | Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    tok.padding_side = "left"  # pooling reads position -1: it must be a real token in every row
    return tok


def truncate_sentence(tokenizer, sentence: str, max_tokens: int) -> str:
    """The longest prefix of `sentence` covered by its first `max_tokens` tokens (raw sentence, before wrapping)."""
    enc = tokenizer(sentence, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= max_tokens:
        return sentence
    return sentence[: enc["offset_mapping"][max_tokens - 1][1]]


def tokenize(tokenizer, profile: ModelProfile, sentences: Sequence[str], max_tokens: int | None) -> dict[str, Any]:
    """Truncate each sentence, wrap it in the EOL prompt + chat template, tokenise with left padding."""
    texts = [truncate_sentence(tokenizer, s, max_tokens) if max_tokens else s for s in sentences]
    prompts = [render_text(profile, t) for t in texts]
    return dict(tokenizer(prompts, padding=True, return_tensors="pt", add_special_tokens=False))


def text_positions(attention_mask):
    """M-RoPE positions of a left-padded text batch: [3, batch, seq], counted from each row's first real token.

    Equal to `backend.mrope_positions` for text-only rows (no video tokens: all three axes advance together).
    """
    pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)  # [batch, seq]; padding -> 0 (masked anyway)
    return pos.unsqueeze(0).expand(3, -1, -1)


def pool(model, input_ids, attention_mask):
    """Final-norm hidden state at the last position [batch, dim] (model dtype; normalise in float32 downstream)."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=text_positions(attention_mask),
                use_cache=False)
    return out.last_hidden_state[:, -1, :]


def embed_texts(model, tokenizer, profile: ModelProfile, sentences: Sequence[str], max_tokens: int | None = None,
                batch_size: int = 32):
    """Training-side embeddings (no grad): float32, unit norm, numpy [n, dim]."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    outs = []
    with torch.no_grad():
        for i in range(0, len(sentences), batch_size):
            batch = tokenize(tokenizer, profile, sentences[i:i + batch_size], max_tokens)
            h = pool(model, batch["input_ids"].to(device), batch["attention_mask"].to(device))
            outs.append(F.normalize(h.float(), dim=-1).cpu())
    return torch.cat(outs).numpy()


# --------------------------------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------------------------------

def save_text_weights(state_dict: Mapping[str, Any], path: str | Path, dtype: str = "float32") -> None:
    """Trained LLM tensors (Qwen2VLTextModel names) to one safetensors file, cast to `dtype`."""
    import torch
    from safetensors.torch import save_file

    tdtype = getattr(torch, dtype)
    save_file({k: v.detach().to("cpu", tdtype).contiguous() for k, v in state_dict.items()}, str(path),
              metadata={"format": "pt"})


def merge_back(src_checkpoint: str | Path, trained_text_state_dict: Mapping[str, Any], out_dir: str | Path, *,
               record: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Write a complete checkpoint: source tensors untouched except the LLM, replaced by `trained_text_state_dict`.

    `trained_text_state_dict` uses Qwen2VLTextModel names (`layers.0.mlp.up_proj.weight`, ...), e.g. a
    `LazySafetensors`. Streams shard by shard: memory ~ one source shard + the trained tensors of that shard.
    Written to a hidden sibling directory and renamed into place, so a failure never leaves a partial checkpoint.
    """
    prefix, index = llm_tensor_index(src_checkpoint)
    _check_names(set(index), set(trained_text_state_dict), "the source LLM")
    return _rewrite_checkpoint(
        src_checkpoint, out_dir,
        lambda key: trained_text_state_dict[key[len(prefix):]] if is_llm_key(key, prefix) else None,
        len(index), record=record, overwrite=overwrite)


def module_key(key: str) -> str:
    """A checkpoint tensor name -> its name in `Qwen2VLForConditionalGeneration.state_dict()` (transformers 5.19):
    the legacy `visual.*` / `model.*` layout (what `save_pretrained` writes) and the native one both map to the native
    `model.visual.*`, `model.language_model.*`, `lm_head.*`."""
    if key.startswith(("model.visual.", "model.language_model.", "lm_head.")):
        return key
    if key.startswith("visual."):
        return "model." + key
    if key.startswith(LEGACY_LLM_PREFIX):
        return NATIVE_LLM_PREFIX + key[len(LEGACY_LLM_PREFIX):]
    return key


def merge_full(src_checkpoint: str | Path, trained_state_dict: Mapping[str, Any], out_dir: str | Path, *,
               record: dict[str, Any] | None = None, overwrite: bool = False) -> Path:
    """Like `merge_back` for a whole trained model (`objective: caption`): every tensor replaced by the trained one
    (`trained_state_dict` in the module's names), kept under the source's names, shards, config and side files."""
    root = Path(src_checkpoint)
    names = [k for f in weight_files(root) for k in read_header(root / f)]
    _check_names({module_key(k) for k in names}, set(trained_state_dict), "the source model")
    return _rewrite_checkpoint(src_checkpoint, out_dir, lambda key: trained_state_dict[module_key(key)], len(names),
                               record=record, overwrite=overwrite)


def _check_names(expected: set[str], trained: set[str], what: str) -> None:
    missing, unexpected = sorted(expected - trained), sorted(trained - expected)
    if missing or unexpected:
        raise ValueError(f"trained state dict does not match {what} (missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]})")


def _rewrite_checkpoint(src_checkpoint: str | Path, out_dir: str | Path, replacement, expected: int, *,
                        record: dict[str, Any] | None, overwrite: bool) -> Path:
    """Copy a checkpoint shard by shard, swapping each tensor for `replacement(key)` when that is not None."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    src, out = Path(src_checkpoint), Path(out_dir).expanduser().resolve()
    if out == src.resolve() or src.resolve() in out.parents:
        raise ConfigError("output.dir", f"{out} overlaps the source checkpoint {src}; choose another directory")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError("output.dir", f"{out} exists and is not empty; choose a new directory or set "
                                        "output.overwrite=true")
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        files = weight_files(src)
        replaced = 0
        for name in files:
            buffer = {}
            with safe_open(str(src / name), framework="pt", device="cpu") as fh:
                metadata = fh.metadata() or {"format": "pt"}
                for key in fh.keys():  # noqa: SIM118 (safe_open handles are not iterable)
                    tensor = fh.get_tensor(key)
                    trained = replacement(key)
                    if trained is not None:
                        if tuple(trained.shape) != tuple(tensor.shape):
                            raise ValueError(f"{key}: trained shape {tuple(trained.shape)} != source "
                                             f"{tuple(tensor.shape)}")
                        tensor = trained.detach().to("cpu", tensor.dtype).contiguous()
                        replaced += 1
                    buffer[key] = tensor
            save_file(buffer, str(tmp / name), metadata=metadata)
            del buffer  # one shard at a time
        if replaced != expected:
            raise ValueError(f"replaced {replaced} trained tensors, expected {expected}")
        for p in sorted(src.iterdir()):
            if p.is_file() and p.name not in files and p.name != TRAIN_RECORD and not p.name.startswith("."):
                shutil.copy2(p, tmp / p.name)  # config, index, tokenizer, processor, chat template, generation config
        if record is not None:
            (tmp / TRAIN_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True, default=str) + "\n")
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("merged %d trained tensors into %s (%d shard(s), other tensors copied untouched)", replaced, out,
             len(files))
    return out
