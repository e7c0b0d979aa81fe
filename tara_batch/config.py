"""Job configuration: small frozen dataclasses per component, composed into job configs, loaded from YAML and
`key=value` overrides, validated on construction.

Library code never sees a job config: the CLI and ray_jobs/ build one, then hand each component its own section
(or plain arguments). Every mistake raises `ConfigError` naming the dotted field and the fix, before any work starts.

    cfg = load_config(EmbedJobConfig, "job.yaml", ["decode.backend=decord", "profile.num_frames=16"])
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tara_batch.errors import ConfigError
from tara_batch.io.listing import DEFAULT_EXTENSIONS
from tara_batch.io.s3 import S3Options
from tara_batch.models.profile import ModelProfile

T = TypeVar("T")

DECODE_BACKENDS = ("pyav", "decord")
EMBED_BACKENDS = ("auto", "transformers", "vllm")
INDEX_MODES = ("auto", "always", "never")
PROMOTE_MODES = ("auto", "never")
DELETED_POLICIES = ("keep", "prune")


@dataclass(frozen=True)
class InputConfig:
    """Where the videos are: a local directory / file or an s3:// prefix, or a manifest file of URIs."""

    source: str | None = None
    manifest: str | None = None
    manifest_column: str = "uri"
    extensions: tuple[str, ...] | None = DEFAULT_EXTENSIONS
    glob: str | None = None
    limit: int | None = None
    max_bytes: int = 4 << 30  # objects above this are recorded as failures ('too_large'), not read
    # A still image (PNG/JPEG/WebP/...) found among the videos: `reject` makes it a `not_a_video` failure row;
    # `embed` embeds it as a one-frame clip (like any clip shorter than the frame count: all its frames).
    stills: str = "reject"

    def __post_init__(self) -> None:
        _choice("input.stills", self.stills, ("reject", "embed"))
        if (self.source is None) == (self.manifest is None):
            raise ConfigError("input.source", "give exactly one of `input.source` (directory, file or s3:// prefix) "
                              "or `input.manifest` (CSV/Parquet/JSONL of URIs)")
        _positive("input.limit", self.limit, allow_none=True)
        _positive("input.max_bytes", self.max_bytes)


@dataclass(frozen=True)
class S3Config:
    """Explicit S3 settings; anything left unset comes from the standard AWS chain (env, ~/.aws, instance role)."""

    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None

    def __post_init__(self) -> None:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ConfigError("s3.secret_access_key", "set both `s3.access_key_id` and `s3.secret_access_key`, "
                              "or neither (to use the AWS credential chain)")
        if self.endpoint_url and not self.endpoint_url.startswith(("http://", "https://")):
            raise ConfigError("s3.endpoint_url", f"must start with http:// or https://, got {self.endpoint_url!r}")

    def options(self) -> S3Options:
        return S3Options(**dataclasses.asdict(self))

    def __repr__(self) -> str:  # never print secrets, even in a traceback
        return repr(self.options())


@dataclass(frozen=True)
class ModelConfig:
    """The checkpoint (local dir or s3:// prefix, Qwen2-VL layout) and the engine that runs it."""

    path: str | None = None
    backend: str = "auto"  # auto -> vllm when installed and the actor has a GPU, else transformers
    device: str = "auto"  # auto -> cuda when available, else cpu

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("model.path", "set the checkpoint: `--model DIR` or `model.path=DIR` (or s3://...); "
                              "`tara-batch make-tiny-model DIR` builds a tiny test model")
        _choice("model.backend", self.backend, EMBED_BACKENDS)


