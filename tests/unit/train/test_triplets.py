"""make-triplets: the chiral lexicon, the sentence rewriter, every generator, the mixture, I/O and the CLI.

Fast (no model) except the last test, which runs the optional vLLM rewriting pass on the tiny model and is skipped
where vLLM is not installed (`VLLM_CPU_KVCACHE_SPACE=1 /work/venv-vllm/bin/python -m pytest
tests/unit/train/test_triplets.py -k llm`).
"""

from __future__ import annotations

import itertools
import json

import pytest

from tara_batch.errors import ConfigError, InputError
from tara_batch.train.triplets import lexicon as lx
from tara_batch.train.triplets import lexicon_data as lxd
from tara_batch.train.triplets.command import main
from tara_batch.train.triplets.common import NLI_NUANCE, Triplet
from tara_batch.train.triplets.composed import join_caption_edit, make_composed_triplets
from tara_batch.train.triplets.demo import DEMO_COVR, DEMO_NARRATIONS, DEMO_NLI
from tara_batch.train.triplets.lexicon import inflect, opposite, opposite_sentence
from tara_batch.train.triplets.lexicon_data import DIRECTION_PAIRS, LEXICON, SLOTS
from tara_batch.train.triplets.mixing import mix
from tara_batch.train.triplets.negation import clean_core, filter_negation, is_negation_of, negators
from tara_batch.train.triplets.order import consecutive_pairs, make_order_triplets
from tara_batch.train.triplets.tables import read_table, read_triplets, write_table, write_triplets
from tara_batch.train.triplets.temporal import clean_narration, light_paraphrase, make_temporal_triplets

PHRASES = [p for pair in LEXICON for p in pair]

# ---------------------------------------------------------------------------------------------------------- lexicon


def test_lexicon_size():
    size = lx.lexicon_size()
    assert size["verb_pairs"] == len(LEXICON) >= 40
    assert size["verb_phrases"] == 2 * len(LEXICON)
    assert size["direction_pairs"] == len(DIRECTION_PAIRS) >= 15


def test_lexicon_is_a_bijection():
    assert len(set(PHRASES)) == len(PHRASES), "a phrase appears in two pairs"
    assert all(a != b for a, b in LEXICON)
    for slot in SLOTS:  # no two phrases share a form in the same slot, so a form names one phrase
        forms = [inflect(p, slot) for p in PHRASES]
        assert len(set(forms)) == len(forms), slot
    words = [w for pair in DIRECTION_PAIRS for w in pair]
    assert len(set(words)) == len(words)
    assert {p.split()[0] for p in PHRASES} <= set(lxd.VERB_FORMS), "a head verb without its forms"


def test_every_verb_form_round_trips():
    for a, b in LEXICON:
        for slot in SLOTS:
            fa, fb = inflect(a, slot), inflect(b, slot)
            assert opposite(fa, slot) == fb and opposite(fb, slot) == fa, (a, slot)
            assert opposite(opposite(fa, slot), slot) == fa


def test_every_direction_word_round_trips():
    for a, b in DIRECTION_PAIRS:
        assert opposite(a) == b and opposite(b) == a
        assert opposite(opposite(a)) == a


def test_goal_and_source_phrases_pair_up():
    for a, b in LEXICON:
        roles = {lx._role(a), lx._role(b)}
        assert roles in ({None}, {"goal", "source"}), (a, b)


def test_no_verb_form_is_a_direction_word():
    # "left" (past of leave) is why "leave" is not in the lexicon: a form that is also a direction is ambiguous.
    forms = {inflect(p, s) for p in PHRASES for s in SLOTS}
    assert not forms & {w for pair in DIRECTION_PAIRS for w in pair}


