"""Joining or starting Ray: one rule for every job (embed, re-embed, train)."""

from __future__ import annotations

import os

from tara_batch.config import RayConfig


def init_ray(cfg: RayConfig) -> None:
    """Join `cfg.address` (or RAY_ADDRESS) when given, else start a local Ray with `num_cpus` / `num_gpus`."""
    import ray

    if ray.is_initialized():
        return
    address = cfg.address or os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=cfg.num_cpus, num_gpus=cfg.num_gpus, include_dashboard=cfg.dashboard)
