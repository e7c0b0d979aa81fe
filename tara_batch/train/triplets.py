"""Offline hard-negative generation for TARA's text triplets (`tara-batch make-triplets`).

What: rows (anchor, positive, hard negative, source) written as CSV / Parquet / JSONL with the columns the trainer
reads (sent0, sent1, hard_neg, source). One generator per kind of nuance in tara-method.md section 4:

* temporal  - Ego4D-style narrations; hard negative = the same sentence with its action flipped by the chiral
              lexicon (`lexicon.py`: "picks up" -> "puts down"); positive = another narration with the same verb
              phrase and object, else a light paraphrase (or a generative model's paraphrase).
* negation  - NLI triplets kept when the hard negative adds an explicit negator the anchor lacks.
* core      - NLI triplets minus rows with empty or duplicate members.
* composed  - WebVid-CoVR captions: anchor = source caption + edit, positive = target, negative = source.
* order     - two events A, B: "A, then B" vs a same-order paraphrase vs the reversed "B, then A".
* mix       - a seeded mixture by counts or ratios (NLI-Nuance: core 8K, negation 1K, temporal 1K, composed 10K).

Why offline and deterministic: training data is part of a model's identity, so the same inputs and seed give
byte-identical files, and every dropped input is counted in the run's stats instead of vanishing.

    python -m tara_batch.train.triplets --kind temporal --demo temporal.csv       # built-in Ego4D-style demo
    python -m tara_batch.train.triplets --kind negation --input nli_for_simcse.csv negation.csv
    python -m tara_batch.train.triplets --kind mix --from core=core.csv --from negation=negation.csv \\
        --from temporal=temporal.csv --from composed=composed.csv nli_nuance.csv --report stats.json
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import json
import logging
import os
import random
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

from tara_batch.errors import ConfigError, InputError
from tara_batch.storage import S3Options, is_s3, read_bytes, split_s3
from tara_batch.train.lexicon import DIRECTION_PAIRS, LEXICON, lexicon_size, opposite_sentence, rewrite

log = logging.getLogger(__name__)

__all__ = [
    "DIRECTION_PAIRS", "LEXICON", "NLI_NUANCE", "TRIPLET_COLUMNS", "Triplet", "clean_core", "clean_narration",
    "consecutive_pairs", "filter_negation", "is_negation_of", "light_paraphrase", "main", "make_composed_triplets",
    "make_order_triplets", "make_temporal_triplets", "mix", "opposite_sentence", "read_nli", "read_table",
    "read_triplets", "rewrite_with_llm", "write_table", "write_triplets",
]

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


def _clean(text: Any) -> str:
    """One line of text: whitespace (newlines included) collapsed, so CSV readers without multi-line fields work."""
    return " ".join(str(text).split()) if text is not None else ""


def _norm(text: str) -> str:
    return _clean(text).casefold()


def _members_ok(a: str, p: str, n: str) -> str | None:
    """Why a triplet is unusable ("empty_member" / "duplicate_members"), or None."""
    keys = (_norm(a), _norm(p), _norm(n))
    if not all(keys):
        return "empty_member"
    if len(set(keys)) < 3:
        return "duplicate_members"
    return None


# ====================================================================================================================
# 1. Temporal (chiral) triplets
# ====================================================================================================================

# Ego4D narration markers: "#C C picks up the knife" (C = the camera wearer), "#O man X opens the door" (another
# person), "#unsure" / "#summary" tags.
_EGO4D_C = re.compile(r"^#C\s+C\b\s*", re.IGNORECASE)
_EGO4D_NOTE = re.compile(r"#(?:unsure|summary)\b", re.IGNORECASE)
_EGO4D_TAG = re.compile(r"#[CO]\b", re.IGNORECASE)


def _strip_ego4d(text: str, subject: str) -> tuple[str, bool]:
    text = _clean(_EGO4D_NOTE.sub(" ", _clean(text)))
    m = _EGO4D_C.match(text)
    if m:
        text = (subject + " " if subject else "") + text[m.end():]
    return _clean(_EGO4D_TAG.sub(" ", text)), m is not None


def clean_narration(text: str, subject: str = "") -> str:
    """An Ego4D narration without its markers: "#C C picks up the knife" -> "picks up the knife".

    The "#C C" prefix (the camera wearer) is removed, or replaced by `subject` ("someone picks up the knife");
    "#O", "#unsure" and "#summary" tags are dropped wherever they are. Other text passes through, whitespace cleaned.
    """
    return _strip_ego4d(text, subject)[0]


# Subject swaps of the light paraphrase: first match at the start of the sentence, case-insensitive.
_SUBJECT_SWAPS: tuple[tuple[str, str], ...] = (
    ("a person", "someone"), ("the person", "someone"), ("someone", "a person"), ("somebody", "a person"),
    ("a man", "someone"), ("the man", "someone"), ("a woman", "someone"), ("the woman", "someone"),
    ("the camera wearer", "someone"), ("he", "someone"), ("she", "someone"),
)


def light_paraphrase(sentence: str, verb_initial: bool | None = None) -> str:
    """A deterministic paraphrase that keeps verb and object: the subject is reworded or added.

    "a person opens the door" -> "someone opens the door"; a subject-less narration "picks up the knife" (Ego4D after
    `clean_narration`) -> "someone picks up the knife"; "C opens ..." (Ego4D's camera wearer) -> "someone opens ...".
    Returns the sentence unchanged when no rule applies. verb_initial: whether it starts with its verb (None = ask
    the lexicon).
    """
    s = _clean(sentence)
    if not s:
        return s
    if s.startswith("C "):
        return "Someone " + s[2:]
    low = s.lower()
    for old, new in _SUBJECT_SWAPS:
        if low.startswith(old + " "):
            new = new[0].upper() + new[1:] if s[0].isupper() else new
            return new + s[len(old):]
    if verb_initial is None:
        r = rewrite(s)
        verb_initial = r is not None and r.kind == "verb" and r.head_index == 0
    if verb_initial:
        return "Someone " + s[0].lower() + s[1:] if s[0].isupper() else "someone " + s
    return s


Paraphraser = Callable[[Sequence[str]], Sequence[str]]


def make_temporal_triplets(
    sentences: Iterable[str],
    paraphrase: Paraphraser | None = None,
    *,
    seed: int = 0,
    strip_ego4d: bool = True,
    dedupe: bool = True,
) -> tuple[list[Triplet], dict[str, int]]:
    """Temporal triplets: anchor = sentence, hard_neg = `opposite_sentence(anchor)`, positive = see below.

    Positive, in order of preference:
    1. `paraphrase(anchors)` if given: a batch callable returning one string per anchor (e.g.
       `partial(rewrite_with_llm, model_dir=...)`); an empty output, or one equal to the anchor or the hard negative,
       falls through to 2.
    2. Another input sentence with the same verb phrase and object head noun ("picks up the knife" / "picked up a
       knife from the sink"): tara-method's "positive shares verb+object". Chosen with random.Random(seed).
    3. `light_paraphrase(anchor)`; if that changes nothing, the anchor itself (counted as positive_is_anchor).

    Sentences without a chiral phrase are skipped and counted (no_chiral); with dedupe, repeated sentences (Ego4D
    repeats "picks up the knife" thousands of times, and duplicates are false negatives in an InfoNCE batch) are
    kept once. strip_ego4d: remove "#C C" / "#O" / "#unsure" markers first (`clean_narration`).
    """
    stats = Counter({"input": 0, "empty": 0, "duplicate": 0, "no_chiral": 0, "rewritten_verb": 0,
                     "rewritten_direction": 0, "positive_paraphrase": 0, "positive_corpus": 0,
                     "positive_light": 0, "positive_is_anchor": 0})
    anchors: list[str] = []
    rewrites = []
    subjectless: list[bool] = []  # Ego4D "#C C" narration: starts with its verb once the prefix is gone
    seen: set[str] = set()
    for raw in sentences:
        stats["input"] += 1
        s, had_c = _strip_ego4d(raw, "") if strip_ego4d else (_clean(raw), False)
        if not s:
            stats["empty"] += 1
            continue
        if dedupe:
            if _norm(s) in seen:
                stats["duplicate"] += 1
                continue
            seen.add(_norm(s))
        r = rewrite(s)
        if r is None:
            stats["no_chiral"] += 1
            continue
        stats[f"rewritten_{r.kind}"] += 1
        anchors.append(s)
        rewrites.append(r)
        subjectless.append(had_c)

    # Candidate positives from the corpus: same verb phrase (any tense) and same object head noun.
    by_key: dict[tuple[str, str], list[int]] = {}
    position: dict[int, int] = {}  # anchor index -> its position in its by_key list
    for i, r in enumerate(rewrites):
        if r.kind == "verb":
            group = by_key.setdefault((r.phrase, r.object_key), [])
            position[i] = len(group)
            group.append(i)
    generated: list[str] | None = None
    if paraphrase is not None and anchors:
        generated = [_clean(x) for x in paraphrase(list(anchors))]
        if len(generated) != len(anchors):
            raise ValueError(f"paraphrase returned {len(generated)} outputs for {len(anchors)} sentences")

    rng = random.Random(seed)
    rows: list[Triplet] = []
    for i, (anchor, r) in enumerate(zip(anchors, rewrites, strict=True)):
        negative = _clean(r.text)
        forbidden = {_norm(anchor), _norm(negative)}
        positive = ""
        if generated is not None and generated[i] and _norm(generated[i]) not in forbidden:
            positive, how = generated[i], "paraphrase"
        if not positive and r.kind == "verb":
            group = by_key[(r.phrase, r.object_key)]
            if len(group) > 1:  # a uniform draw among the others, without building the list (groups can be huge)
                k = rng.randrange(len(group) - 1)
                positive, how = anchors[group[k if k < position[i] else k + 1]], "corpus"
        if not positive:
            verb_initial = subjectless[i] or (r.kind == "verb" and r.head_index == 0)
            positive, how = light_paraphrase(anchor, verb_initial), "light"
            if _norm(positive) == _norm(anchor):
                how = "is_anchor"
        stats[f"positive_{how}"] += 1
        rows.append(Triplet(anchor, positive, negative, "temporal"))
    stats["output"] = len(rows)
    return rows, dict(stats)


# ====================================================================================================================
# 2. Negation
# ====================================================================================================================

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
        a, p, n = (_clean(x) for x in row[:3])
        stats["input"] += 1
        bad = _members_ok(a, p, n)
        if bad:
            stats[bad] += 1
        elif not is_negation_of(a, n):
            stats["no_new_negator"] += 1
        else:
            out.append(Triplet(a, p, n, "negation"))
    stats["output"] = len(out)
    return out, dict(stats)


# ====================================================================================================================
# 3. Core NLI
# ====================================================================================================================


def clean_core(rows: Iterable[Triplet | Sequence[str]]) -> tuple[list[Triplet], dict[str, int]]:
    """Core NLI triplets: rows with an empty member or two equal members (case/whitespace-insensitive) are dropped,
    as are repeats of an earlier row."""
    stats = Counter({"input": 0, "empty_member": 0, "duplicate_members": 0, "duplicate_row": 0, "output": 0})
    out, seen = [], set()
    for row in rows:
        a, p, n = (_clean(x) for x in row[:3])
        stats["input"] += 1
        bad = _members_ok(a, p, n)
        if bad:
            stats[bad] += 1
            continue
        key = (_norm(a), _norm(p), _norm(n))
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


# ====================================================================================================================
# 4. Composed (WebVid-CoVR)
# ====================================================================================================================

# Source caption first, then the edit as its own sentence: "A dog runs on the beach. Make it a cat." Short on
# purpose: training truncates each sentence to 32 tokens, and the edit comes last.
DEFAULT_COMPOSED_TEMPLATE = "{source} {edit}"


def _as_sentence(text: str, capitalise: bool) -> str:
    s = _clean(text)
    if s and capitalise and s[0].islower():
        s = s[0].upper() + s[1:]
    if s and s[-1] not in ".!?":
        s += "."
    return s


def join_caption_edit(source: str, edit: str, template: str = DEFAULT_COMPOSED_TEMPLATE) -> str:
    """Anchor text of a composed triplet: source caption and edit as two sentences, joined by `template`."""
    if "{source}" not in template or "{edit}" not in template:
        raise ConfigError("composed.template", f"must contain {{source}} and {{edit}}, got {template!r}")
    return _clean(template.replace("{source}", _as_sentence(source, capitalise=False))
                  .replace("{edit}", _as_sentence(edit, capitalise=True)))


def make_composed_triplets(
    rows: Iterable[Sequence[str] | Mapping[str, str]],
    template: str = DEFAULT_COMPOSED_TEMPLATE,
) -> tuple[list[Triplet], dict[str, int]]:
    """Composed triplets from (source_caption, edit, target_caption): anchor = source + edit, positive = target,
    hard_neg = source (the unedited caption). Rows with an empty field, target == source, or repeated are dropped
    and counted. Mappings are read by the keys "source", "edit", "target"."""
    stats = Counter({"input": 0, "empty_member": 0, "duplicate_members": 0, "duplicate_row": 0, "output": 0})
    out, seen = [], set()
    for row in rows:
        src, edit, tgt = ((row["source"], row["edit"], row["target"]) if isinstance(row, Mapping) else row[:3])
        src, edit, tgt = _clean(src), _clean(edit), _clean(tgt)
        stats["input"] += 1
        if not (src and edit and tgt):
            stats["empty_member"] += 1
            continue
        anchor = join_caption_edit(src, edit, template)
        bad = _members_ok(anchor, tgt, src)
        if bad:
            stats[bad] += 1
            continue
        key = (_norm(anchor), _norm(tgt))
        if key in seen:
            stats["duplicate_row"] += 1
            continue
        seen.add(key)
        out.append(Triplet(anchor, tgt, src, "composed"))
    stats["output"] = len(out)
    return out, dict(stats)


# ====================================================================================================================
# 5. Temporal order (T3-style)
# ====================================================================================================================

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
    return _clean(text).rstrip(".!?;, ")


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
        if _norm(a) == _norm(b):
            stats["same_events"] += 1
            continue
        if (_norm(a), _norm(b)) in seen:
            stats["duplicate_row"] += 1
            continue
        seen.add((_norm(a), _norm(b)))
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


# ====================================================================================================================
# 6. Mixture
# ====================================================================================================================


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


# ====================================================================================================================
# 7. Reading and writing tables (CSV, TSV, JSONL, Parquet, TXT; optionally .gz; local or s3://)
# ====================================================================================================================

_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
            ".parquet": "parquet", ".pq": "parquet", ".txt": "txt"}


def _format(path: str) -> tuple[str, bool]:
    name = PurePosixPath(path.rstrip("/")).name.lower()
    gz = name.endswith(".gz")
    if gz:
        name = name[:-3]
    fmt = _FORMATS.get(PurePosixPath(name).suffix)
    if fmt is None or (gz and fmt == "parquet"):
        raise ConfigError("make-triplets.path", f"cannot tell the format of {path}: use .csv, .tsv, .jsonl, "
                                                ".parquet or .txt (text formats may end in .gz)")
    return fmt, gz


def read_table(path: str, *, s3: S3Options | None = None) -> list[dict[str, Any]]:
    """All rows of a table file as dicts, in file order. CSV/TSV values are strings; a .txt file is one row per
    non-blank line, in column "text"."""
    fmt, gz = _format(path)
    try:
        data = read_bytes(path, s3=s3) if is_s3(path) else Path(path).read_bytes()
    except FileNotFoundError as e:
        raise InputError(f"{path} does not exist") from e
    if gz:
        data = gzip.decompress(data)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(data)).to_pylist()
    text = data.decode("utf-8-sig")
    if fmt in ("csv", "tsv"):
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter="," if fmt == "csv" else "\t")
        return [{k: ("" if v is None else v) for k, v in row.items() if k is not None} for row in reader]
    if fmt == "txt":
        return [{"text": line.strip()} for line in text.splitlines() if line.strip()]
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{n}: not a JSON object per line ({e})") from e
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{n}: expected a JSON object, got {type(obj).__name__}")
        rows.append(obj)
    return rows


def write_table(rows: Iterable[Mapping[str, Any]], path: str, *, columns: Sequence[str] | None = None,
                s3: S3Options | None = None) -> int:
    """Write rows (dicts) to `path` by its extension; columns: their order (default: keys in first-seen order).
    Local files are written atomically (temp file + rename); s3:// objects with one PUT. Returns the row count."""
    fmt, gz = _format(path)
    rows = [dict(r) for r in rows]
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    columns = list(columns)
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays = {c: pa.array([r.get(c) for r in rows], type=pa.string() if all(
            isinstance(r.get(c), str | None) for r in rows) else None) for c in columns}
        buf = io.BytesIO()
        pq.write_table(pa.table(arrays), buf)
        data = buf.getvalue()
    else:
        out = io.StringIO(newline="")
        if fmt in ("csv", "tsv"):
            writer = csv.DictWriter(out, fieldnames=columns, delimiter="," if fmt == "csv" else "\t",
                                    lineterminator="\n", extrasaction="ignore")
            writer.writeheader()
            writer.writerows({c: ("" if r.get(c) is None else r.get(c)) for c in columns} for r in rows)
        elif fmt == "txt":
            if len(columns) != 1:
                raise ConfigError("make-triplets.output", f"a .txt file holds one column, not {columns}")
            out.writelines(_clean(r.get(columns[0], "")) + "\n" for r in rows)
        else:
            out.writelines(json.dumps({c: r.get(c) for c in columns}, ensure_ascii=False) + "\n" for r in rows)
        data = out.getvalue().encode("utf-8")
    if gz:
        data = gzip.compress(data, mtime=0)  # mtime=0: same rows -> same bytes
    _write_bytes(path, data, s3)
    return len(rows)


def _write_bytes(path: str, data: bytes, s3: S3Options | None) -> None:
    if is_s3(path):
        bucket, key = split_s3(path)
        (s3 or S3Options()).boto3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, target)


def read_triplets(
    path: str,
    columns: Sequence[str] = TRIPLET_COLUMNS,
    *,
    source_column: str | None = SOURCE_COLUMN,
    default_source: str = "",
    s3: S3Options | None = None,
) -> list[Triplet]:
    """Triplets from a table with the given (anchor, positive, hard negative) columns; `source` from
    source_column when the file has it, else default_source."""
    rows = read_table(path, s3=s3)
    if rows:
        missing = [c for c in columns if c not in rows[0]]
        if missing:
            raise InputError(f"{path} has no column(s) {missing} (columns: {list(rows[0])}); "
                             "name the triplet columns with --in-columns")
    a, p, n = columns
    return [Triplet(_clean(r.get(a)), _clean(r.get(p)), _clean(r.get(n)),
                    _clean(r.get(source_column)) if source_column and r.get(source_column) else default_source)
            for r in rows]


def write_triplets(
    rows: Iterable[Triplet],
    path: str,
    columns: Sequence[str] = TRIPLET_COLUMNS,
    *,
    source_column: str | None = SOURCE_COLUMN,
    s3: S3Options | None = None,
) -> int:
    """Write triplets with the trainer's columns (sent0, sent1, hard_neg, source by default). Each text is written
    on one line (whitespace collapsed): the trainer's CSV reader (pyarrow) does not accept line breaks in fields."""
    if len(columns) != 3:
        raise ConfigError("make-triplets.columns", f"give three column names, got {list(columns)}")
    names = [*columns, source_column] if source_column else list(columns)
    return write_table((dict(zip(names, map(_clean, r), strict=False)) for r in rows), path, columns=names, s3=s3)


def read_sentences(path: str, column: str | None = None, *, group_column: str | None = None,
                   s3: S3Options | None = None) -> tuple[list[str], list[Any] | None]:
    """One text column of a table (and optionally a group column): `column` or the first of text, narration,
    narration_text, sentence, caption, txt present."""
    rows = read_table(path, s3=s3)
    if not rows:
        return [], [] if group_column else None
    names = list(rows[0])
    if column is None:
        column = next((c for c in ("text", "narration", "narration_text", "sentence", "caption", "txt")
                       if c in names), None)
        if column is None:
            raise InputError(f"{path}: which column holds the sentences? columns: {names}; pass --text-column")
    for c in (column, group_column):
        if c is not None and c not in names:
            raise InputError(f"{path} has no column {c!r} (columns: {names})")
    texts = [_clean(r.get(column)) for r in rows]
    return texts, ([r.get(group_column) for r in rows] if group_column else None)


# ====================================================================================================================
# 8. Optional: rewriting through a generative model served by vLLM
# ====================================================================================================================

DEFAULT_PARAPHRASE_PROMPT = (
    "Paraphrase the following sentence. Keep the same action, the same objects and the same tense; change only the "
    "wording. Answer with the paraphrase only.\nSentence: {sentence}"
)


def _first_line(text: str) -> str:
    for line in text.strip().splitlines():
        line = line.strip().strip('"').strip()
        if line:
            return line
    return ""


def rewrite_with_llm(
    sentences: Sequence[str],
    model_dir: str | Path,
    prompt_template: str = DEFAULT_PARAPHRASE_PROMPT,
    *,
    max_tokens: int = 64,
    chat: bool = True,
    seed: int = 0,
    **llm_kwargs: Any,
) -> list[str]:
    """One rewrite per sentence from a local generative checkpoint run by vLLM, greedy (temperature 0).

    prompt_template: text with a "{sentence}" placeholder; chat: wrap it in the tokenizer's chat template (when the
    checkpoint has one). Outputs are the first non-empty line of each generation, stripped of quotes ("" if none).
    llm_kwargs go to `vllm.LLM` (e.g. tensor_parallel_size, max_model_len). On CPU builds the KV cache defaults to
    1 GiB unless VLLM_CPU_KVCACHE_SPACE or kv_cache_memory_bytes is set. The engine is shut down before returning.
    vLLM starts worker processes: scripts calling this need an `if __name__ == "__main__":` guard.
    """
    if "{sentence}" not in prompt_template:
        raise ConfigError("paraphrase.prompt", f"must contain {{sentence}}, got {prompt_template!r}")
    sentences = list(sentences)
    if not sentences:
        return []
    from tara_batch.models.vllm_backend import DEFAULT_CPU_KV_CACHE_BYTES, vllm_device_type

    platform = vllm_device_type()
    if platform is None:
        raise ConfigError("paraphrase.model", "vLLM is not installed: `pip install -e '.[vllm]'` (GPU) or "
                                              "scripts/install_vllm_cpu.sh (CPU)")
    on_cpu = platform == "cpu"
    kw = dict(llm_kwargs)
    if on_cpu and "kv_cache_memory_bytes" not in kw and not os.environ.get("VLLM_CPU_KVCACHE_SPACE"):
        kw["kv_cache_memory_bytes"] = DEFAULT_CPU_KV_CACHE_BYTES
    kw.setdefault("dtype", "float32" if on_cpu else "auto")
    kw.setdefault("enforce_eager", on_cpu)
    kw.setdefault("max_model_len", 1024)
    kw.setdefault("seed", seed)

    from vllm import LLM, SamplingParams

    llm = LLM(model=str(model_dir), runner="generate", **kw)
    try:
        prompts = [prompt_template.replace("{sentence}", _clean(s)) for s in sentences]
        tok = llm.get_tokenizer()
        if chat and getattr(tok, "chat_template", None):
            prompts = [tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                               add_generation_prompt=True) for p in prompts]
        outputs = llm.generate(prompts, SamplingParams(temperature=0.0, max_tokens=max_tokens, seed=seed),
                               use_tqdm=False)
        return [_first_line(o.outputs[0].text) for o in outputs]
    finally:
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None:
            core.shutdown()