def test_irregular_and_spelling_forms():
    assert lx.phrase_forms("put down") == {"base": "put down", "s": "puts down", "ing": "putting down",
                                           "past": "put down", "pp": "put down"}
    assert lx.phrase_forms("take off") == {"base": "take off", "s": "takes off", "ing": "taking off",
                                           "past": "took off", "pp": "taken off"}
    assert inflect("untie", "ing") == "untying"
    assert inflect("unzip", "past") == "unzipped"
    assert inflect("empty", "s") == "empties"
    assert inflect("go in", "pp") == "gone in"
    assert inflect("fall asleep", "past") == "fell asleep"
    assert inflect("lie down", "past") == "lay down"


# The rewriter on every form of every phrase, in a context that fixes the tense: exact output, and back again.
_CONTEXT = {"base": "They want to {}.", "s": "She {}.", "ing": "He is {}.", "past": "She {} yesterday.",
            "pp": "He has {}."}
_WITH_OBJECT = {"base": "They want to {} the box.", "s": "She {} the box.", "ing": "He is {} the box.",
                "past": "She {} the box yesterday.", "pp": "He has {} the box."}


@pytest.mark.parametrize("slot", SLOTS)
def test_every_form_in_a_sentence(slot):
    for a, b in LEXICON:
        for template in (_CONTEXT[slot], _WITH_OBJECT[slot]):
            if template is _WITH_OBJECT[slot] and a in lxd.INTRANSITIVE:
                continue  # "goes in the box" becomes "comes out of the box": checked in the pinned cases
            sa, sb = template.format(inflect(a, slot)), template.format(inflect(b, slot))
            assert opposite_sentence(sa) == sb, (sa, opposite_sentence(sa))
            assert opposite_sentence(sb) == sa, (sb, opposite_sentence(sb))


def test_direction_words_in_a_sentence():
    for a, b in DIRECTION_PAIRS:
        if a in lxd.AMBIGUOUS_DIRECTIONS:
            assert opposite_sentence(f"It moves {a} quickly.") is None
            continue
        assert opposite_sentence(f"It moves {a} quickly.") == f"It moves {b} quickly."
        assert opposite_sentence(f"It moves {b} quickly.") == f"It moves {a} quickly."


PINNED = [
    # person, tense, irregulars
    ("she picks up the cup", "she puts down the cup"),
    ("He opened the box.", "He closed the box."),
    ("opening the door", "closing the door"),
    ("He has put on his shoes.", "He has taken off his shoes."),
    ("he put on his coat", "he took off his coat"),  # "put": past after a singular subject
    ("They put on their coats.", "They take off their coats."),  # ... present after "they"
    ("The water froze overnight.", "The water melted overnight."),
    ("The balloon was inflated slowly.", "The balloon was deflated slowly."),
    ("She didn't close the window.", "She didn't open the window."),
    ("She woke up early.", "She fell asleep early."),
    # separated particles
    ("She picks the cup up.", "She puts the cup down."),
    ("picks it up", "puts it down"),
    ("He took his shoes off.", "He put his shoes on."),
    ("plugs the cable in", "unplugs the cable"),
    ("Someone is picking a cup up from the floor.", "Someone is putting a cup down on the floor."),
    # place prepositions follow the action
    ("Puts the cup on the table.", "Takes the cup off the table."),
    ("takes the knife out of the drawer", "puts the knife into the drawer"),
    ("unplugs the lamp from the wall", "plugs the lamp into the wall"),
    ("inserts the key into the lock", "pulls the key out of the lock"),
    ("picks up the knife from the table", "puts down the knife on the table"),
    ("takes out a spoon from the drawer", "puts a spoon into the drawer"),
    ("He will lift the box off the shelf.", "He will lower the box onto the shelf."),
    ("stands up from the sofa", "sits down on the sofa"),
    ("comes out of the room", "goes into the room"),
    ("She went in the house yesterday.", "She came out of the house yesterday."),
    # case, punctuation, first phrase only
    ("OPENS THE DOOR", "CLOSES THE DOOR"),
    ("The kids are unwrapping presents!", "The kids are wrapping presents!"),
    ("The man climbed the ladder, then waved.", "The man descended the ladder, then waved."),
    ("opens the drawer and takes out a spoon", "closes the drawer and takes out a spoon"),
    # directions (no chiral verb): all of them, so "from left to right" stays a path
    ("a red circle moves from left to right", "a red circle moves from right to left"),
    ("walks into the room", "walks out of the room"),
    ("walks towards the car", "walks away from the car"),
]

