"""torch.distributed helpers that also work in a single process (no process group: they are no-ops)."""

from __future__ import annotations


def process_group():
    """torch.distributed when a process group is initialised, else None."""
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def all_reduce_sum(t):
    dist = process_group()
    if dist is not None and dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t


def all_gather_floats(values: list[float], world: int) -> list[list[float]]:
    import torch

    t = torch.tensor(values, dtype=torch.float64)
    dist = process_group()
    if dist is None or world == 1:
        return [values]
    out = [torch.zeros_like(t) for _ in range(world)]
    dist.all_gather(out, t)
    return [o.tolist() for o in out]