# ====================================================================================================================
# 9. Built-in demo data (offline quickstart and tests)
# ====================================================================================================================

# (video, narration) in Ego4D's style and order: "#C C" = the camera wearer, "#O" = someone else.
DEMO_NARRATIONS: tuple[tuple[str, str], ...] = (
    ("kitchen", "#C C opens the fridge"),
    ("kitchen", "#C C picks up a bottle of milk"),
    ("kitchen", "#C C closes the fridge"),
    ("kitchen", "#C C pours milk into the cup"),
    ("kitchen", "#C C puts the bottle on the counter"),
    ("kitchen", "#C C picks up the knife"),
    ("kitchen", "#C C cuts the bread with the knife"),
    ("kitchen", "#C C puts down the knife"),
    ("kitchen", "#C C opens the drawer"),
    ("kitchen", "#C C takes out a spoon from the drawer"),
    ("kitchen", "#C C closes the drawer"),
    ("kitchen", "#C C picks up the knife"),
    ("kitchen", "#C C picks up a knife from the sink"),
    ("workshop", "#C C picks up the screwdriver"),
    ("workshop", "#C C unscrews the screw from the panel"),
    ("workshop", "#C C removes the panel"),
    ("workshop", "#C C puts the panel on the table"),
    ("workshop", "#C C plugs in the drill"),
    ("workshop", "#C C turns on the drill"),
    ("workshop", "#C C drills a hole in the wood"),
    ("workshop", "#C C turns off the drill"),
    ("workshop", "#C C unplugs the drill"),
    ("workshop", "#C C puts the drill in the toolbox"),
    ("workshop", "#C C closes the toolbox"),
    ("bedroom", "#C C folds the shirt"),
    ("bedroom", "#C C places the shirt in the basket"),
    ("bedroom", "#C C unfolds the towel"),
    ("bedroom", "#C C hangs up the towel"),
    ("bedroom", "#C C zips the bag"),
    ("bedroom", "#C C ties the shoelaces"),
    ("bedroom", "#C C puts on the jacket"),
    ("bedroom", "#C C buttons the jacket"),
    ("bedroom", "#C C looks around the room"),
    ("bedroom", "#O A man X enters the room"),
    ("street", "#C C walks towards the car"),
    ("street", "#C C unlocks the car"),
    ("street", "#C C opens the car door"),
    ("street", "#C C gets in the car"),
    ("street", "#C C climbs up the stairs"),
    ("street", "#C C lifts the box"),
    ("street", "#C C lowers the box onto the floor"),
    ("street", "#C C picks the cup up"),
    ("street", "#unsure #C C fills the kettle with water"),
    ("street", "#C C empties the bucket"),
    ("street", "#C C scrolls the phone"),
)

