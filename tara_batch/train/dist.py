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


def sharded_validation(model, val, source_names: list[str], *, rank: int, world: int, batch_size: int,
                       score, metrics: tuple[str, str]) -> dict[str, dict[str, float]]:
    """Per-source means of two per-row scores over a validation set split across ranks.

    `val` has `len`, `take(indices)` and a `source` list; `score(sub)` runs one forward on the rows `sub` and returns
    two sequences (one value per row, e.g. correct / margin). Every rank runs the same number of forwards (FSDP needs
    all ranks in each forward): a rank whose shard ran out scores row 0 and discards it. Returns
    {source: {"n", metrics[0], metrics[1]}} plus "all", identical on every rank.
    """
    import math

    import numpy as np
    import torch

    if not len(val):
        return {}
    shards = np.array_split(np.arange(len(val)), world)
    mine = shards[rank]
    n_batches = math.ceil(max(len(s) for s in shards) / batch_size)
    col = {s: i for i, s in enumerate(source_names)}
    sums = torch.zeros(len(source_names), 3, dtype=torch.float64)  # [source, (n, metric 0 sum, metric 1 sum)]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for b in range(n_batches):
            rows = mine[b * batch_size:(b + 1) * batch_size]
            real = len(rows)
            sub = val.take(rows if real else np.array([0]))
            first, second = score(sub)
            for i in range(real):
                sums[col[sub.source[i]]] += torch.tensor([1.0, float(first[i]), float(second[i])],
                                                         dtype=torch.float64)
    model.train(was_training)
    all_reduce_sum(sums)

    def means(row) -> dict[str, float]:
        return {"n": int(row[0]), metrics[0]: float(row[1] / row[0]), metrics[1]: float(row[2] / row[0])}

    out = {s: means(sums[i]) for s, i in col.items() if sums[i, 0] > 0}
    out["all"] = means(sums.sum(0))
    return out