@dataclass(frozen=True)
class DecodeConfig:
    """CPU decode actors: backend, batch size and pool size (None = sized from the cluster)."""

    backend: str = "pyav"
    threads: int = 1  # decoder threads per actor: one per core beat threaded decode by ~28% (stack-notes.md)
    batch_size: int = 4
    num_cpus: float = 0.5
    concurrency: int | None = None
    # Decoder in a child process (crash containment). None: on for decord (segfaults on some truncated MP4s), off
    # for PyAV (never seen to crash; isolation costs a second copy of the input bytes and a few % of time).
    isolate: bool | None = None
    timeout_s: float = 300.0  # an isolated decode running longer is killed: retriable `decoder_crash`
    max_source_pixels: int | None = 8_847_360  # frames above DCI 4K (4096x2160) are `too_large` failures
    # Segment mode (moment retrieval): embed sliding windows of `segment_s` seconds every `segment_stride_s`
    # seconds (default: half a window) as rows with start/end times, instead of one row per video.
    segment_s: float | None = None
    segment_stride_s: float | None = None
    # Custom Ray resources each decode actor needs, e.g. {tara_decode: 1} with CPU worker nodes started with
    # `--resources='{"tara_decode": 64}'`: decode then never takes the CPUs a GPU node's model actor needs.
    resources: dict[str, float] | None = None
    # Segment mode: windows sampled (and held in memory) at a time per video; bounds a long video's memory.
    window_chunk: int = 64

    def __post_init__(self) -> None:
        _choice("decode.backend", self.backend, DECODE_BACKENDS)
        _positive("decode.window_chunk", self.window_chunk)
        _positive("decode.segment_s", self.segment_s, allow_none=True)
        for name, amount in (self.resources or {}).items():
            if not (isinstance(amount, (int, float)) and amount > 0):
                raise ConfigError(f"decode.resources.{name}", f"must be a number > 0, got {amount!r}")
        _positive("decode.segment_stride_s", self.segment_stride_s, allow_none=True)
        if self.segment_stride_s is not None and self.segment_s is None:
            raise ConfigError("decode.segment_stride_s", "a stride needs a window: set `decode.segment_s` too "
                              "(e.g. decode.segment_s=4 decode.segment_stride_s=2)")
        _positive("decode.timeout_s", self.timeout_s)
        _positive("decode.max_source_pixels", self.max_source_pixels, allow_none=True)
        _positive("decode.threads", self.threads)
        _positive("decode.batch_size", self.batch_size)
        _positive("decode.num_cpus", self.num_cpus)
        _positive("decode.concurrency", self.concurrency, allow_none=True)


    @property
    def segments(self) -> tuple[float, float] | None:
        """(window length, stride) in seconds, or None for one embedding per video."""
        if self.segment_s is None:
            return None
        return (self.segment_s, self.segment_stride_s if self.segment_stride_s is not None else self.segment_s / 2)

    @property
    def isolated(self) -> bool:
        return self.backend == "decord" if self.isolate is None else self.isolate


@dataclass(frozen=True)
class EmbedConfig:
    """Model actors: one GPU each when the cluster has GPUs (num_gpus=None means auto), CPU otherwise."""

    batch_size: int = 8  # rows per Ray batch, and at most this many per forward
    num_gpus: float | None = None
    num_cpus: float = 1.0
    concurrency: int | None = None
    torch_threads: int = 1
    # Visual tokens per forward (None: rows only). Mixed resolutions then give forwards of even cost.
    token_budget: int | None = None
    # Where the processor (resize, patchify, tokenise) runs. auto: on the decode actors when the model actors have
    # GPUs and run transformers (off the device's critical path); else in the model actors (embed/dataset.py says why).
    preprocess: str = "auto"
    max_tasks_in_flight: int = 2  # Ray batches queued per embed actor: the next is ready when one finishes

    def __post_init__(self) -> None:
        _positive("embed.batch_size", self.batch_size)
        _positive("embed.token_budget", self.token_budget, allow_none=True)
        _positive("embed.max_tasks_in_flight", self.max_tasks_in_flight)
        _choice("embed.preprocess", self.preprocess, ("auto", "decode_actors", "embed_actors"))
        _positive("embed.num_cpus", self.num_cpus)
        _positive("embed.concurrency", self.concurrency, allow_none=True)
        _positive("embed.torch_threads", self.torch_threads)
        if self.num_gpus is not None and self.num_gpus < 0:
            raise ConfigError("embed.num_gpus", f"must be >= 0 (or unset for auto), got {self.num_gpus}")


