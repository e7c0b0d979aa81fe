"""Negation and core NLI triplets (SimCSE's `nli_for_simcse.csv` layout).

negation: NLI triplets kept when the hard negative adds an explicit negator the anchor lacks (tara-method.md 4:
not, n't, no, none, never, nobody, nothing, nowhere, neither, nor). core: NLI triplets minus rows with empty or
duplicate members.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from tara_batch.io.s3 import S3Options
from tara_batch.train.triplets.common import TRIPLET_COLUMNS, Triplet, clean_text, member_problem, norm_text
from tara_batch.train.triplets.tables import read_triplets

NEGATORS = frozenset({"not", "no", "none", "never", "nobody", "nothing", "nowhere", "neither", "nor"})

_NEG_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?|n't")


def negators(text: str) -> set[str]:
    """Explicit negators in `text`. Every "n't" contraction (isn't, don't, "do n't") and "cannot" count as "not"."""
    found = set()
    for tok in _NEG_TOKEN.findall(text.lower().replace("\u2019", "'")):
        if tok in NEGATORS:
            found.add(tok)
        elif tok.endswith("n't") or tok == "cannot":
            found.add("not")
    return found


def is_negation_of(anchor: str, hard_neg: str) -> bool:
    """The hard negative uses an explicit negator (tara-method's list) that the anchor does not use."""
    return bool(negators(hard_neg) - negators(anchor))


def filter_negation(rows: Iterable[Triplet | Sequence[str]]) -> tuple[list[Triplet], dict[str, int]]:
    """NLI triplets whose hard negative negates the anchor (`is_negation_of`); rows with empty or duplicate members
    are dropped first, as for the core set."""
    stats = Counter({"input": 0, "empty_member": 0, "duplicate_members": 0, "no_new_negator": 0, "output": 0})
    out = []
    for row in rows:
        a, p, n = (clean_text(x) for x in row[:3])
        stats["input"] += 1
        bad = member_problem(a, p, n)
        if bad:
            stats[bad] += 1
        elif not is_negation_of(a, n):
            stats["no_new_negator"] += 1
        else:
            out.append(Triplet(a, p, n, "negation"))
    stats["output"] = len(out)
    return out, dict(stats)


def clean_core(rows: Iterable[Triplet | Sequence[str]]) -> tuple[list[Triplet], dict[str, int]]:
    """Core NLI triplets: rows with an empty member or two equal members (case/whitespace-insensitive) are dropped,
    as are repeats of an earlier row."""
    stats = Counter({"input": 0, "empty_member": 0, "duplicate_members": 0, "duplicate_row": 0, "output": 0})
    out, seen = [], set()
    for row in rows:
        a, p, n = (clean_text(x) for x in row[:3])
        stats["input"] += 1
        bad = member_problem(a, p, n)
        if bad:
            stats[bad] += 1
            continue
        key = (norm_text(a), norm_text(p), norm_text(n))
        if key in seen:
            stats["duplicate_row"] += 1
            continue
        seen.add(key)
        out.append(Triplet(a, p, n, "core"))
    stats["output"] = len(out)
    return out, dict(stats)


def read_nli(path: str, columns: Sequence[str] = TRIPLET_COLUMNS, *, s3: S3Options | None = None) -> list[Triplet]:
    """NLI triplets (SimCSE's nli_for_simcse.csv: sent0, sent1, hard_neg) as Triplets with source "core"."""
    return read_triplets(path, columns, source_column=None, default_source="core", s3=s3)
