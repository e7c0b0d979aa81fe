"""Chiral (temporally opposite) verb phrases and direction words, and the rewriter that turns a sentence into its
temporal hard negative: "she picks up the cup" -> "she puts down the cup".

Why: TARA's temporal triplets (tara-method.md section 4) pair an action with its time-reversed counterpart, so the
embedding learns that "opens" and "closes" differ although they share every other word. The rewrite must keep
everything but the action (subject, object, tense, person, capitalisation, punctuation), otherwise the model can
tell the negative apart by its grammar instead of its meaning.

How it works (deterministic, no model, no POS tagger):

1. The lexicon (`lexicon_data.py`) is a bijection of verb phrases (`LEXICON`, base forms;
   `opposite(opposite(x)) == x`), each phrase a head verb plus at most one particle ("pick up"). Every head's five forms (base, 3rd person -s, -ing, past,
   past participle) are written out in `VERB_FORMS`, irregulars included, so a rewrite keeps tense and person.
2. `rewrite` scans the words left to right and flips the FIRST chiral verb phrase only (one action per negative,
   as TARA's "picks up -> puts down" examples do; a later clause stays as it is). The particle may be adjacent
   ("picks up the cup") or separated by an object of up to 4 words: stranded ("picks the cup up", "picks it up")
   or, for in/out/on/off of a goal/source phrase, heading the place ("takes the lid off the pot"). Any other
   separated use ("turns the cup on the table") is not a particle verb, and the sentence falls through to step 6.
3. Where a form is shared by several tenses ("put", "come", "opened"), the words before it decide: "has" / "is" ->
   past participle, "to" / modals / "they" / sentence start -> base, otherwise past.
4. Without POS tags, nouns and adjectives are told apart from verbs by their neighbours: no rewrite after a
   determiner / number ("the lock", "two stacks"), of a bare base form after a copula ("the door is open"), before
   "of" ("a pack of"), or of a noun-like base form without a subject/modal before it ("leaves the door open").
5. Prepositions follow the action: a "goal" phrase (put down, place, insert ...) moves something to a place, its
   opposite (a "source" phrase) moves it from one, so the place preposition after the object is flipped with it:
   "puts the cup on the table" -> "takes the cup off the table", "unplugs the lamp from the wall" -> "plugs the
   lamp into the wall". A source -> goal flip cannot know the lost preposition and uses the goal phrase's default
   (`GOAL_PREP`): "removes the knife from the drawer" -> "places the knife on the drawer".
6. Without a chiral verb, the unambiguous direction words of the sentence are swapped, ALL of them (a direction is
   often spelled in two words, "from left to right" -> "from right to left"). Bare up/down/in/out/on/off are left
   alone there: as prepositions they mean place, not direction ("the man in the red shirt").

Choices where the language offers two opposites (the lexicon must be a bijection):
lift <-> lower (tara-method's pair; "raise" is therefore left out), place <-> remove, pick up <-> put down (so "drop"
is left out), insert <-> pull out and put in <-> take out, climb <-> descend (tara-method) next to climb up <->
climb down, arrive <-> depart ("leave" is left out: its past "left" is also a direction), towards <-> away from
("toward", "anticlockwise" are left out), clockwise <-> counterclockwise.

    python -m tara_batch.train.triplets.lexicon "she picks the cup up" "he opened the box"
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

from tara_batch.train.triplets.lexicon_data import (
    AMBIGUOUS_DIRECTIONS,
    DIRECTION_PAIRS,
    GOAL_PREP,
    INTRANSITIVE,
    LEXICON,
    NOUN_OR_ADJ_HEADS,
    PARTICLE_PREP,
    PARTICLE_SURFACES,
    PREPOSITIONAL_PARTICLES,
    RIGHT_NOT_DIRECTION_NEXT,
    SLOTS,
    SOURCE_PHRASES,
    VERB_FORMS,
)

# --------------------------------------------------------------------------------------------------------------------
# Context word lists (lowercase)
# --------------------------------------------------------------------------------------------------------------------

_NUMBERS = frozenset({"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "dozen",
                      "dozens", "hundreds"})

# A verb never follows these directly: "the lock", "her closed eyes", "many stacks".
_DET_BEFORE_NOUN = frozenset({
    "a", "an", "the", "this", "these", "those", "his", "her", "their", "its", "my", "your", "our", "some", "any",
    "each", "every", "no", "another", "many", "several", "few", "other", "much", "more", "most", "whose",
}) | _NUMBERS

# Words that start a noun phrase: after a particle they make it a preposition ("off the table").
_NP_START = _DET_BEFORE_NOUN | frozenset({"that", "it", "them", "him", "me", "us", "both", "all"})

_PREPOSITIONS = frozenset({
    "in", "on", "at", "of", "with", "from", "into", "onto", "by", "for", "under", "over", "near", "inside", "outside",
    "behind", "across", "through", "without", "within", "between", "about", "against", "among", "around", "above",
    "below", "beside", "beyond", "during", "toward", "towards", "upon", "via", "off", "out",
})

_COPULAS = frozenset({"is", "are", "was", "were", "be", "been", "being", "am", "seems", "seem", "remains", "remain",
                      "stays", "stay"})

_BASE_TRIGGERS = frozenset({
    "to", "will", "would", "can", "could", "shall", "should", "may", "might", "must", "do", "does", "did", "don't",
    "doesn't", "didn't", "won't", "can't", "cannot", "couldn't", "wouldn't", "shouldn't", "let", "lets", "please",
    "i", "you", "we", "they", "people", "men", "women", "children", "kids", "both", "all",
})

_PERFECT_OR_PASSIVE = frozenset({"has", "have", "had", "having", "get", "gets", "got", "getting"}) | _COPULAS

_ADVERBS = frozenset({"already", "just", "not", "never", "also", "then", "still", "recently", "finally", "quickly",
                      "slowly", "carefully", "gently", "again", "immediately", "always", "often", "now", "first",
                      "n't", "partially", "fully", "completely", "suddenly"})

_CLAUSE_BREAKS = frozenset({"and", "or", "but", "then", "while", "before", "after", "as", "because", "so", "when",
                            "until", "if", "which", "who", "that"})

# Between a verb and its separated particle: an object, never a clause break, preposition or other particle.
_SEPARATION_STOPS = _CLAUSE_BREAKS | _PREPOSITIONS | frozenset(
    {"to", "up", "down", "away", "back", "left", "right", "forward", "backward"})

_MAX_SEPARATION = 4  # words of object between a verb and its separated particle ("picks the small red cup up")

_MAX_PREP_DISTANCE = 6  # words between the verb phrase and the preposition it governs

_GOAL_PREPS = frozenset({"on", "onto", "in", "into"})  # + "to" when the goal phrase's own preposition is "to"

_SOURCE_PREPS = frozenset({"from", "off", "out of"})

_COMPLEX_PREP_HEADS = frozenset({"next", "close", "prior", "due", "according", "up"})  # "next to" is no goal

_WORD = re.compile(r"[A-Za-z0-9]+(?:['\u2019][A-Za-z]+)*")


# --------------------------------------------------------------------------------------------------------------------
# Indexes built once at import (small: a few hundred entries)
# --------------------------------------------------------------------------------------------------------------------

def _split(phrase: str) -> tuple[str, str | None]:
    parts = phrase.split()
    if len(parts) == 1:
        return parts[0], None
    if len(parts) == 2:
        return parts[0], parts[1]
    raise ValueError(f"a lexicon phrase is a verb and at most one particle, got {phrase!r}")


def _forms(head: str) -> dict[str, str]:
    s, ing, past, pp = VERB_FORMS[head]
    return {"base": head, "s": s, "ing": ing, "past": past, "pp": pp}


def _build_opposites() -> dict[str, str]:
    out: dict[str, str] = {}
    for a, b in LEXICON:
        for x, y in ((a, b), (b, a)):
            if x in out:
                raise ValueError(f"lexicon phrase {x!r} appears twice: the lexicon must be a bijection")
            out[x] = y
    return out


_OPPOSITE_PHRASE = _build_opposites()

_HEAD_FORM_INDEX: dict[str, list[tuple[str, str]]] = {}  # surface of a head verb form -> [(head, slot)]

for _head in sorted({_split(p)[0] for p in _OPPOSITE_PHRASE}):
    for _slot, _form in _forms(_head).items():
        _HEAD_FORM_INDEX.setdefault(_form, []).append((_head, _slot))

_PHRASES_BY_HEAD: dict[str, list[str]] = {}

for _p in _OPPOSITE_PHRASE:
    _PHRASES_BY_HEAD.setdefault(_split(_p)[0], []).append(_p)

_OPPOSITE_DIRECTION: dict[str, str] = {}

for _a, _b in DIRECTION_PAIRS:
    _OPPOSITE_DIRECTION[_a] = _b
    _OPPOSITE_DIRECTION[_b] = _a

_SENTENCE_DIRECTIONS = {w: o for w, o in _OPPOSITE_DIRECTION.items() if w not in AMBIGUOUS_DIRECTIONS}


# --------------------------------------------------------------------------------------------------------------------
# Phrase-level API
# --------------------------------------------------------------------------------------------------------------------

def inflect(phrase: str, slot: str) -> str:
    """`phrase` (base form, e.g. "pick up") in `slot` (one of SLOTS): inflect("pick up", "past") == "picked up"."""
    head, particle = _split(phrase)
    form = _forms(head)[slot]
    return f"{form} {particle}" if particle else form


def phrase_forms(phrase: str) -> dict[str, str]:
    """All five forms of a lexicon phrase, keyed by slot."""
    return {slot: inflect(phrase, slot) for slot in SLOTS}


def opposite(text: str, slot: str | None = None) -> str | None:
    """The chiral opposite of a verb-phrase form ("picks up" -> "puts down") or direction word ("left" -> "right").

    A form shared by several slots ("put on": base, past and participle) is read in `slot` when given, else in the
    first matching slot of SLOTS. None if `text` is in neither table.
    """
    key = " ".join(text.lower().split())
    for phrase, other in _OPPOSITE_PHRASE.items():
        forms = phrase_forms(phrase)
        for s in SLOTS if slot is None else (slot,):
            if forms[s] == key:
                return inflect(other, s)
    return _OPPOSITE_DIRECTION.get(key)


# --------------------------------------------------------------------------------------------------------------------
# Sentence rewriting
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tok:
    text: str
    low: str
    start: int
    end: int


@dataclass(frozen=True)
class Rewrite:
    """A sentence's temporal hard negative and what was flipped.

    kind: "verb" (a lexicon phrase) or "direction" (direction words only). phrase / replacement: base-form lexicon
    phrases (verb) or the first swapped direction word and its opposite. head_index: word index of the flipped verb
    (0 = the sentence starts with it). object_key: head noun of the verb's object ("" if none), used to find
    positives that share verb and object.
    """

    text: str
    kind: str
    phrase: str
    replacement: str
    slot: str | None = None
    head_index: int = -1
    object_key: str = ""


@dataclass
class _Match:
    head_idx: int
    head: str
    phrase: str
    slot: str
    kind: str  # "adjacent" | "separated" | "single"
    particle: tuple[int, int] | None = None  # token span [first, last] of the particle surface
    particle_prep: bool = False  # the particle heads a prepositional phrase ("off the table")
    end_idx: int = 0  # last token of the verb phrase (particle included)
    object_key: str = ""


def _tokens(s: str) -> list[_Tok]:
    return [_Tok(m.group(), m.group().lower().replace("\u2019", "'"), m.start(), m.end()) for m in _WORD.finditer(s)]


def _gap_clean(s: str, toks: list[_Tok], i: int) -> bool:
    """Only whitespace between token i and token i+1 (no punctuation)."""
    return s[toks[i].end:toks[i + 1].start].strip() == ""


def _is_number(low: str) -> bool:
    return low.isdigit() or low in _NUMBERS


def _prev_skipping_adverbs(toks: list[_Tok], i: int) -> str | None:
    j = i - 1
    while j >= 0 and toks[j].low in _ADVERBS:
        j -= 1
    return toks[j].low if j >= 0 else None


def _is_base_trigger(low: str | None) -> bool:
    return low is None or low in _BASE_TRIGGERS or low.endswith("'ll")


def _is_perfect_or_passive(low: str | None) -> bool:
    return low is not None and (low in _PERFECT_OR_PASSIVE or low.endswith(("'ve", "'s", "'d", "'re", "'m")))


def _plausible_slots(s: str, toks: list[_Tok], i: int, head: str, slots: list[str], single: bool) -> list[str]:
    """The slots in which toks[i] can be a verb here (empty: it is a noun or adjective)."""
    prev = toks[i - 1].low if i > 0 else None
    nxt = toks[i + 1].low if i + 1 < len(toks) else None
    if prev is not None and (prev in _DET_BEFORE_NOUN or _is_number(prev)):
        return []
    if prev in _PREPOSITIONS:  # "in place", "with tape": only a gerund follows a preposition ("after opening")
        slots = [x for x in slots if x == "ing"]
    if prev is not None and (prev in _COPULAS or prev.endswith(("'s", "'re", "'m"))):
        slots = [x for x in slots if x in ("ing", "pp")]  # "is open" is an adjective, "is opened" a passive
    if head in NOUN_OR_ADJ_HEADS and "base" in slots:
        before = _prev_skipping_adverbs(toks, i)
        if not (_is_base_trigger(before) or before in ("and", "or")):
            slots = [x for x in slots if x != "base"]
    if single and nxt == "of":  # "a stack of plates", "packs of gum"
        slots = [x for x in slots if x not in ("base", "s")]
    if head == "close" and nxt in ("to", "by"):  # "close to the door"
        slots = [x for x in slots if x != "base"]
    return slots


def _resolve_slot(toks: list[_Tok], i: int, slots: list[str]) -> str:
    """One slot for a form shared by several ("put", "come", "opened"), from the words before it."""
    if len(slots) == 1:
        return slots[0]
    before = _prev_skipping_adverbs(toks, i)
    if "pp" in slots and _is_perfect_or_passive(before):
        return "pp"
    if "base" in slots and _is_base_trigger(before):
        return "base"
    if "past" in slots:
        return "past"
    return slots[0]


def _surface_at(toks: list[_Tok], s: str, j: int, particle: str, plain_only: bool) -> tuple[int, bool] | None:
    """Does the particle start at token j? -> (last token index, used its prepositional surface)."""
    surfaces = PARTICLE_SURFACES.get(particle, ((particle,),))
    for surface in surfaces:
        is_prep_surface = surface != (particle,)
        if plain_only and is_prep_surface:
            continue
        k = j + len(surface) - 1
        if k >= len(toks):
            continue
        if all(toks[j + n].low == w for n, w in enumerate(surface)) and all(
                _gap_clean(s, toks, j + n) for n in range(len(surface) - 1)):
            return k, is_prep_surface
    return None


def _np_follows(toks: list[_Tok], k: int) -> bool:
    return k + 1 < len(toks) and (toks[k + 1].low in _NP_START or toks[k + 1].low.isdigit())


def _object_key(toks: list[_Tok], s: str, first: int, stop: int | None = None) -> str:
    """Head noun (last word) of the object that starts at token `first`: "the small knife from ..." -> "knife"."""
    words: list[str] = []
    j = first
    while j < len(toks) and (stop is None or j < stop):
        if toks[j].low in _SEPARATION_STOPS:
            break
        words.append(toks[j].low)
        if j + 1 >= len(toks) or not _gap_clean(s, toks, j):
            break
        j += 1
    words = [w for w in words if w not in _NP_START]
    return words[-1] if words else ""


def _match_at(s: str, toks: list[_Tok], i: int) -> _Match | None:
    for head, slot0 in _HEAD_FORM_INDEX.get(toks[i].low, []):
        all_slots = [slot for h, slot in _HEAD_FORM_INDEX[toks[i].low] if h == head]
        if slot0 != all_slots[0]:
            continue  # each head once
        phrases = _PHRASES_BY_HEAD[head]
        with_particle = [p for p in phrases if _split(p)[1]]
        # (a) particle right after the verb: "picks up the cup", "goes into the room"
        if i + 1 < len(toks) and _gap_clean(s, toks, i):
            for p in with_particle:
                particle = _split(p)[1]
                hit = _surface_at(toks, s, i + 1, particle, plain_only=p not in INTRANSITIVE)
                if hit is None:
                    continue
                slots = _plausible_slots(s, toks, i, head, all_slots, single=False)
                if not slots:
                    return None
                k, prep_surface = hit
                prep = p in INTRANSITIVE and (prep_surface or _np_follows(toks, k))
                obj = "" if p in INTRANSITIVE else _object_key(toks, s, k + 1)
                return _Match(i, head, p, _resolve_slot(toks, i, slots), "adjacent", (i + 1, k), prep, k, obj)
        # (b) particle after a short object: "picks the cup up", "takes the lid off the pot"
        for j in range(i + 2, min(i + 2 + _MAX_SEPARATION, len(toks))):
            if not _gap_clean(s, toks, j - 1):
                break
            found = None
            for p in with_particle:
                if p in INTRANSITIVE:
                    continue
                particle = _split(p)[1]
                hit = _surface_at(toks, s, j, particle, plain_only=False)
                if hit is None:
                    continue
                k, prep_surface = hit
                prep = prep_surface or _np_follows(toks, k) or (k + 1 < len(toks) and toks[k + 1].low == "of")
                if prep and (particle not in PREPOSITIONAL_PARTICLES or _role(p) is None):
                    continue  # "turns the cup on the table" is no "turn on"
                if prep and particle == "out" and not prep_surface:
                    continue  # "out the door" without "of": leave it
                found = (p, k, prep)
                break
            if found is not None:
                slots = _plausible_slots(s, toks, i, head, all_slots, single=False)
                if not slots:
                    return None
                p, k, prep = found
                return _Match(i, head, p, _resolve_slot(toks, i, slots), "separated", (j, k), prep, k,
                              _object_key(toks, s, i + 1, stop=j))
            if toks[j].low in _SEPARATION_STOPS:
                break
        # (c) the verb alone: "opens the door"
        if head in phrases:
            slots = _plausible_slots(s, toks, i, head, all_slots, single=True)
            if slots:
                return _Match(i, head, head, _resolve_slot(toks, i, slots), "single", None, False, i,
                              _object_key(toks, s, i + 1))
    return None


def _case_like(src: str, new: str) -> str:
    if len(src) > 1 and src.isupper():
        return new.upper()
    if src[:1].isupper():
        return new[:1].upper() + new[1:]
    return new


def _find_role_prep(s: str, toks: list[_Tok], after: int, source_phrase: str) -> tuple[int, int, str] | None:
    """The place preposition governed by the verb phrase ending at token `after`: (first, last, surface)."""
    goal_preps = _GOAL_PREPS | ({"to"} if GOAL_PREP.get(source_phrase) == "to" else set())
    j = after + 1
    while j < len(toks) and j <= after + _MAX_PREP_DISTANCE:
        if not _gap_clean(s, toks, j - 1):
            return None
        low = toks[j].low
        if low in _CLAUSE_BREAKS:
            return None
        surface, last = low, j
        if low == "out" and j + 1 < len(toks) and toks[j + 1].low == "of" and _gap_clean(s, toks, j):
            surface, last = "out of", j + 1
        if surface in goal_preps or surface in _SOURCE_PREPS:
            prev = toks[j - 1].low if j > 0 else ""
            nxt = toks[last + 1].low if last + 1 < len(toks) else ""
            after_np = toks[last + 2].low if last + 2 < len(toks) else ""
            if (j - 1 > after and prev in _COMPLEX_PREP_HEADS) or nxt not in _NP_START or after_np in ("left", "right"):
                return None
            return j, last, surface
        j += 1
    return None


def _role(phrase: str) -> str | None:
    return "goal" if phrase in GOAL_PREP else "source" if phrase in SOURCE_PHRASES else None


def _conflicts(prep: str, target: str) -> bool:
    role = _role(target)
    return (role == "goal" and prep in _SOURCE_PREPS) or (role == "source" and prep not in _SOURCE_PREPS)


def _role_default_prep(target: str) -> str:
    return GOAL_PREP.get(target, "from")


def _apply(s: str, edits: list[tuple[int, int, str]]) -> str:
    for start, end, new in sorted(edits, reverse=True):
        s = s[:start] + new + s[end:]
    return s


def _rewrite_verb(s: str, toks: list[_Tok], m: _Match) -> Rewrite:
    target = _OPPOSITE_PHRASE[m.phrase]
    t_head, t_particle = _split(target)
    form = _case_like(toks[m.head_idx].text, _forms(t_head)[m.slot])
    head_tok = toks[m.head_idx]
    edits: list[tuple[int, int, str]] = []
    adjust_from = m.end_idx  # where to look for a place preposition to adjust; None = already handled
    if m.kind == "adjacent":
        first, last = m.particle  # type: ignore[misc]
        prep = None if m.particle_prep else _find_role_prep(s, toks, m.end_idx, m.phrase)
        if t_particle and prep is not None and _conflicts(prep[2], target) and t_particle in PREPOSITIONAL_PARTICLES:
            # "takes out a spoon from the drawer" -> "puts a spoon into the drawer" (not "puts in a spoon in ...")
            edits.append((head_tok.start, toks[last].end, form))
            edits.append((toks[prep[0]].start, toks[prep[1]].end, PARTICLE_PREP[t_particle]))
            adjust_from = None
        elif t_particle:
            part = PARTICLE_PREP[t_particle] if m.particle_prep and t_particle in PARTICLE_PREP else t_particle
            edits.append((head_tok.start, toks[last].end, f"{form} {part}"))
        else:
            edits.append((head_tok.start, toks[last].end, form))
    elif m.kind == "separated":
        first, last = m.particle  # type: ignore[misc]
        edits.append((head_tok.start, head_tok.end, form))
        if m.particle_prep:
            new = PARTICLE_PREP.get(t_particle, t_particle) if t_particle else _role_default_prep(target)
            edits.append((toks[first].start, toks[last].end, _case_like(toks[first].text, new)))
            adjust_from = None
        elif t_particle:
            edits.append((toks[first].start, toks[last].end, _case_like(toks[first].text, t_particle)))
        else:  # "plugs the lamp in" -> "unplugs the lamp": drop the particle and the space before it
            edits.append((toks[first - 1].end, toks[last].end, ""))
    else:  # single
        if t_particle:
            prep = _find_role_prep(s, toks, m.end_idx, m.phrase)
            if prep is not None and _conflicts(prep[2], target) and t_particle in PREPOSITIONAL_PARTICLES:
                # "unplugs the lamp from the wall" -> "plugs the lamp into the wall": the particle takes the place of
                # the preposition instead of doubling it ("plugs in the lamp into the wall").
                edits.append((head_tok.start, head_tok.end, form))
                edits.append((toks[prep[0]].start, toks[prep[1]].end, PARTICLE_PREP[t_particle]))
                adjust_from = None
            else:
                edits.append((head_tok.start, head_tok.end, f"{form} {t_particle}"))
        else:
            edits.append((head_tok.start, head_tok.end, form))
    if adjust_from is not None and _role(target) is not None:
        prep = _find_role_prep(s, toks, adjust_from, m.phrase)
        if prep is not None and _conflicts(prep[2], target):
            edits.append((toks[prep[0]].start, toks[prep[1]].end, _role_default_prep(target)))
    return Rewrite(_apply(s, edits), "verb", m.phrase, target, m.slot, m.head_idx, m.object_key)


def _rewrite_directions(s: str, toks: list[_Tok]) -> Rewrite | None:
    edits: list[tuple[int, int, str]] = []
    first: tuple[str, str] | None = None
    i = 0
    while i < len(toks):
        low, last = toks[i].low, i
        if i + 1 < len(toks) and _gap_clean(s, toks, i):
            pair = f"{low} {toks[i + 1].low}"
            if pair in _SENTENCE_DIRECTIONS:
                low, last = pair, i + 1
        new = _SENTENCE_DIRECTIONS.get(low)
        if new is not None and low == "right":
            prev = toks[i - 1].low if i > 0 else ""
            nxt = toks[i + 1].low if i + 1 < len(toks) else ""
            if prev == "all" or nxt in RIGHT_NOT_DIRECTION_NEXT:
                new = None
        if new is not None:
            edits.append((toks[i].start, toks[last].end, _case_like(toks[i].text, new)))
            first = first or (low, new)
        i = last + 1
    if not edits:
        return None
    return Rewrite(_apply(s, edits), "direction", first[0], first[1])  # type: ignore[index]


def rewrite(sentence: str) -> Rewrite | None:
    """The temporal hard negative of `sentence` with what was flipped, or None if it has no chiral phrase."""
    toks = _tokens(sentence)
    for i in range(len(toks)):
        m = _match_at(sentence, toks, i)
        if m is not None:
            return _rewrite_verb(sentence, toks, m)
    return _rewrite_directions(sentence, toks)


def opposite_sentence(s: str) -> str | None:
    """`s` with its first chiral verb phrase (else its direction words) flipped; None if it has none.

    >>> opposite_sentence("She picks the cup up.")
    'She puts the cup down.'
    """
    r = rewrite(s)
    return r.text if r is not None else None


def lexicon_size() -> dict[str, int]:
    """Counts for reports: verb pairs, phrases, distinct verb forms, direction pairs."""
    forms = {inflect(p, slot) for p in _OPPOSITE_PHRASE for slot in SLOTS}
    return {"verb_pairs": len(LEXICON), "verb_phrases": len(_OPPOSITE_PHRASE), "verb_forms": len(forms),
            "direction_pairs": len(DIRECTION_PAIRS)}


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"{arg!r} -> {opposite_sentence(arg)!r}")
