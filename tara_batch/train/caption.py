"""The generative objective (`objective: caption`): next-token cross-entropy on the answers of (video, prompt, answer)
tasks, for the whole Qwen2-VL (vision tower, merger, LLM, LM head).

It is the stand-in for what made Tarsier2 a video model before TARA: captioning, short questions, one-word summaries.
No contrastive or embedding-level term: the loss is on answer tokens only, the prompt and padding are masked out.

Inputs are built the way inference builds them, so what the model learns is what the embedder later runs:
* prompts rendered with the profile's chat template (`models.profile.render_user`: one user turn, no system prompt,
  ending with the assistant header), a `<video>` placeholder replaced by the profile's vision placeholder;
* frames sampled by our decoder with the profile's frame count and pixel cap (on the driver, once), duplicated per
  the profile and patchified by the checkpoint's own processor (`models.preprocess.VideoPreprocessor`);
* left padding, and the explicit M-RoPE positions the embedder passes (`models.backend.mrope_positions`), not
  transformers' own numbering (which differs after a clip: docs/LOG.md).
The answer is followed by `<|im_end|>`, as a chat turn ends.

Data: a task table (CSV / Parquet / JSONL) with `prompt`, `answer`, optional `video` (a URI; empty for text-only
tasks) and `source` (the task's name: per-task held-out metrics) columns; names are `data.*_column` settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from tara_batch.errors import InputError
from tara_batch.io.s3 import S3Options
from tara_batch.models.profile import VIDEO, ModelProfile, render_user
from tara_batch.train.config import SourceConfig, TrainDataConfig, ValidationConfig
from tara_batch.train.dist import sharded_validation

log = logging.getLogger(__name__)

WEIGHTS = "model.safetensors"  # the whole model's trained tensors inside a Ray Train checkpoint


@dataclass
class Tasks:
    """Columnar tasks: row i = (prompt[i], answer[i]) about video[i] ("" for a text-only task), from source[i]."""

    prompt: list[str] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)
    video: list[str] = field(default_factory=list)
    source: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.prompt)

    def take(self, idx) -> Tasks:
        idx = [int(i) for i in idx]
        return Tasks([self.prompt[i] for i in idx], [self.answer[i] for i in idx], [self.video[i] for i in idx],
                     [self.source[i] for i in idx])

    def extend(self, other: Tasks) -> None:
        self.prompt += other.prompt
        self.answer += other.answer
        self.video += other.video
        self.source += other.source

    def keys(self) -> list[str]:
        """What identifies a row for the held-out overlap check."""
        return [f"{v}\x1f{p}\x1f{a}" for v, p, a in zip(self.video, self.prompt, self.answer, strict=True)]

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for row in zip(self.prompt, self.answer, self.video, self.source, strict=True):
            digest.update("\x1f".join(row).encode() + b"\x1e")
        return digest.hexdigest()


def read_tasks(spec: SourceConfig, columns: TrainDataConfig, s3: S3Options | None = None) -> tuple[Tasks, int]:
    """(tasks of one table, rows dropped for an empty prompt or answer). Relative video paths resolve against
    `data.media_root`, else against the table's folder."""
    from tara_batch.io.uris import canonical_uri, is_s3
    from tara_batch.train.data import column, read_table

    table = read_table(spec.path, spec.format, s3)
    prompts = column(table, columns.prompt_column, spec.path, "data.prompt_column")
    answers = column(table, columns.answer_column, spec.path, "data.answer_column")
    videos = column(table, columns.video_column, spec.path)
    src = column(table, columns.source_column, spec.path)
    root = columns.media_root or str(PurePosixPath(spec.path).parent)
    default = spec.name or PurePosixPath(spec.path.rstrip("/")).stem
    out, dropped = Tasks(), 0
    for i in range(table.num_rows):
        if not (prompts[i] or "").strip() or not (answers[i] or "").strip():
            dropped += 1
            continue
        video = (videos[i] or "").strip() if videos is not None else ""
        if video and not (is_s3(video) or video.startswith("/")):
            video = root.rstrip("/") + "/" + video if is_s3(root) else str(Path(root) / video)
        if video:
            video = canonical_uri(video)
        if video and VIDEO not in prompts[i]:
            raise InputError(f"{spec.path}: row {i} names a video but its prompt has no {VIDEO} placeholder")
        out.prompt.append(prompts[i])
        out.answer.append(answers[i])
        out.video.append(video)
        out.source.append(spec.name or (src[i] if src is not None and src[i] else default))
    if dropped:
        log.warning("%s: dropped %d row(s) with an empty prompt or answer", spec.path, dropped)
    return out, dropped


