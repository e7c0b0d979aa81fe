"""The Ray Data graph of the embed job: pool sizes from the cluster, then listing -> CPU stage -> embed stage.

The only module that turns stage settings into `map_batches` arguments. Fixed-size actor pools (no autoscaling pool
that could starve the model stage), bounded in-flight work on both, decode capacity = the CPUs left after the model
actors' reservation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from tara_batch.config import EmbedJobConfig
from tara_batch.embed.stages import CpuStage, EmbedStage
from tara_batch.models.loader import EmbedderSpec

MAX_BLOCK_ROWS = 256  # rows per input block (upper bound): keeps the driver's block count small on huge archives


@dataclass(frozen=True)
class Plan:
    decode_actors: int
    embed_actors: int
    embed_gpus: float


def plan_resources(cfg: EmbedJobConfig, cluster: dict[str, float], n_videos: int) -> Plan:
    """Fixed-size pools from the cluster's resources (no autoscaling pool that could starve the model stage)."""
    gpus = float(cluster.get("GPU", 0))
    cpus = float(cluster.get("CPU", 1))
    embed_gpus = cfg.embed.num_gpus if cfg.embed.num_gpus is not None else (1.0 if gpus >= 1 else 0.0)
    if cfg.embed.concurrency:
        embed_actors = cfg.embed.concurrency
    elif embed_gpus > 0:
        embed_actors = max(1, int(gpus // embed_gpus))
    else:
        embed_actors = 1
    if cfg.decode.concurrency:
        decode_actors = cfg.decode.concurrency
    else:
        # The model actors' CPUs are reserved first (GPU actors still need a core to feed the device); the rest
        # decode (and preprocess), so decode capacity grows with the CPUs a node has per GPU.
        spare = cpus - cfg.embed.num_cpus * embed_actors
        decode_actors = max(1, int(spare // cfg.decode.num_cpus))
        for name, amount in (cfg.decode.resources or {}).items():
            # decode actors are pinned to nodes advertising this resource: only those nodes' capacity counts
            decode_actors = max(1, min(decode_actors, int(float(cluster.get(name, 0)) // amount)))
    blocks = max(1, math.ceil(n_videos / cfg.decode.batch_size))
    return Plan(min(decode_actors, blocks), min(embed_actors, blocks), embed_gpus)


def preprocess_on_decode_actors(cfg: EmbedJobConfig, plan: Plan) -> bool:
    """Where the processor runs (embed.preprocess). auto: on the decode actors when the model actors have GPUs and
    run transformers, so the device never waits for CPU preprocessing. Not with vLLM (it takes frames and
    preprocesses in its own front-end process), and not on CPU-only clusters: there the model actor is a CPU
    process too, and shipping float32 patches (about 9x the frames' bytes) cost more than it saved
    (benchmarks/pipeline.py, docs/LOG.md)."""
    if cfg.embed.preprocess != "auto":
        return cfg.embed.preprocess == "decode_actors"
    if cfg.model.backend == "vllm" or plan.embed_gpus == 0:
        return False
    if cfg.model.backend == "auto":
        from tara_batch.models.vllm_backend import vllm_installed

        return not vllm_installed()
    return True


@dataclass(frozen=True)
class StageSpec:
    """One actor pool's stage: its constructor arguments and the Ray resources of each actor. The job's
    `map_batches` and the pipeline benchmark's per-actor probes are built from the same spec."""

    kwargs: dict[str, Any]
    resources: dict[str, Any]


def stage_specs(cfg: EmbedJobConfig, plan: Plan, run_id: str = "",
                preprocess_on_cpu: bool | None = None) -> tuple[StageSpec, StageSpec]:
    """(CPU actors' CpuStage, model actors' EmbedStage) as the job runs them."""
    s3 = cfg.s3.options()
    decode = dict(backend=cfg.decode.backend, num_frames=cfg.profile.num_frames, max_pixels=cfg.profile.max_pixels,
                  threads=cfg.decode.threads, s3=s3, max_bytes=cfg.input.max_bytes, isolate=cfg.decode.isolated,
                  timeout_s=cfg.decode.timeout_s, max_source_pixels=cfg.decode.max_source_pixels,
                  segments=cfg.decode.segments, run_id=run_id, window_chunk=cfg.decode.window_chunk,
                  allow_stills=cfg.input.stills == "embed")
    on_cpu = preprocess_on_decode_actors(cfg, plan) if preprocess_on_cpu is None else preprocess_on_cpu
    preprocess = dict(model_uri=cfg.model.path, profile=cfg.profile, s3=s3, run_id=run_id) if on_cpu else None
    cpu = StageSpec(dict(decode=decode, preprocess=preprocess),
                    {"num_cpus": cfg.decode.num_cpus,
                     **({"resources": dict(cfg.decode.resources)} if cfg.decode.resources else {})})
    # Inputs preprocessed on the CPU actors are transformers inputs: the model actors must run transformers.
    spec = EmbedderSpec(model_uri=cfg.model.path, profile=cfg.profile,
                        backend="transformers" if on_cpu else cfg.model.backend, device=cfg.model.device,
                        threads=cfg.embed.torch_threads, s3=s3)
    embed = StageSpec(dict(embedder_factory=spec, token_budget=cfg.embed.token_budget, max_rows=cfg.embed.batch_size,
                           run_id=run_id), {"num_cpus": cfg.embed.num_cpus, "num_gpus": plan.embed_gpus})
    return cpu, embed


def build_dataset(cfg: EmbedJobConfig, todo: pa.Table, plan: Plan, run_id: str = "",
                  preprocess_on_cpu: bool | None = None):
    import ray

    ctx = ray.data.DataContext.get_current()
    # Our own bar counts videos end to end; Ray's per-operator bars (or, without a TTY, its periodic progress log)
    # would interleave with it.
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False

    # Enough blocks that every decode actor gets several (small archives), few enough that a million-video listing
    # is not a million objects in the driver's object store.
    rows = min(MAX_BLOCK_ROWS, max(cfg.decode.batch_size, math.ceil(todo.num_rows / (4 * plan.decode_actors))))
    blocks = [todo.slice(i, rows) for i in range(0, todo.num_rows, rows)]
    ds = ray.data.from_arrow(blocks)
    cpu, embed = stage_specs(cfg, plan, run_id, preprocess_on_cpu)
    # Bounded in-flight work on both pools (Ray Data's backpressure does the rest): memory stays flat, and each
    # embed actor has its next batch queued when one finishes, so it never waits while decode has capacity.
    ds = ds.map_batches(
        CpuStage,
        fn_constructor_kwargs=cpu.kwargs,
        batch_size=cfg.decode.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=plan.decode_actors, max_tasks_in_flight_per_actor=2),
        **cpu.resources,
    )
    ds = ds.map_batches(
        EmbedStage,
        fn_constructor_kwargs=embed.kwargs,
        batch_size=cfg.embed.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=plan.embed_actors,
                                           max_tasks_in_flight_per_actor=cfg.embed.max_tasks_in_flight),
        **embed.resources,
    )
    return ds
