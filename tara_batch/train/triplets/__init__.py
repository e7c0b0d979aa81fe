"""`tara-batch make-triplets`: TARA's text triplets (anchor, positive, hard negative), one module per kind of nuance.

What: rows (sent0, sent1, hard_neg, source) written as CSV / Parquet / JSONL, one generator per kind in
tara-method.md section 4:

    temporal.py   Ego4D-style narrations; negative = the action flipped by the chiral lexicon ("picks up" -> "puts down")
    negation.py   NLI triplets whose negative adds an explicit negator; core NLI triplets, cleaned
    composed.py   WebVid-CoVR: anchor = source caption + edit, positive = target, negative = source
    order.py      two events: "A, then B" vs a same-order paraphrase vs the reversed "B, then A" (T3)
    mixing.py     a seeded mixture by counts or ratios (NLI-Nuance: 8K / 1K / 1K / 10K)
    lexicon.py    the sentence rewriter; lexicon_data.py its word lists (verb forms, chiral pairs, directions)
    common.py     the row type and column names; tables.py reading and writing; paraphrase.py optional vLLM
                  paraphrases; demo.py built-in offline data; command.py the command line

Why offline and deterministic: training data is part of a model's identity, so the same inputs and seed give
byte-identical files, and every dropped input is counted in the run's stats instead of vanishing.

    tara-batch make-triplets --kind temporal --demo temporal.csv          # or: python -m tara_batch.train.triplets
    tara-batch make-triplets --kind mix --from core=core.csv --from negation=negation.csv \\
        --from temporal=temporal.csv --from composed=composed.csv nli_nuance.csv --report stats.json

May import: `errors`, `io/` (tables on S3), `models/` (the optional vLLM paraphraser). No Ray, no torch at import.
"""
