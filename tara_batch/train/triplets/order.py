"""Temporal-order (T3-style) triplets from two consecutive events A, B: anchor "A, then B", positive a same-order
paraphrase ("After A, B."), hard negative the reversed order ("B, then A").
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from tara_batch.errors import ConfigError
from tara_batch.train.triplets.common import Triplet, clean_text, norm_text

# {A}/{B}: the event as a sentence start (capitalised); {a}/{b}: inside a sentence (first letter lowercased).
# Anchors and hard negatives: event order == surface order, so the hard negative is the same template with the
# events swapped (a minimal pair).
ORDER_TEMPLATES: tuple[str, ...] = (
    "{A}, then {b}.",
    "{A}, and then {b}.",
    "First {a}, then {b}.",
    "{A}, and after that {b}.",
)

# Positives: same event order, other wording; the last three also change the surface order, so word order alone
# cannot tell positive from negative.
ORDER_PARAPHRASES: tuple[str, ...] = (*ORDER_TEMPLATES, "After {a}, {b}.", "{A} before {b}.", "Before {b}, {a}.",
                                      "{B} after {a}.")

_LOWERABLE = re.compile(r"(?:[A-Z][a-z]+(?:'[a-z]+)?|A)")  # "The", "Someone's", "A"; not "I", "TV", "C", "McDonald"


def _event(text: str) -> str:
    return clean_text(text).rstrip(".!?;, ")


def _lower_first(event: str) -> str:
    """First letter lowercased when the first word is an ordinary capitalised word. Proper names ("John") are
    lowercased too: there is no name list; acronyms, "I" and single capitals (Ego4D's "C") are kept."""
    first = event.split(" ", 1)[0]
    return event[0].lower() + event[1:] if _LOWERABLE.fullmatch(first) else event


def _upper_first(event: str) -> str:
    return event[0].upper() + event[1:] if event else event


def _fill(template: str, a: str, b: str) -> str:
    return (template.replace("{A}", _upper_first(a)).replace("{a}", _lower_first(a))
            .replace("{B}", _upper_first(b)).replace("{b}", _lower_first(b)))


def make_order_triplets(
    pairs: Iterable[Sequence[str]],
    seed: int = 0,
    templates: Sequence[str] = ORDER_TEMPLATES,
    paraphrases: Sequence[str] = ORDER_PARAPHRASES,
) -> tuple[list[Triplet], dict[str, int]]:
    """Order triplets from event pairs (A happens before B): anchor = template(A, B), positive = another template
    with the same order, hard_neg = template(B, A). Templates are drawn with random.Random(seed), one anchor
    template and one different paraphrase template per pair. Pairs with an empty or identical event are dropped."""
    if len(set(paraphrases)) < 2:
        raise ConfigError("order.paraphrases", "need at least two distinct templates")
    rng = random.Random(seed)
    stats = Counter({"input": 0, "empty_member": 0, "same_events": 0, "duplicate_row": 0, "output": 0})
    out, seen = [], set()
    for pair in pairs:
        a, b = _event(pair[0]), _event(pair[1])
        stats["input"] += 1
        if not a or not b:
            stats["empty_member"] += 1
            continue
        if norm_text(a) == norm_text(b):
            stats["same_events"] += 1
            continue
        if (norm_text(a), norm_text(b)) in seen:
            stats["duplicate_row"] += 1
            continue
        seen.add((norm_text(a), norm_text(b)))
        t = rng.choice(list(templates))
        p = rng.choice([x for x in paraphrases if x != t])
        out.append(Triplet(_fill(t, a, b), _fill(p, a, b), _fill(t, b, a), "order"))
    stats["output"] = len(out)
    return out, dict(stats)


def consecutive_pairs(sentences: Sequence[str], groups: Sequence[Any] | None = None) -> list[tuple[str, str]]:
    """(s[i], s[i+1]) for consecutive sentences of the same group (e.g. the narrations of one video, in order)."""
    if groups is not None and len(groups) != len(sentences):
        raise ValueError(f"{len(sentences)} sentences but {len(groups)} group labels")
    out = []
    for i in range(len(sentences) - 1):
        if groups is None or groups[i] == groups[i + 1]:
            out.append((sentences[i], sentences[i + 1]))
    return out