@dataclass
class TaskData:
    """What the workers receive: training and held-out tasks and the sampled frames of every video they name."""

    train: Tasks
    val: Tasks
    frames: dict[str, np.ndarray]  # uri -> uint8 [T, H, W, 3], sampled like the embed job samples
    info: dict[str, Any]

    def fingerprint(self) -> str:
        return hashlib.sha256((self.train.fingerprint() + self.val.fingerprint()).encode()).hexdigest()


def decode_videos(uris: list[str], profile: ModelProfile, s3: S3Options | None = None,
                  progress: bool = False) -> dict[str, np.ndarray]:
    """Sample every video once with the embed job's rule (PyAV, `profile.num_frames`, `profile.max_pixels`)."""
    from tqdm import tqdm

    from tara_batch.io.reads import read_bytes
    from tara_batch.video.frames import DecodeError
    from tara_batch.video.registry import get_sampler

    sampler = get_sampler("pyav")
    out: dict[str, np.ndarray] = {}
    for uri in tqdm(uris, desc="decode", unit="video", disable=not progress):
        try:
            out[uri] = sampler.sample(read_bytes(uri, s3=s3), profile.num_frames, profile.max_pixels).frames
        except (DecodeError, FileNotFoundError) as exc:
            raise InputError(f"training video {uri} cannot be used: {exc}") from exc
    return out


def load_task_data(data: TrainDataConfig, validation: ValidationConfig, seed: int, profile: ModelProfile,
                   s3: S3Options | None = None, progress: bool = False) -> TaskData:
    """Read and mix the task tables (as triplets are mixed: data.mix_sources), then sample every video they name."""
    from tara_batch.train.data import mix_sources

    train, val, info = mix_sources(data, validation, seed, s3, read_tasks, Tasks)
    uris = sorted({v for v in train.video + val.video if v})
    frames = decode_videos(uris, profile, s3, progress=progress)
    info = {**info, "videos": len(uris)}
    return TaskData(train, val, frames, info)


# --------------------------------------------------------------------------------------------------------------------
# worker side
# --------------------------------------------------------------------------------------------------------------------