# (source caption, edit, target caption) in WebVid-CoVR's style.
DEMO_COVR: tuple[tuple[str, str, str], ...] = (
    ("A dog runs on the beach", "make it a cat", "A cat runs on the beach"),
    ("Aerial view of a city at night", "change it to daytime", "Aerial view of a city during the day"),
    ("A woman opens a red umbrella", "make the umbrella blue", "A woman opens a blue umbrella"),
    ("Two children play football in the park", "make it one child", "A child plays football in the park"),
    ("A car drives along a snowy road", "remove the snow", "A car drives along a dry road"),
    ("Waves crash on the rocks at sunset", "make it sunrise", "Waves crash on the rocks at sunrise"),
    ("A man slices bread in the kitchen", "have him slice tomatoes instead", "A man slices tomatoes in the kitchen"),
    ("Close-up of coffee being poured into a cup", "pour tea instead", "Close-up of tea being poured into a cup"),
    ("A bird sits on a branch", "make the bird fly away", "A bird flies away from a branch"),
    ("A boy rides a bicycle", "", "A boy rides a bicycle"),
)

# (sent0, sent1, hard_neg) in SNLI / SimCSE's style.
DEMO_NLI: tuple[tuple[str, str, str], ...] = (
    ("A man is playing a guitar on stage.", "A man is performing music.", "A man is not playing any instrument."),
    ("Two dogs run through a field.", "Animals are outdoors.", "The dogs are sleeping inside."),
    ("A woman is reading a book in the park.", "A woman is reading outside.", "Nobody is reading."),
    ("Children are smiling at the camera.", "Kids are happy.", "The children never smile."),
    ("A boy jumps into a pool.", "A boy is swimming.", "The boy isn't wet."),
    ("A cyclist rides down a hill.", "A person is on a bike.", "A cyclist rides up a hill."),
    ("A chef is cooking pasta.", "Someone is making food.", "There is no food being made."),
    ("The girl doesn't like the rain.", "The girl dislikes rain.", "The girl is not outside."),
    ("A man sleeps on a couch.", "A man sleeps on a couch.", "A man is running."),
    ("A crowd watches fireworks.", "People look at the sky.", "Nothing is happening in the sky."),
    ("A dog catches a frisbee.", "A dog plays.", "A cat catches a frisbee."),
    ("A woman is not smiling.", "A woman looks serious.", "A woman is not serious."),
)


