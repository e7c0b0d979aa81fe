"""Training job config: small frozen dataclasses, validated on construction, loaded like every other job config.

    cfg = load_config(TrainConfig, "ray_jobs/train_tiny.yaml", ["train.lr=1e-4", "scaling.num_workers=2"])

Defaults are the paper's hyper-parameters (tara-method.md section 4) except the scale: `scaling.num_workers`
defaults to 1 and `train.micro_batch` to 32, so the optimizer batch is micro_batch x num_workers x grad_accum
(768 with 8 workers, the paper's), and the contrastive pool of one micro-step is micro_batch x num_workers (256).
LoRA is not offered: the paper fine-tunes the whole LLM and `peft` is not a dependency.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

from tara_batch.config import RayConfig, S3Config
from tara_batch.errors import ConfigError
from tara_batch.models.profile import ModelProfile

PRECISIONS = ("auto", "bf16", "fp32")
STRATEGIES = ("ddp", "fsdp")
FORMATS = ("auto", "csv", "parquet", "jsonl")
MERGE_FROM = ("final", "best")
OBJECTIVES = ("contrastive", "caption")


@dataclass(frozen=True)
class TrainModelConfig:
    """The checkpoint to fine-tune (Qwen2-VL layout, local dir or s3:// prefix) and how its LLM runs."""

    path: str | None = None
    precision: str = "auto"  # auto: bf16 autocast on GPU (fp32 master weights), fp32 on CPU
    gradient_checkpointing: bool = True

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("model.path", "set the checkpoint to fine-tune: `model.path=DIR` (or s3://...); "
                                            "`tara-batch make-tiny-model DIR` builds a tiny test model")
        _choice("model.precision", self.precision, PRECISIONS)


@dataclass(frozen=True)
class SourceConfig:
    """One triplet file (or Parquet directory) of the mixture: all rows, `count` rows or `ratio` x data.total."""

    path: str = ""
    count: int | None = None
    ratio: float | None = None
    name: str | None = None  # source label for per-source metrics; default: the file's source column, else its stem
    format: str = "auto"  # by extension: .csv, .parquet/.pq, .jsonl/.json/.ndjson

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("data.sources.path", "every source needs a `path` (local file or s3:// URI)")
        if self.count is not None and self.ratio is not None:
            raise ConfigError("data.sources.count", f"{self.path}: give `count` or `ratio`, not both")
        _positive("data.sources.count", self.count, allow_none=True)
        if self.ratio is not None and not 0 < self.ratio <= 1:
            raise ConfigError("data.sources.ratio", f"{self.path}: must be in (0, 1], got {self.ratio}")
        _choice("data.sources.format", self.format, FORMATS)


@dataclass(frozen=True)
class TrainDataConfig:
    """Triplet sources and their column names."""

    sources: tuple[SourceConfig, ...] = ()
    total: int | None = None  # size of the mixture when sources use `ratio`
    anchor_column: str = "sent0"
    positive_column: str = "sent1"
    negative_column: str = "hard_neg"
    source_column: str = "source"  # optional in the files
    # objective: caption reads task tables instead: prompt (with a <video> placeholder when the row names a video),
    # answer, optional video URI (relative paths resolve against media_root, else the table's folder)
    prompt_column: str = "prompt"
    answer_column: str = "answer"
    video_column: str = "video"
    media_root: str | None = None

    def __post_init__(self) -> None:
        if not self.sources:
            raise ConfigError("data.sources", "list at least one triplet file, e.g. "
                                              "`data.sources=[{path: triplets.csv}]` (columns sent0, sent1, hard_neg)")
        if any(s.ratio is not None for s in self.sources) and self.total is None:
            raise ConfigError("data.total", "sources with `ratio` need the mixture size: set `data.total`")
        _positive("data.total", self.total, allow_none=True)


@dataclass(frozen=True)
class ValidationConfig:
    """Held-out triplets: a file (`path`) or a per-source `fraction` of the training sources (default 0.05)."""

    path: str | None = None
    fraction: float | None = None
    max_rows: int | None = 2000
    batch_size: int = 64

    def __post_init__(self) -> None:
        if self.path and self.fraction is not None:
            raise ConfigError("validation.fraction", "give `validation.path` or `validation.fraction`, not both")
        if self.fraction is not None and not 0 <= self.fraction < 1:
            raise ConfigError("validation.fraction", f"must be in [0, 1), got {self.fraction}")
        _positive("validation.max_rows", self.max_rows, allow_none=True)
        _positive("validation.batch_size", self.batch_size)

    @property
    def effective_fraction(self) -> float:
        return 0.0 if self.path else (0.05 if self.fraction is None else self.fraction)


@dataclass(frozen=True)
class OptimConfig:
    """Optimisation (section `train`): defaults = the paper's recipe."""

    micro_batch: int = 32  # triplets per worker per micro-step
    grad_accum: int = 3
    epochs: int = 2
    lr: float = 2e-5
    warmup_ratio: float = 0.1  # linear warmup over ceil(ratio x total steps), then linear decay to 0
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    grad_clip: float = 1.0  # max global L2 norm; 0 disables
    tau: float = 0.05
    max_tokens: int = 32  # each raw sentence is truncated to this many tokens before the EOL prompt wraps it
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("micro_batch", "grad_accum", "epochs", "lr", "tau", "max_tokens"):
            _positive(f"train.{name}", getattr(self, name))
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError("train.warmup_ratio", f"must be in [0, 1), got {self.warmup_ratio}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ConfigError("train.grad_clip", "weight_decay and grad_clip must be >= 0")


@dataclass(frozen=True)
class ScalingSection:
    """Ray Train workers: one process per GPU (or per CPU slot), DDP or FSDP across them."""

    num_workers: int = 1
    use_gpu: bool = False
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # None: 1 when use_gpu
    strategy: str = "ddp"  # ddp: full replicas; fsdp: FSDP2 fully_shard per decoder layer (see loop.py)
    fsdp_reshard_after_forward: bool = False  # False ~ ZeRO-2 (grads+optimizer sharded); True ~ ZeRO-3
    torch_threads: int = 1

    def __post_init__(self) -> None:
        _positive("scaling.num_workers", self.num_workers)
        _positive("scaling.cpus_per_worker", self.cpus_per_worker)
        _positive("scaling.gpus_per_worker", self.gpus_per_worker, allow_none=True)
        _positive("scaling.torch_threads", self.torch_threads)
        _choice("scaling.strategy", self.strategy, STRATEGIES)
        if self.gpus_per_worker and not self.use_gpu:
            raise ConfigError("scaling.gpus_per_worker", "set `scaling.use_gpu=true` to request GPUs")


@dataclass(frozen=True)
class RunSection:
    """Ray Train run: storage of checkpoints (local or s3://), their cadence, failures, resume."""

    name: str | None = None  # default: tara-train-<hash of everything that changes the weights>; same name = resume
    storage_path: str | None = None  # default: Ray's ~/ray_results; must be shared (S3/NFS) on multi-node clusters
    eval_every: int = 10  # optimizer steps between held-out evaluations (also at step 0 and at the end)
    checkpoint_every: int = 10  # optimizer steps between checkpoints (also at the end)
    log_every: int = 1  # steps between log lines of rank 0 (metrics reach Ray only with checkpoints)
    num_to_keep: int | None = 2
    max_failures: int = 0  # worker-group restarts from the latest checkpoint
    stop_after_step: int | None = None  # end this run early after that step (checkpointed); rerun to continue
    merge_from: str = "final"  # final | best (highest mean held-out accuracy among kept checkpoints)

    def __post_init__(self) -> None:
        for name in ("eval_every", "checkpoint_every", "log_every"):
            _positive(f"run.{name}", getattr(self, name))
        _positive("run.num_to_keep", self.num_to_keep, allow_none=True)
        _positive("run.stop_after_step", self.stop_after_step, allow_none=True)
        if self.max_failures < -1:
            raise ConfigError("run.max_failures", f"must be >= 0 (or -1 for unlimited), got {self.max_failures}")
        _choice("run.merge_from", self.merge_from, MERGE_FROM)


@dataclass(frozen=True)
class TrainOutputConfig:
    """Where the merged, complete checkpoint goes (local directory or s3:// prefix)."""

    dir: str | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        if not self.dir:
            raise ConfigError("output.dir", "set where the fine-tuned checkpoint goes: `output.dir=DIR` (or s3://...)")


@dataclass(frozen=True)
class TrainConfig:
    """`objective`: contrastive = TARA's text-only InfoNCE on triplets, LLM only (the default); caption = next-token
    cross-entropy on (video, prompt, answer) tasks, the whole model (the toy world's stage 1, train/caption.py)."""

    model: TrainModelConfig
    data: TrainDataConfig
    output: TrainOutputConfig
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    scaling: ScalingSection = field(default_factory=ScalingSection)
    run: RunSection = field(default_factory=RunSection)
    s3: S3Config = field(default_factory=S3Config)
    profile: ModelProfile = field(default_factory=ModelProfile)
    ray: RayConfig = field(default_factory=RayConfig)
    objective: str = "contrastive"

    def __post_init__(self) -> None:
        _choice("objective", self.objective, OBJECTIVES)

    def weights_key(self) -> dict:
        """Everything that changes the trained weights (not cadence, storage, names or early stops)."""
        return {
            "model": dataclasses.asdict(self.model),
            "data": dataclasses.asdict(self.data),
            "validation": dataclasses.asdict(self.validation),
            "train": dataclasses.asdict(self.train),
            "num_workers": self.scaling.num_workers,
            "strategy": self.scaling.strategy,
            "profile": self.profile.settings(),
            **({"objective": self.objective} if self.objective != "contrastive" else {}),
        }

    def run_name(self, data_fingerprint: str = "") -> str:
        if self.run.name:
            return self.run.name
        blob = json.dumps(self.weights_key(), sort_keys=True, default=str) + data_fingerprint
        return "tara-train-" + hashlib.sha256(blob.encode()).hexdigest()[:12]


def _positive(name: str, value, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(name, f"must be > 0, got {value!r}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(name, f"must be one of {list(choices)}, got {value!r}")