@dataclass(frozen=True)
class OutputConfig:
    """The LanceDB table: `<database uri>/<table name>`, local or s3://."""

    table: str | None = None
    commit_rows: int = 512  # rows per append: a crash loses at most what was not yet committed
    index: str = "auto"  # auto: build an ANN index once the table has `index_threshold` rows
    index_threshold: int = 50_000
    promote: str = "auto"  # auto: a version becomes live (what search uses) as soon as it is complete
    on_deleted: str = "keep"  # rows of objects gone from the source: keep (reported as stale) or prune
    vector_dtype: str = "float32"  # float16: half the bytes on disk and in memory (recall: docs/sizing.md)
    # Maintenance while and after writing (index/maintenance.py): compact past this many fragments, update the key
    # index past this many unindexed rows, and remove versions older than retention_days (never the live one).
    compact_fragments: int = 64
    reindex_rows: int = 100_000
    retention_days: float = 7.0

    def __post_init__(self) -> None:
        _choice("output.promote", self.promote, PROMOTE_MODES)
        _choice("output.on_deleted", self.on_deleted, DELETED_POLICIES)
        if not self.table:
            raise ConfigError("output.table", "set the output table: `--table ./index.lancedb/videos` "
                              "(database directory / table name; s3:// works too)")
        _positive("output.commit_rows", self.commit_rows)
        _choice("output.index", self.index, INDEX_MODES)
        _positive("output.index_threshold", self.index_threshold)
        _choice("output.vector_dtype", self.vector_dtype, ("float32", "float16"))
        _positive("output.compact_fragments", self.compact_fragments)
        _positive("output.reindex_rows", self.reindex_rows)
        if self.retention_days < 0:
            raise ConfigError("output.retention_days", f"must be >= 0, got {self.retention_days}")

    def maintenance(self):
        from datetime import timedelta

        from tara_batch.index.maintenance import MaintenancePolicy

        return MaintenancePolicy(self.compact_fragments, self.reindex_rows, timedelta(days=self.retention_days))


@dataclass(frozen=True)
class FailuresConfig:
    """Failure policy: retries of transient errors across runs, and when to give up on a run."""

    max_attempts: int = 3  # runs that may retry a transient failure (fetch, embed, decoder crash) of one object
    max_rate: float = 0.5  # stop the job when more than this fraction of processed videos failed ...
    min_videos: int = 20  # ... once at least this many were processed (a few bad files early must not stop it)

    def __post_init__(self) -> None:
        _positive("failures.max_attempts", self.max_attempts)
        _positive("failures.min_videos", self.min_videos)
        if not 0 < self.max_rate <= 1:
            raise ConfigError("failures.max_rate", f"must be in (0, 1] (1 = never stop), got {self.max_rate}")


@dataclass(frozen=True)
class RayConfig:
    """`address` (or RAY_ADDRESS) joins an existing cluster; otherwise a local one starts with `num_cpus`."""

    address: str | None = None
    num_cpus: int | None = None
    num_gpus: int | None = None
    # A local Ray's dashboard also serves Ray's state API, which Ray Train V2 polls (without it every training run
    # logs "Failed to query Ray Train Controller actor state" every few seconds); off by default to save memory.
    dashboard: bool = False

    def __post_init__(self) -> None:
        _positive("ray.num_cpus", self.num_cpus, allow_none=True)


