"""A seeded mixture of triplet sources by counts or ratios (NLI-Nuance: core 8K, negation 1K, temporal 1K, composed
10K), never drawing a row twice unless asked to repeat a short source.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Mapping, Sequence

from tara_batch.errors import ConfigError
from tara_batch.train.triplets.common import NLI_NUANCE, Triplet

log = logging.getLogger(__name__)


def _counts_from(counts_or_ratios: Mapping[str, int | float], total: int | None,
                 available: Mapping[str, int]) -> dict[str, int]:
    values = dict(counts_or_ratios)
    if any(isinstance(v, bool) or not isinstance(v, int | float) or v < 0 for v in values.values()):
        raise ConfigError("mix.counts", f"counts/ratios must be non-negative numbers, got {values}")
    if all(isinstance(v, int) for v in values.values()):
        if total is not None and total != sum(values.values()):
            raise ConfigError("mix.total", f"counts add up to {sum(values.values())}, not total={total}; "
                                           "give counts, or ratios with a total")
        return {k: int(v) for k, v in values.items()}
    weight = float(sum(values.values()))
    if weight <= 0:
        raise ConfigError("mix.ratios", "at least one ratio must be positive")
    if total is None:
        # As many rows as possible at these proportions without running any source short.
        total = int(min(available[k] * weight / v for k, v in values.items() if v > 0))
    # Largest remainder: the counts add up to exactly `total`.
    exact = {k: total * v / weight for k, v in values.items()}
    counts = {k: int(x) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: (-(exact[k] - counts[k]), k))[: total - sum(counts.values())]:
        counts[k] += 1
    return counts


def mix(
    sources: Mapping[str, Sequence[Triplet]],
    counts_or_ratios: Mapping[str, int | float] = NLI_NUANCE,
    total: int | None = None,
    seed: int = 0,
    *,
    on_short: str = "error",
    dedupe: bool = True,
) -> list[Triplet]:
    """A seeded mixture of triplet sources, rows shuffled, each row's source set to its mixture name.

    counts_or_ratios: all ints = row counts per source (NLI_NUANCE by default); any float = ratios, scaled to
    `total` (largest remainder, so they add up exactly); ratios without a total give the largest mixture no source
    runs short of. Sources not named are left out.
    on_short: a source with fewer rows than asked: "error" (ConfigError naming it), "take-all", or "repeat" (whole
    copies, then a sample of the rest).
    dedupe: a triplet already drawn (same three texts) is not drawn again, within or across sources; sources are
    drawn smallest first so that e.g. negation rows taken from the same NLI file as core are not used up by core.
    Source n's draw uses random.Random(f"{seed}/{n}"), the final shuffle random.Random(seed).
    """
    if on_short not in ("error", "take-all", "repeat"):
        raise ConfigError("mix.on_short", f"must be error, take-all or repeat, got {on_short!r}")
    unknown = sorted(set(counts_or_ratios) - set(sources))
    if unknown:
        raise ConfigError("mix.counts", f"no source named {unknown}; sources are {sorted(sources)}")
    pools: dict[str, list[Triplet]] = {}
    for name in counts_or_ratios:
        pool, keys = [], set()
        for row in sources[name]:
            key = (row[0], row[1], row[2])
            if dedupe and key in keys:
                continue
            keys.add(key)
            pool.append(Triplet(row[0], row[1], row[2], name))
        pools[name] = pool
    counts = _counts_from(counts_or_ratios, total, {k: len(v) for k, v in pools.items()})
    taken: set[tuple[str, str, str]] = set()
    out: list[Triplet] = []
    for name in sorted(pools, key=lambda n: (len(pools[n]), n)):
        want = counts[name]
        pool = [r for r in pools[name] if not (dedupe and r[:3] in taken)]
        rng = random.Random(f"{seed}/{name}")
        if want <= len(pool):
            picked = rng.sample(pool, want)
        elif on_short == "error":
            raise ConfigError(f"mix.counts.{name}", f"wants {want} rows but source {name!r} has {len(pool)} "
                                                    "(after de-duplication); lower its count, or pass "
                                                    "on_short='take-all' / 'repeat' (--on-short)")
        elif on_short == "take-all":
            picked = rng.sample(pool, len(pool))
            log.warning("mix: source %s has %d rows, %d wanted: taking all", name, len(pool), want)
        else:
            copies, rest = divmod(want, len(pool)) if pool else (0, 0)
            picked = pool * copies + rng.sample(pool, rest)
            log.warning("mix: source %s has %d rows, %d wanted: repeating rows", name, len(pool), want)
        taken.update(r[:3] for r in picked)
        out.extend(picked)
    random.Random(seed).shuffle(out)
    log.info("mix: %s", dict(Counter(r.source for r in out)))
    return out
