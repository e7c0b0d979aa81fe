"""`tara-batch make-triplets`: the options (`add_arguments`) and the run (`run`) that cli.py calls; also
`python -m tara_batch.train.triplets`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from tara_batch.errors import ConfigError, InputError
from tara_batch.train.triplets.common import KINDS, NLI_NUANCE, SOURCE_COLUMN, TRIPLET_COLUMNS, Triplet, clean_text
from tara_batch.train.triplets.composed import DEFAULT_COMPOSED_TEMPLATE, make_composed_triplets
from tara_batch.train.triplets.demo import DEMO_COVR, DEMO_NARRATIONS, DEMO_NLI
from tara_batch.train.triplets.lexicon import lexicon_size
from tara_batch.train.triplets.mixing import mix
from tara_batch.train.triplets.negation import clean_core, filter_negation
from tara_batch.train.triplets.order import consecutive_pairs, make_order_triplets
from tara_batch.train.triplets.paraphrase import DEFAULT_PARAPHRASE_PROMPT, rewrite_with_llm
from tara_batch.train.triplets.tables import (
    read_sentences,
    read_table,
    read_triplets,
    write_output_bytes,
    write_triplets,
)
from tara_batch.train.triplets.temporal import clean_narration, make_temporal_triplets

log = logging.getLogger(__name__)


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
    g.add_argument("--positive-column", help="temporal: a column of the input holding each sentence's positive "
                                             "(e.g. another caption of the same clip); empty cells fall back")
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
        if args.positive_column:
            if args.demo or args.paraphrase_model:
                raise ConfigError("make-triplets.positive_column", "--positive-column reads positives from --input; "
                                  "it cannot be combined with --demo or --paraphrase-model")
            table = read_table(_need_input(args))
            if table and args.positive_column not in table[0]:
                raise InputError(f"{args.input} has no column {args.positive_column!r} (columns: {list(table[0])})")
            given = {clean_text(r.get(args.text_column or "text")): clean_text(r.get(args.positive_column))
                     for r in table}

            def paraphrase(anchors):  # the given positive of each anchor ("" falls back to the corpus/light rules)
                return [given.get(a, "") for a in anchors]
        elif args.paraphrase_model:
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
            return clean_text(text) if args.keep_ego4d_markers else clean_narration(clean_text(text), subject)

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
        write_output_bytes(args.report, (text + "\n").encode(), None)
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
