"""What every triplet generator shares: the row type, the column names the trainer reads, text clean-up and the check
that a triplet's three members are usable (non-empty, pairwise different).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

log = logging.getLogger(__name__)

TRIPLET_COLUMNS = ("sent0", "sent1", "hard_neg")  # anchor, positive, hard negative: what the trainer reads

SOURCE_COLUMN = "source"

KINDS = ("temporal", "negation", "core", "composed", "order", "mix")

# tara-method.md section 4: the NLI-Nuance mixture (20K rows).
NLI_NUANCE: dict[str, int] = {"core": 8000, "negation": 1000, "temporal": 1000, "composed": 10000}


class Triplet(NamedTuple):
    anchor: str
    positive: str
    hard_neg: str
    source: str = ""


def clean_text(text: Any) -> str:
    """One line of text: whitespace (newlines included) collapsed, so CSV readers without multi-line fields work."""
    return " ".join(str(text).split()) if text is not None else ""


def norm_text(text: str) -> str:
    return clean_text(text).casefold()


def member_problem(a: str, p: str, n: str) -> str | None:
    """Why a triplet is unusable ("empty_member" / "duplicate_members"), or None."""
    keys = (norm_text(a), norm_text(p), norm_text(n))
    if not all(keys):
        return "empty_member"
    if len(set(keys)) < 3:
        return "duplicate_members"
    return None