SKIPPED = [
    "the door is open",  # adjective after a copula
    "leaves the door open",  # noun-like base form without a subject
    "a stack of plates on the table",  # noun before "of"
    "the locked door",  # participle after a determiner
    "two stacks of paper",
    "the man in the red shirt waves",  # bare "in" is a place, not a direction
    "right now he smiles",
    "turns the cup on the table",  # "turn ... on" only as a stranded particle
    "cuts the bread with the knife",
    "",
]


@pytest.mark.parametrize(("sentence", "expected"), PINNED)
def test_pinned_rewrites(sentence, expected):
    assert opposite_sentence(sentence) == expected


@pytest.mark.parametrize("sentence", SKIPPED)
def test_sentences_without_a_chiral_phrase(sentence):
    assert opposite_sentence(sentence) is None


# ---------------------------------------------------------------------------------------------------------- temporal


def test_clean_narration():
    assert clean_narration("#C C picks up the knife") == "picks up the knife"
    assert clean_narration("#C C picks up the knife", subject="someone") == "someone picks up the knife"
    assert clean_narration("#unsure #C C fills the kettle") == "fills the kettle"
    assert clean_narration("#O A man X enters the room  ") == "A man X enters the room"
    assert clean_narration("a person\nopens the door") == "a person opens the door"


def test_light_paraphrase():
    assert light_paraphrase("A person opens the door.") == "Someone opens the door."
    assert light_paraphrase("someone folds a paper") == "a person folds a paper"
    assert light_paraphrase("picks up the knife") == "someone picks up the knife"  # verb first: add a subject
    assert light_paraphrase("C opens the door") == "Someone opens the door"
    assert light_paraphrase("the cat sleeps") == "the cat sleeps"  # nothing to change


def test_temporal_triplets_and_counts():
    sentences = [
        "#C C picks up the knife",
        "#C C picks up the knife",  # duplicate
        "#C C picked up a knife from the sink",  # same verb phrase + object: the other one's positive
        "#C C cuts the bread",  # no chiral phrase
        "   ",  # empty
        "A person opens the door.",
        "a ball rolls from left to right",  # direction only
    ]
    rows, stats = make_temporal_triplets(sentences, seed=0)
    assert stats == {"input": 7, "empty": 1, "duplicate": 1, "no_chiral": 1, "rewritten_verb": 3,
                     "rewritten_direction": 1, "positive_paraphrase": 0, "positive_corpus": 2, "positive_light": 1,
                     "positive_is_anchor": 1, "output": 4}
    assert rows == [
        Triplet("picks up the knife", "picked up a knife from the sink", "puts down the knife", "temporal"),
        Triplet("picked up a knife from the sink", "picks up the knife", "put down a knife on the sink", "temporal"),
        Triplet("A person opens the door.", "Someone opens the door.", "A person closes the door.", "temporal"),
        Triplet("a ball rolls from left to right", "a ball rolls from left to right",
                "a ball rolls from right to left", "temporal"),
    ]
    again, _ = make_temporal_triplets(sentences, seed=0)
    assert again == rows


def test_temporal_triplets_with_a_paraphraser():
    calls = []

    def paraphrase(batch):
        calls.append(list(batch))
        # one good output, one equal to the anchor (falls back), one empty (falls back)
        return ["someone shuts the box", batch[1], ""]

    rows, stats = make_temporal_triplets(["opens the box", "Lifts the bag.", "turns on the lamp"], paraphrase)
    assert calls == [["opens the box", "Lifts the bag.", "turns on the lamp"]]  # one batched call
    # the two rejected outputs fall back to the light paraphrase (a verb-first sentence gets a subject)
    assert [r.positive for r in rows] == ["someone shuts the box", "Someone lifts the bag.",
                                          "someone turns on the lamp"]
    assert stats["positive_paraphrase"] == 1 and stats["positive_light"] == 2
    rows, _ = make_temporal_triplets(["#C C opens the box"], paraphrase=lambda b: ["x"] * len(b))
    assert rows[0].positive == "x"
    with pytest.raises(ValueError, match="outputs"):
        make_temporal_triplets(["opens the box"], paraphrase=lambda b: [])


