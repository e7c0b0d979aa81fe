"""Composed triplets from WebVid-CoVR captions: anchor = source caption + edit, positive = target caption,
negative = source caption (the edit must change the meaning).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from tara_batch.errors import ConfigError
from tara_batch.train.triplets.common import Triplet, clean_text, member_problem, norm_text

# Source caption first, then the edit as its own sentence: "A dog runs on the beach. Make it a cat." Short on
# purpose: training truncates each sentence to 32 tokens, and the edit comes last.
DEFAULT_COMPOSED_TEMPLATE = "{source} {edit}"


def _as_sentence(text: str, capitalise: bool) -> str:
    s = clean_text(text)
    if s and capitalise and s[0].islower():
        s = s[0].upper() + s[1:]
    if s and s[-1] not in ".!?":
        s += "."
    return s


def join_caption_edit(source: str, edit: str, template: str = DEFAULT_COMPOSED_TEMPLATE) -> str:
    """Anchor text of a composed triplet: source caption and edit as two sentences, joined by `template`."""
    if "{source}" not in template or "{edit}" not in template:
        raise ConfigError("composed.template", f"must contain {{source}} and {{edit}}, got {template!r}")
    return clean_text(template.replace("{source}", _as_sentence(source, capitalise=False))
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
        src, edit, tgt = clean_text(src), clean_text(edit), clean_text(tgt)
        stats["input"] += 1
        if not (src and edit and tgt):
            stats["empty_member"] += 1
            continue
        anchor = join_caption_edit(src, edit, template)
        bad = member_problem(anchor, tgt, src)
        if bad:
            stats[bad] += 1
            continue
        key = (norm_text(anchor), norm_text(tgt))
        if key in seen:
            stats["duplicate_row"] += 1
            continue
        seen.add(key)
        out.append(Triplet(anchor, tgt, src, "composed"))
    stats["output"] = len(out)
    return out, dict(stats)