class CaptionObjective:
    """Loads the whole model; turns task rows into a left-padded batch with answer-only labels; scores answers."""

    name = "caption"
    weights_file = WEIGHTS

    def __init__(self, model_dir: str | Path, profile: ModelProfile, frames: dict[str, np.ndarray]) -> None:
        from tara_batch.models.preprocess import VideoPreprocessor

        self.model_dir = Path(model_dir)
        self.profile = profile
        self.frames = frames
        self.pre = VideoPreprocessor(model_dir, profile)
        self.tokenizer = self.pre.processor.tokenizer
        self.end_id = int(self.tokenizer.convert_tokens_to_ids("<|im_end|>"))
        self._visual: dict[str, dict[str, np.ndarray]] = {}  # uri -> processor output, computed once per worker
        config = json.loads((self.model_dir / "config.json").read_text())
        self.video_token = int(config["video_token_id"])
        self.merge = int(config["vision_config"]["spatial_merge_size"])

    def load(self, dtype, device, gradient_checkpointing: bool):
        import torch
        from transformers import Qwen2VLForConditionalGeneration

        model = Qwen2VLForConditionalGeneration.from_pretrained(str(self.model_dir), dtype=dtype, local_files_only=True)
        model = model.to(device=device, dtype=torch.float32)
        if gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        return model

    @staticmethod
    def fsdp_layers(model):
        return list(model.model.language_model.layers)

    def _visual_inputs(self, uri: str) -> dict[str, np.ndarray]:
        item = self._visual.get(uri)
        if item is None:
            item = self._visual[uri] = self.pre.one(self.frames[uri])
        return item

    def encode(self, prompt: str, answer: str | None, video: str) -> tuple[list[int], list[int]]:
        """(token ids with the clip's video tokens expanded, labels: -100 except on the answer and its end token)."""
        text = render_user(self.profile, prompt)
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if video:
            n = int(self._visual_inputs(video)["visual_tokens"])
            at = ids.index(self.video_token)  # the processor expands the single pad the same way
            ids = ids[:at] + [self.video_token] * n + ids[at + 1:]
        labels = [-100] * len(ids)
        if answer is not None:
            target = self.tokenizer(answer, add_special_tokens=False)["input_ids"] + [self.end_id]
            ids, labels = ids + target, labels + target
        return ids, labels

    def batch(self, rows: Tasks, device) -> tuple[dict[str, Any], Any]:
        import torch

        from tara_batch.models.backend import mrope_positions

        encoded = [self.encode(p, a, v) for p, a, v in zip(rows.prompt, rows.answer, rows.video, strict=True)]
        longest = max(len(ids) for ids, _ in encoded)
        pad = self.pre.pad_id
        ids = torch.full((len(rows), longest), pad, dtype=torch.long)
        labels = torch.full((len(rows), longest), -100, dtype=torch.long)
        mask = torch.zeros((len(rows), longest), dtype=torch.long)
        for i, (a, b) in enumerate(encoded):  # left padding: the last position is a real token in every row
            ids[i, longest - len(a):] = torch.tensor(a)
            labels[i, longest - len(b):] = torch.tensor(b)
            mask[i, longest - len(a):] = 1
        inputs: dict[str, Any] = {"input_ids": ids, "attention_mask": mask}
        videos = [v for v in rows.video if v]
        if videos:
            items = [self._visual_inputs(v) for v in videos]
            inputs["pixel_values_videos"] = torch.from_numpy(np.concatenate([it["pixel_values_videos"] for it in items]))
            inputs["video_grid_thw"] = torch.from_numpy(np.stack([it["video_grid_thw"] for it in items]))
        inputs["position_ids"] = mrope_positions(ids, mask, inputs.get("video_grid_thw"), self.video_token, self.merge)
        return {k: v.to(device) for k, v in inputs.items()}, labels.to(device)

    def _logits(self, model, inputs: dict[str, Any], autocast_bf16: bool):
        import torch

        device_type = inputs["input_ids"].device.type
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=autocast_bf16):
            return model(**inputs, use_cache=False).logits  # [batch, seq, vocab]

    def micro_step(self, model, rows: Tasks, device, autocast_bf16: bool):
        """(mean answer-token cross-entropy, answer tokens) of one micro-batch."""
        import torch.nn.functional as F

        inputs, labels = self.batch(rows, device)
        logits = self._logits(model, inputs, autocast_bf16)
        target = labels[:, 1:]
        loss = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), target.reshape(-1),
                               ignore_index=-100)
        return loss, int((target != -100).sum())

    def evaluate(self, model, val: Tasks, source_names: list[str], *, rank: int, world: int, batch_size: int,
                 device, autocast_bf16: bool) -> dict[str, dict[str, float]]:
        """Per task: exact-match accuracy of the answer under teacher forcing (every answer token the argmax) and
        the mean answer cross-entropy, over all ranks' shards (same forward count on every rank)."""
        import torch.nn.functional as F

        def score(sub: Tasks):
            inputs, labels = self.batch(sub, device)
            logits = self._logits(model, inputs, autocast_bf16)[:, :-1].float()
            target = labels[:, 1:]
            answer = target != -100
            tok_loss = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=-100, reduction="none")
            exact = ((logits.argmax(-1) == target) | ~answer).all(dim=1)
            return exact, (tok_loss * answer).sum(1) / answer.sum(1).clamp(min=1)

        return sharded_validation(model, val, source_names, rank=rank, world=world, batch_size=batch_size,
                                  score=score, metrics=("accuracy", "loss"))