# ---------------------------------------------------------------------------------------------------------- negation


@pytest.mark.parametrize(("anchor", "hard_neg", "expected"), [
    ("A man plays guitar.", "A man is not playing.", True),
    ("A man plays guitar.", "The man doesn't play.", True),  # n't counts as "not"
    ("A man plays guitar.", "The man do n't play.", True),  # tokenised "n't" (PTB style)
    ("A man plays guitar.", "Nobody plays.", True),
    ("A man plays guitar.", "There is no guitar.", True),
    ("A man plays guitar.", "He never plays, nor sings.", True),
    ("A man plays guitar.", "He cannot play.", True),
    ("A man plays guitar.", "A woman plays the piano.", False),
    ("A man isn't happy.", "A man is not sad.", False),  # same negator in both: no new negation
    ("A man isn't happy.", "Nothing is happening.", True),
    ("Nobody is here.", "Someone is here.", False),
    ("The note was left.", "Another note.", False),  # "note", "another" are not negators
])
def test_is_negation_of(anchor, hard_neg, expected):
    assert is_negation_of(anchor, hard_neg) is expected


def test_negators():
    assert negators("I don\u2019t know, and neither does nobody.") == {"not", "neither", "nobody"}


def test_filter_negation_on_demo():
    rows, stats = filter_negation(DEMO_NLI)
    assert stats == {"input": 12, "empty_member": 0, "duplicate_members": 1, "no_new_negator": 5, "output": 6}
    assert all(r.source == "negation" and is_negation_of(r.anchor, r.hard_neg) for r in rows)
    assert rows[0] == Triplet("A man is playing a guitar on stage.", "A man is performing music.",
                              "A man is not playing any instrument.", "negation")


def test_clean_core():
    rows = [*DEMO_NLI, DEMO_NLI[0], ("A", "a ", "b"), ("", "x", "y"), ("x", "y", "X")]
    out, stats = clean_core(rows)
    assert stats == {"input": 16, "empty_member": 1, "duplicate_members": 3, "duplicate_row": 1, "output": 11}
    assert {r.source for r in out} == {"core"}


# ---------------------------------------------------------------------------------------------------------- composed


def test_composed_triplets():
    rows, stats = make_composed_triplets(DEMO_COVR)
    assert stats == {"input": 10, "empty_member": 1, "duplicate_members": 0, "duplicate_row": 0, "output": 9}
    assert rows[0] == Triplet("A dog runs on the beach. Make it a cat.", "A cat runs on the beach",
                              "A dog runs on the beach", "composed")
    rows, stats = make_composed_triplets([{"source": "a dog", "edit": "keep it", "target": "A dog"},
                                          ("a cat.", "make it black!", "a black cat")])
    assert stats["duplicate_members"] == 1
    assert rows == [Triplet("a cat. Make it black!", "a black cat", "a cat.", "composed")]


def test_composed_template():
    assert join_caption_edit("a dog runs", "make it a cat", "Source: {source} Edit: {edit}") == \
        "Source: a dog runs. Edit: Make it a cat."
    with pytest.raises(ConfigError, match="composed.template"):
        join_caption_edit("a", "b", "{source} only")


# ---------------------------------------------------------------------------------------------------------- order