# ====================================================================================================================
# 10. Command line: `tara-batch make-triplets ...` (cli.py calls add_arguments + run)
# ====================================================================================================================


def _key_values(items: Sequence[str] | None, flag: str, cast: Callable[[str], Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(flag, f"expected NAME=VALUE, got {item!r}")
        try:
            out[name] = cast(value)
        except ValueError as e:
            raise ConfigError(flag, f"{item!r}: {e}") from e
    return out


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of `make-triplets` (shared by `tara-batch make-triplets` and `python -m ...triplets`)."""
    p.add_argument("output", help="output file: .csv, .parquet, .jsonl (.tsv, .gz), local or s3://")
    p.add_argument("--kind", choices=KINDS, required=True, help="which triplets to make")
    p.add_argument("--input", help="input file (csv/tsv/jsonl/parquet/txt, local or s3://)")
    p.add_argument("--demo", action="store_true", help="use the built-in demo data instead of --input")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--report", help="also write the run's stats as JSON to this path")
    p.add_argument("--columns", nargs=3, default=list(TRIPLET_COLUMNS), metavar=("ANCHOR", "POSITIVE", "NEGATIVE"),
                   help="output column names (default: sent0 sent1 hard_neg)")
    p.add_argument("--no-source-column", action="store_true", help="do not write the `source` column")
    g = p.add_argument_group("temporal / order (sentences)")
    g.add_argument("--text-column", help="column with the sentences (default: text, narration, sentence, caption)")
    g.add_argument("--keep-ego4d-markers", action="store_true", help="do not strip '#C C' / '#O' / '#unsure'")
    g.add_argument("--ego4d-subject", help="replace '#C C' by this subject (default: nothing for temporal, "
                                           "'the person' for order)")
    g.add_argument("--keep-duplicates", action="store_true", help="temporal: keep repeated sentences")
    g.add_argument("--paraphrase-model", help="temporal: positives paraphrased by this checkpoint via vLLM")
    g.add_argument("--paraphrase-prompt", default=DEFAULT_PARAPHRASE_PROMPT, help="prompt with {sentence}")
    g.add_argument("--first-column", help="order: column with event A (with --second-column)")
    g.add_argument("--second-column", help="order: column with event B, which happens after A")
    g.add_argument("--group-column", help="order without --first-column: pair consecutive rows within a group")
    g = p.add_argument_group("composed")
    g.add_argument("--source-column", default="txt1", help="source caption column (WebVid-CoVR: txt1)")
    g.add_argument("--edit-column", default="edit", help="edit instruction column (WebVid-CoVR: edit)")
    g.add_argument("--target-column", default="txt2", help="target caption column (WebVid-CoVR: txt2)")
    g.add_argument("--template", default=DEFAULT_COMPOSED_TEMPLATE, help="anchor text from {source} and {edit}")
    g = p.add_argument_group("negation / core")
    g.add_argument("--in-columns", nargs=3, default=list(TRIPLET_COLUMNS), metavar=("ANCHOR", "POSITIVE", "NEGATIVE"),
                   help="input triplet columns (default: sent0 sent1 hard_neg)")
    g = p.add_argument_group("mix")
    g.add_argument("--from", dest="sources", action="append", metavar="NAME=PATH",
                   help="a triplet file and its mixture name (repeat)")
    g.add_argument("--counts", nargs="+", metavar="NAME=N", help="rows per source (default: NLI-Nuance 8K/1K/1K/10K)")
    g.add_argument("--ratios", nargs="+", metavar="NAME=R", help="proportions instead of counts (with --total)")
    g.add_argument("--total", type=int, help="mixture size for --ratios (default: as large as the sources allow)")
    g.add_argument("--on-short", choices=["error", "take-all", "repeat"], default="error",
                   help="a source with fewer rows than asked")
    return p


def _need_input(args: argparse.Namespace) -> str:
    if not args.input:
        raise ConfigError("make-triplets.input", f"--kind {args.kind} needs --input PATH (or --demo)")
    return args.input


def _run_kind(args: argparse.Namespace) -> tuple[list[Triplet], dict[str, Any]]:
    kind = args.kind
    if kind == "temporal":
        if args.demo:
            texts = [t for _, t in DEMO_NARRATIONS]
        else:
            texts, _ = read_sentences(_need_input(args), args.text_column)
        if args.ego4d_subject and not args.keep_ego4d_markers:
            texts = [clean_narration(t, args.ego4d_subject) for t in texts]
        paraphrase = None
        if args.paraphrase_model:
            paraphrase = partial(rewrite_with_llm, model_dir=args.paraphrase_model,
                                 prompt_template=args.paraphrase_prompt, seed=args.seed)
        rows, stats = make_temporal_triplets(texts, paraphrase, seed=args.seed,
                                             strip_ego4d=not args.keep_ego4d_markers,
                                             dedupe=not args.keep_duplicates)
        return rows, {**stats, "lexicon": lexicon_size()}
    if kind == "order":
        # "#C C opens the fridge" -> "The person opens the fridge": templates like "After {a}, {b}." need subjects.
        subject = args.ego4d_subject if args.ego4d_subject is not None else "the person"

        def clean(text: Any) -> str:
            return _clean(text) if args.keep_ego4d_markers else clean_narration(_clean(text), subject)

        if args.demo:
            texts, groups = [clean(t) for _, t in DEMO_NARRATIONS], [g for g, _ in DEMO_NARRATIONS]
            pairs = consecutive_pairs(texts, groups)
        elif args.first_column or args.second_column:
            if not (args.first_column and args.second_column):
                raise ConfigError("make-triplets.first_column", "give both --first-column and --second-column")
            rows_in = read_table(_need_input(args))
            pairs = [(clean(r.get(args.first_column)), clean(r.get(args.second_column))) for r in rows_in]
        else:
            texts, groups = read_sentences(_need_input(args), args.text_column, group_column=args.group_column)
            pairs = consecutive_pairs([clean(t) for t in texts], groups)
        return make_order_triplets(pairs, seed=args.seed)
    if kind == "composed":
        if args.demo:
            triples: list[tuple[str, str, str]] = list(DEMO_COVR)
        else:
            path = _need_input(args)
            rows_in = read_table(path)
            cols = (args.source_column, args.edit_column, args.target_column)
            if rows_in and any(c not in rows_in[0] for c in cols):
                raise InputError(f"{path} lacks one of the columns {list(cols)} (columns: {list(rows_in[0])}); "
                                 "set --source-column / --edit-column / --target-column")
            triples = [(r.get(cols[0]), r.get(cols[1]), r.get(cols[2])) for r in rows_in]
        return make_composed_triplets(triples, template=args.template)
    if kind in ("negation", "core"):
        if args.demo:
            nli = [Triplet(*r) for r in DEMO_NLI]
        else:
            nli = read_triplets(_need_input(args), args.in_columns, source_column=None)
        return filter_negation(nli) if kind == "negation" else clean_core(nli)
    # mix
    if args.demo or args.input:
        raise ConfigError("make-triplets.from", "--kind mix reads triplet files given as --from NAME=PATH")
    paths = _key_values(args.sources, "make-triplets.from", str)
    if not paths:
        raise ConfigError("make-triplets.from", "give the triplet files to mix: --from core=core.csv --from ...")
    if args.counts and args.ratios:
        raise ConfigError("make-triplets.counts", "give --counts or --ratios, not both")
    if args.ratios:
        weights: dict[str, int | float] = _key_values(args.ratios, "make-triplets.ratios", float)
    elif args.counts:
        weights = _key_values(args.counts, "make-triplets.counts", int)
    else:
        weights = {k: v for k, v in NLI_NUANCE.items() if k in paths}
        if not weights:
            raise ConfigError("make-triplets.counts", f"no --counts given and none of {sorted(paths)} is an "
                                                      f"NLI-Nuance source ({sorted(NLI_NUANCE)})")
    sources = {name: read_triplets(path, args.in_columns, default_source=name) for name, path in paths.items()}
    rows = mix(sources, weights, args.total, args.seed, on_short=args.on_short)
    return rows, {"input": {k: len(v) for k, v in sources.items()}, "output": len(rows),
                  "per_source": dict(sorted(Counter(r.source for r in rows).items()))}


def run(args: argparse.Namespace) -> int:
    """Run `make-triplets` for parsed arguments: write the rows, print (and optionally save) the stats."""
    rows, stats = _run_kind(args)
    write_triplets(rows, args.output, args.columns, source_column=None if args.no_source_column else SOURCE_COLUMN)
    report = {"kind": args.kind, "input": "demo" if args.demo else args.input, "output": args.output,
              "rows": len(rows), "seed": args.seed, "stats": stats}
    text = json.dumps(report, indent=2, sort_keys=False)
    print(text)
    if args.report:
        _write_bytes(args.report, (text + "\n").encode(), None)
    log.info("make-triplets --kind %s: %d rows -> %s", args.kind, len(rows), args.output)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make-triplets", description="Make TARA training triplets with hard negatives")
    args = add_arguments(p).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    try:
        return run(args)
    except (ConfigError, InputError) as exc:
        print(f"make-triplets: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