@dataclass(frozen=True)
class EmbedJobConfig:
    input: InputConfig
    model: ModelConfig
    output: OutputConfig
    s3: S3Config = field(default_factory=S3Config)
    profile: ModelProfile = field(default_factory=ModelProfile)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    failures: FailuresConfig = field(default_factory=FailuresConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def __post_init__(self) -> None:
        if self.embed.token_budget is not None:
            from tara_batch.models.preprocess import max_visual_tokens

            largest = max_visual_tokens(self.profile)
            if self.embed.token_budget < largest:
                raise ConfigError("embed.token_budget", f"{self.embed.token_budget} is below the {largest} visual "
                                  f"tokens of one clip at profile.max_pixels={self.profile.max_pixels} x "
                                  f"{self.profile.num_frames} frames; raise it (e.g. embed.token_budget="
                                  f"{largest * 4}) or lower profile.max_pixels")
        if self.model.backend == "vllm" and self.embed.preprocess == "decode_actors":
            raise ConfigError("embed.preprocess", "vLLM preprocesses frames itself; use embed.preprocess=auto (or "
                              "embed_actors) with model.backend=vllm")
        if self.output.on_deleted == "prune" and self.input.limit is not None:
            raise ConfigError("output.on_deleted", "prune needs the full listing: unset `input.limit` or keep "
                              "`output.on_deleted=keep` (otherwise everything past the limit would be deleted)")


# ----------------------------------------------------------------------------------------------------------------
# loading


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """`a.b=1` strings -> nested dict; values parsed as YAML scalars/lists (`true`, `16`, `[a, b]`)."""
    tree: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(item, "overrides take the form `section.field=value`, e.g. `decode.backend=decord`")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else None
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(key, "conflicting overrides: a value and a section under the same name")
        node[parts[-1]] = value
    return tree


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise ConfigError("--config", f"file {p} does not exist")
    data = yaml.safe_load(p.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError("--config", f"{p} must hold a mapping of sections, got {type(data).__name__}")
    return data


def load_config(cls: type[T], yaml_path: str | Path | None = None, overrides: list[str] | None = None,
                flags: dict[str, Any] | None = None, ignore_yaml: tuple[str, ...] = ()) -> T:
    """Defaults <- YAML file <- CLI flags (e.g. --table) <- key=value overrides, then validated into `cls`.

    `ignore_yaml`: top-level sections of the YAML file that the caller fills in itself (the eval job reads an embed
    job YAML but supplies its own input and output)."""
    data: dict[str, Any] = load_yaml(yaml_path) if yaml_path else {}
    data = {k: v for k, v in data.items() if k not in ignore_yaml}
    data = merge(data, flags or {})
    data = merge(data, parse_overrides(overrides))
    return build(cls, data)


def build(cls: type[T], data: dict[str, Any], prefix: str = "") -> T:
    """Construct dataclass `cls` from nested plain data, checking names and types (errors name the dotted field)."""
    if not isinstance(data, dict):
        raise ConfigError(prefix.rstrip(".") or cls.__name__, f"expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}", f"unknown field; valid fields here: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{prefix}{name}")
    missing = [n for n, f in fields.items() if n not in kwargs and f.default is dataclasses.MISSING
               and f.default_factory is dataclasses.MISSING]
    for name in missing:  # nested sections without defaults get built from {} so their own checks explain the fix
        if dataclasses.is_dataclass(hints[name]):
            kwargs[name] = build(hints[name], {}, f"{prefix}{name}.")
        else:
            raise ConfigError(f"{prefix}{name}", "required")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        errors = []
        for a in args:
            try:
                return _coerce(a, value, name)
            except ConfigError as exc:
                errors.append(exc.message)
        raise ConfigError(name, "; ".join(errors))
    if dataclasses.is_dataclass(tp):
        return build(tp, value or {}, f"{name}.")
    if origin is tuple:
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(name, f"expected a list, got {value!r}")
        return tuple(_coerce(typing.get_args(tp)[0], v, name) for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(name, f"expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(name, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads `2e-5` (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise ConfigError(name, f"expected a number, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(name, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(name, f"expected a string, got {value!r}")
        return str(value)
    return value


def to_dict(cfg: Any, redact: bool = True) -> dict[str, Any]:
    """Plain-data view of a config for logs and the saved run record; secrets are masked."""
    data = dataclasses.asdict(cfg)
    if redact and "s3" in data:
        for key in ("access_key_id", "secret_access_key", "session_token"):
            if data["s3"].get(key):
                data["s3"][key] = "***"
    return data


def dumps(cfg: Any) -> str:
    return json.dumps(to_dict(cfg), indent=2, sort_keys=True, default=str)


def _positive(name: str, value: Any, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(name, f"must be > 0, got {value!r}")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(name, f"must be one of {list(choices)}, got {value!r}")