def test_order_pinned_templates():
    rows, stats = make_order_triplets([("A man opens the door.", "he walks in"), ("I open the box", "TV turns on"),
                                       ("x", "X"), ("", "y")],
                                      templates=("{A}, then {b}.",), paraphrases=("{A}, then {b}.", "After {a}, {b}."))
    assert rows == [
        Triplet("A man opens the door, then he walks in.", "After a man opens the door, he walks in.",
                "He walks in, then a man opens the door.", "order"),
        Triplet("I open the box, then TV turns on.", "After I open the box, TV turns on.",
                "TV turns on, then I open the box.", "order"),
    ]
    assert stats == {"input": 4, "empty_member": 1, "same_events": 1, "duplicate_row": 0, "output": 2}


def test_order_reversal_and_determinism():
    events = [f"someone does thing {i}" for i in range(30)]
    pairs = list(itertools.pairwise(events))
    rows, _ = make_order_triplets(pairs, seed=3)
    for (a, b), row in zip(pairs, rows, strict=True):
        swapped = row.hard_neg.casefold().replace(a, "\0").replace(b, a).replace("\0", b)
        assert swapped == row.anchor.casefold()  # the hard negative is the anchor with the events swapped
        assert row.positive != row.anchor
        assert row.anchor[0].isupper() and row.anchor.endswith(".")
    assert make_order_triplets(pairs, seed=3)[0] == rows
    assert make_order_triplets(pairs, seed=4)[0] != rows


def test_consecutive_pairs():
    assert consecutive_pairs(["a", "b", "c", "d"], ["v1", "v1", "v1", "v2"]) == [("a", "b"), ("b", "c")]
    assert consecutive_pairs(["a", "b", "c"]) == [("a", "b"), ("b", "c")]


# ---------------------------------------------------------------------------------------------------------- mixture


def _source(name, n):
    return [Triplet(f"{name} anchor {i}", f"{name} pos {i}", f"{name} neg {i}", "x") for i in range(n)]


def test_mix_by_counts():
    sources = {"core": _source("core", 50), "negation": _source("neg", 10), "extra": _source("extra", 5)}
    rows = mix(sources, {"core": 20, "negation": 10}, seed=1)
    assert len(rows) == 30 and len(set(rows)) == 30
    counts = {s: sum(r.source == s for r in rows) for s in ("core", "negation", "extra")}
    assert counts == {"core": 20, "negation": 10, "extra": 0}
    assert all(r.anchor.startswith("core" if r.source == "core" else "neg") for r in rows)
    assert mix(sources, {"core": 20, "negation": 10}, seed=1) == rows  # deterministic
    assert mix(sources, {"core": 20, "negation": 10}, seed=2) != rows


def test_mix_by_ratios():
    sources = {"a": _source("a", 100), "b": _source("b", 100), "c": _source("c", 100)}
    rows = mix(sources, {"a": 1.0, "b": 1.0, "c": 1.0}, total=10, seed=0)
    counts = sorted(sum(r.source == s for r in rows) for s in "abc")
    assert counts == [3, 3, 4] and len(rows) == 10  # largest remainder: exactly `total`
    rows = mix(sources, {"a": 0.5, "b": 0.25}, seed=0)  # no total: as large as the sources allow
    assert (sum(r.source == "a" for r in rows), sum(r.source == "b" for r in rows)) == (100, 50)


def test_mix_nli_nuance_defaults():
    sources = {k: _source(k, v) for k, v in NLI_NUANCE.items()}
    rows = mix(sources)
    assert {k: sum(r.source == k for r in rows) for k in NLI_NUANCE} == NLI_NUANCE


def test_mix_short_sources_and_dedupe():
    sources = {"small": _source("s", 3), "big": _source("b", 10)}
    with pytest.raises(ConfigError, match="mix.counts.small"):
        mix(sources, {"small": 5, "big": 1})
    assert sum(r.source == "small" for r in mix(sources, {"small": 5, "big": 1}, on_short="take-all")) == 3
    rep = mix(sources, {"small": 7, "big": 1}, on_short="repeat")
    assert sum(r.source == "small" for r in rep) == 7
    with pytest.raises(ConfigError, match="no source named"):
        mix(sources, {"nope": 1})
    with pytest.raises(ConfigError, match="mix.total"):
        mix(sources, {"small": 1}, total=5)
    # Overlapping sources (negation rows come from the core NLI file): a row is drawn once, the smaller source first.
    core = _source("core", 20)
    rows = mix({"core": core, "negation": core[:5]}, {"core": 15, "negation": 5}, seed=0)
    assert len({r[:3] for r in rows}) == 20
    assert {r.anchor for r in rows if r.source == "negation"} == {r.anchor for r in core[:5]}


