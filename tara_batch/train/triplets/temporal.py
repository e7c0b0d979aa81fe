"""Temporal (chiral) triplets from Ego4D-style narrations: the hard negative is the same sentence with its action
flipped by the chiral lexicon ("picks up" -> "puts down"); the positive is another narration with the same verb
phrase and object, else a light paraphrase (or a generative model's paraphrase, `paraphrase.py`).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

from tara_batch.train.triplets.common import Triplet, clean_text, norm_text
from tara_batch.train.triplets.lexicon import rewrite

# Ego4D narration markers: "#C C picks up the knife" (C = the camera wearer), "#O man X opens the door" (another
# person), "#unsure" / "#summary" tags.
_EGO4D_C = re.compile(r"^#C\s+C\b\s*", re.IGNORECASE)

_EGO4D_NOTE = re.compile(r"#(?:unsure|summary)\b", re.IGNORECASE)

_EGO4D_TAG = re.compile(r"#[CO]\b", re.IGNORECASE)


def _strip_ego4d(text: str, subject: str) -> tuple[str, bool]:
    text = clean_text(_EGO4D_NOTE.sub(" ", clean_text(text)))
    m = _EGO4D_C.match(text)
    if m:
        text = (subject + " " if subject else "") + text[m.end():]
    return clean_text(_EGO4D_TAG.sub(" ", text)), m is not None


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
    s = clean_text(sentence)
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
        s, had_c = _strip_ego4d(raw, "") if strip_ego4d else (clean_text(raw), False)
        if not s:
            stats["empty"] += 1
            continue
        if dedupe:
            if norm_text(s) in seen:
                stats["duplicate"] += 1
                continue
            seen.add(norm_text(s))
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
        generated = [clean_text(x) for x in paraphrase(list(anchors))]
        if len(generated) != len(anchors):
            raise ValueError(f"paraphrase returned {len(generated)} outputs for {len(anchors)} sentences")

    rng = random.Random(seed)
    rows: list[Triplet] = []
    for i, (anchor, r) in enumerate(zip(anchors, rewrites, strict=True)):
        negative = clean_text(r.text)
        forbidden = {norm_text(anchor), norm_text(negative)}
        positive = ""
        if generated is not None and generated[i] and norm_text(generated[i]) not in forbidden:
            positive, how = generated[i], "paraphrase"
        if not positive and r.kind == "verb":
            group = by_key[(r.phrase, r.object_key)]
            if len(group) > 1:  # a uniform draw among the others, without building the list (groups can be huge)
                k = rng.randrange(len(group) - 1)
                positive, how = anchors[group[k if k < position[i] else k + 1]], "corpus"
        if not positive:
            verb_initial = subjectless[i] or (r.kind == "verb" and r.head_index == 0)
            positive, how = light_paraphrase(anchor, verb_initial), "light"
            if norm_text(positive) == norm_text(anchor):
                how = "is_anchor"
        stats[f"positive_{how}"] += 1
        rows.append(Triplet(anchor, positive, negative, "temporal"))
    stats["output"] = len(rows)
    return rows, dict(stats)