# ---------------------------------------------------------------------------------------------------------- I/O

TRICKY = [
    Triplet('a "quoted", comma', "line\nbreak  and   spaces", "caf\u00e9 \u2013 \u00fcber", "temporal"),
    Triplet("plain", "text", "here", "core"),
]


@pytest.mark.parametrize("name", ["t.csv", "t.parquet", "t.jsonl", "t.tsv", "t.csv.gz", "t.jsonl.gz"])
def test_triplets_round_trip(tmp_path, name):
    path = str(tmp_path / "sub" / name)
    assert write_triplets(TRICKY, path) == 2
    back = read_triplets(path)
    # whitespace (newlines too) is collapsed on write: one line per sentence for every CSV reader
    assert back == [TRICKY[0]._replace(positive="line break and spaces"), TRICKY[1]]
    assert read_table(path)[0] == dict(zip(["sent0", "sent1", "hard_neg", "source"], back[0], strict=True))


def test_write_is_deterministic_and_columns_configurable(tmp_path):
    a, b = tmp_path / "a.csv.gz", tmp_path / "b.csv.gz"
    write_triplets(TRICKY, str(a), ("q", "p", "n"), source_column=None)
    write_triplets(TRICKY, str(b), ("q", "p", "n"), source_column=None)
    assert a.read_bytes() == b.read_bytes()
    assert list(read_table(str(a))[0]) == ["q", "p", "n"]
    assert read_triplets(str(a), ("q", "p", "n"), default_source="core")[1] == TRICKY[1]
    with pytest.raises(InputError, match="no column"):
        read_triplets(str(a))


def test_read_table_formats_and_errors(tmp_path):
    (tmp_path / "s.txt").write_text("first line\n\n  second line \n")
    assert read_table(str(tmp_path / "s.txt")) == [{"text": "first line"}, {"text": "second line"}]
    write_table([{"a": 1, "b": None}], str(tmp_path / "m.jsonl"))
    assert read_table(str(tmp_path / "m.jsonl")) == [{"a": 1, "b": None}]
    with pytest.raises(InputError, match="does not exist"):
        read_table(str(tmp_path / "missing.csv"))
    with pytest.raises(ConfigError, match="format"):
        read_table(str(tmp_path / "x.xlsx"))
    (tmp_path / "bad.jsonl").write_text("[1, 2]\n")
    with pytest.raises(InputError, match="bad.jsonl:1"):
        read_table(str(tmp_path / "bad.jsonl"))


def test_s3_round_trip(s3_server):
    s3_server.create_bucket("triplets-test")
    uri = "s3://triplets-test/out/t.parquet"
    write_triplets(TRICKY[1:], uri, s3=s3_server.options())
    assert read_triplets(uri, s3=s3_server.options()) == TRICKY[1:]


# ---------------------------------------------------------------------------------------------------------- CLI


def test_cli_demo_kinds_and_mix(tmp_path, capsys):
    outs = {}
    for kind in ("temporal", "order", "composed", "negation", "core"):
        outs[kind] = str(tmp_path / f"{kind}.csv")
        assert main(["--kind", kind, "--demo", outs[kind], "--seed", "0"]) == 0
    report = tmp_path / "report.json"
    assert main(["--kind", "temporal", "--demo", outs["temporal"], "--report", str(report)]) == 0
    stats = json.loads(report.read_text())
    assert stats["rows"] == stats["stats"]["output"] == len(read_triplets(outs["temporal"])) > 30
    assert stats["stats"]["lexicon"]["verb_pairs"] >= 40
    rows = read_triplets(outs["temporal"])
    assert Triplet("picks the cup up", "someone picks the cup up", "puts the cup down", "temporal") in rows

    mixed = str(tmp_path / "mix.parquet")
    argv = ["--kind", "mix", mixed, "--counts", "temporal=10", "negation=4", "composed=5", "core=6"]
    for kind in ("temporal", "negation", "composed", "core"):
        argv += ["--from", f"{kind}={outs[kind]}"]
    capsys.readouterr()
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["stats"]["per_source"] == {"composed": 5, "core": 6, "negation": 4, "temporal": 10}
    assert len(read_triplets(mixed)) == 25
    first = read_triplets(mixed)
    assert main(argv) == 0 and read_triplets(mixed) == first  # same seed, same file

    assert main(["--kind", "temporal", str(tmp_path / "x.csv")]) == 2  # neither --input nor --demo
    assert main([*argv, "--counts", "temporal=1000"]) == 2  # a short source is a config error


def test_cli_reads_inputs(tmp_path):
    narr = tmp_path / "narrations.csv"
    write_table([{"video_uid": v, "narration_text": t} for v, t in
                 [("v1", "#C C opens the fridge"), ("v1", "#C C takes out the milk"), ("v2", "#C C sits down")]],
                str(narr))
    out = tmp_path / "o.jsonl"
    assert main(["--kind", "temporal", "--input", str(narr), str(out)]) == 0
    assert [r.hard_neg for r in read_triplets(str(out))] == ["closes the fridge", "puts in the milk", "stands up"]
    assert main(["--kind", "order", "--input", str(narr), "--group-column", "video_uid", str(out),
                 "--ego4d-subject", "C"]) == 0
    (row,) = read_triplets(str(out))
    assert "C opens the fridge" in row.anchor and "C takes out the milk" in row.anchor

    covr = tmp_path / "covr.csv"
    write_table([{"txt1": "a dog", "edit": "make it a cat", "txt2": "a cat"}], str(covr))
    assert main(["--kind", "composed", "--input", str(covr), str(out), "--columns", "q", "p", "n"]) == 0
    assert read_table(str(out)) == [{"q": "a dog. Make it a cat.", "p": "a cat", "n": "a dog", "source": "composed"}]


def test_demo_temporal_rows():
    rows, stats = make_temporal_triplets([t for _, t in DEMO_NARRATIONS])
    assert stats["output"] == len(rows) == 40 and stats["no_chiral"] == 4
    for row in rows:
        assert opposite_sentence(row.anchor) == row.hard_neg
        assert opposite_sentence(row.hard_neg) is not None
        assert row.positive != row.anchor  # Ego4D narrations lose their subject: "someone" is added back


# ---------------------------------------------------------------------------------------------------------- vLLM


def test_rewrite_with_llm_plumbing(request, monkeypatch):
    """One output per input, strings, greedy decoding deterministic (the tiny model's text itself is noise)."""
    pytest.importorskip("vllm", reason="vLLM not installed (scripts/install_vllm_cpu.sh creates a venv with it)")
    from tara_batch.train.triplets.paraphrase import rewrite_with_llm

    tiny_model_dir = request.getfixturevalue("tiny_model_dir")  # built only where the test runs

    monkeypatch.delenv("VLLM_CPU_OMP_THREADS_BIND", raising=False)
    sentences = ["someone opens the door", "a person folds a paper", "someone opens the door", "cut"]
    out = rewrite_with_llm(sentences, tiny_model_dir, max_tokens=8, max_model_len=256)
    assert len(out) == len(sentences) and all(isinstance(x, str) for x in out)
    assert out[0] == out[2]  # temperature 0: same prompt, same text
    assert rewrite_with_llm([], tiny_model_dir) == []  # no engine for nothing
    with pytest.raises(ConfigError, match="sentence"):
        rewrite_with_llm(["x"], tiny_model_dir, prompt_template="no placeholder")
