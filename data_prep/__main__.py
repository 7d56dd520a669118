"""`python -m data_prep <command>`: argument parsing only. User errors print one message and exit with code 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from alignpipe.errors import AlignpipeError
from alignpipe.jsonl_reader import DEFAULT_MAX_LINE_BYTES, line_limit
from data_prep.convert import FORMATS

DESCRIPTION = """\
data_prep: raw files -> clean train/eval JSONL in alignpipe's formats, English and Japanese.

Every command streams (memory stays bounded for files larger than RAM), keeps each record's other fields as they
are, writes dropped records with the reason to OUT's rejects file (train.jsonl -> train.rejects.jsonl), prints a
summary, and never overwrites an existing output. `python -m data_prep COMMAND --help` explains each one."""

OVERVIEW_EXAMPLES = """\
examples:
  python -m data_prep convert --format hh-rlhf hh.jsonl.gz pairs.jsonl
  python -m data_prep dedup pairs.jsonl pairs.dedup.jsonl
  python -m data_prep pipeline recipes/data/demo-pipeline.yaml      # every step from one YAML file (make data)"""

EXAMPLES = {
    "convert": """examples:
  python -m data_prep convert --format alpaca alpaca_data.json sft.jsonl
  python -m data_prep convert --format sharegpt sharegpt.jsonl.gz sft.jsonl
  python -m data_prep convert --format hh-rlhf hh-rlhf/train.jsonl.gz pairs.jsonl
  python -m data_prep convert --format preference ultrafeedback/ pairs.jsonl   # a folder of Parquet files
  python -m data_prep convert --format auto questions.tsv sft.jsonl            # the layout the first row shows
  python -m data_prep convert --format text --text-field body pages.csv text.jsonl""",
    "dedup": """examples:
  python -m data_prep dedup sft.jsonl sft.dedup.jsonl                  # exact and near duplicates
  python -m data_prep dedup --exact sft.jsonl sft.dedup.jsonl          # exact only (normalised text)
  python -m data_prep dedup --near --threshold 0.8 --ngram 5 web.jsonl web.dedup.jsonl   # long web documents""",
    "filter": """examples:
  python -m data_prep filter --toxicity-max 0.5 sft.jsonl sft.clean.jsonl
  python -m data_prep filter --lang en,ja --min-chars 20 --max-repetition 0.3 sft.jsonl sft.clean.jsonl
  # Gopher-like settings for web text:
  python -m data_prep filter --min-chars 200 --max-chars 100000 --max-repetition 0.3 --min-alpha-ratio 0.7 \\
      --max-symbol-ratio 0.1 --max-boilerplate 0.3 web.jsonl web.clean.jsonl""",
    "pii": """examples:
  python -m data_prep pii sft.jsonl sft.masked.jsonl     # e-mail, phone, card, IP, My Number, postal code""",
    "decontaminate": """examples:
  python -m data_prep decontaminate sft.jsonl sft.decon.jsonl --against data/demo/sft_eval.jsonl
  python -m data_prep decontaminate --against data/demo/sft_eval.jsonl sft.jsonl sft.decon.jsonl   # either order
  python -m data_prep decontaminate in.jsonl out.jsonl --against mmlu.jsonl jmmlu.csv --ngram 13 --ngram-chars 20""",
    "split": """examples:
  python -m data_prep split --eval-fraction 0.05 --seed 42 sft.jsonl data/prepared   # -> train.jsonl, eval.jsonl""",
    "stats": """examples:
  python -m data_prep stats sft.jsonl stats/                             # the tokenizer of recipes/demo.yaml
  python -m data_prep stats --recipe recipes/llama3-8b-qlora-sft.yaml sft.jsonl stats/
  python -m data_prep stats --tokenizer path/to/model sft.jsonl stats/""",
    "pipeline": """examples:
  python -m data_prep pipeline recipes/data/demo-pipeline.yaml
  make data DATA_PIPELINE=recipes/data/demo-pipeline.yaml""",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m data_prep", description=DESCRIPTION,
                                     epilog=OVERVIEW_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, summary: str, in_out: bool = True) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary, epilog=EXAMPLES[name],
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        if in_out:
            # Optional here only so that decontaminate can take them back from an --against placed before them.
            optional = {"nargs": "?"} if name == "decontaminate" else {}
            sub.add_argument("input", type=Path, metavar="IN", help="input: .jsonl, .jsonl.gz, .json, .csv, .tsv, "
                             ".txt, .parquet, or a local datasets / Parquet folder", **optional)
            sub.add_argument("output", type=Path, metavar="OUT", help="output JSONL (.jsonl.gz compresses)", **optional)
            sub.add_argument("--rejects", type=Path, help="where dropped records go (default: next to OUT, "
                             "OUT.rejects.jsonl)")
            sub.add_argument("--skip-bad-lines", action="store_true",
                             help="send bad lines (not JSON, not UTF-8, longer than --max-line-bytes, nested too "
                             "deeply) to the rejects file with the reason, instead of stopping at the first")
        sub.add_argument("--max-line-bytes", type=int, default=DEFAULT_MAX_LINE_BYTES,
                         help="a longer input line (a longer record of a .json array) is a bad line "
                         "(default %(default)s)")
        return sub

    convert = command("convert", "convert alpaca, sharegpt, hh-rlhf, TRL layouts or raw text to our JSONL")
    convert.add_argument("--format", required=True, choices=FORMATS, help="the input's layout (auto: detect it from "
                         "the first record); the stages read every one of them directly too (data.format)")
    convert.add_argument("--text-field", default="text", help="--format text: the column holding the text")

    dedup = command("dedup", "drop exact and near-duplicate records (MinHash LSH), keeping the first")
    dedup.add_argument("--exact", action="store_true", help="exact duplicates of the normalised text")
    dedup.add_argument("--near", action="store_true", help="near duplicates (default: both, when neither is given)")
    dedup.add_argument("--threshold", type=float, default=0.7, help="estimated Jaccard similarity of character "
                       "n-grams that makes a near duplicate (default 0.7; 0.8 suits long documents)")
    dedup.add_argument("--ngram", type=int, default=3, help="characters per shingle (default 3)")

    filters = command("filter", "drop low-quality, toxic or off-language records; each check only when given")
    filters.add_argument("--min-chars", type=int, help="drop records with fewer characters (all turns)")
    filters.add_argument("--max-chars", type=int, help="drop records with more characters")
    filters.add_argument("--max-repetition", type=float, help="drop records whose share of duplicated lines or of "
                         "words/characters inside repeated 5-grams exceeds this (Gopher: 0.3)")
    filters.add_argument("--min-alpha-ratio", type=float, help="drop records with a smaller share of letters among "
                         "non-space characters (0.7 for prose; code needs lower)")
    filters.add_argument("--max-symbol-ratio", type=float, help="drop records with more '#' and '...' per word "
                         "(Gopher: 0.1)")
    filters.add_argument("--max-boilerplate", type=float, help="drop records whose share of cookie/javascript/"
                         "terms-of-use lines exceeds this; lorem ipsum always counts as 1")
    filters.add_argument("--lang", help="keep only these languages, e.g. en,ja (also: zh, other)")
    filters.add_argument("--toxicity-max", type=float, help="drop records whose learned output (assistant turns, "
                         "text, chosen answer) scores above this with the gate's toxicity scorer, e.g. 0.5")
    filters.add_argument("--toxicity-model", help="a Hugging Face toxicity classifier (path) instead of the offline "
                         "EN/JA lexicon scorer")
    filters.add_argument("--allow-empty", action="store_true",
                         help="write an empty output when no record passes (by default that is an error)")

    command("pii", "mask e-mails, phones, credit cards, IP addresses, My Numbers, postal codes; count by kind")

    decontaminate = command("decontaminate", "drop training records sharing an n-gram with any eval record")
    decontaminate.add_argument("--against", nargs="+", action="extend", required=True, type=Path, metavar="EVAL",
                               help="eval files, in any format convert reads; before or after IN OUT, repeatable")
    decontaminate.add_argument("--ngram", type=int, default=13, help="words per English n-gram (default 13, GPT-3)")
    decontaminate.add_argument("--ngram-chars", type=int, default=20,
                               help="characters per Japanese n-gram (default 20)")

    split = commands.add_parser("split", help="seeded train/eval split into OUT_DIR/train.jsonl and eval.jsonl",
                                description="Seeded train/eval split with an exact eval share.",
                                epilog=EXAMPLES["split"], formatter_class=argparse.RawDescriptionHelpFormatter)
    split.add_argument("input", type=Path, metavar="IN")
    split.add_argument("output_dir", type=Path, metavar="OUT_DIR")
    split.add_argument("--eval-fraction", type=float, default=0.05, help="share held out (default 0.05)")
    split.add_argument("--seed", type=int, default=42)

    stats = commands.add_parser("stats", help="counts, turns, language mix, token lengths; stats.json + stats.png",
                                description="Counts by format, turns, language mix and token lengths (with the "
                                "recipe's tokenizer and chat template), written to OUT_DIR/stats.json and stats.png.",
                                epilog=EXAMPLES["stats"], formatter_class=argparse.RawDescriptionHelpFormatter)
    stats.add_argument("input", type=Path, metavar="IN")
    stats.add_argument("output_dir", type=Path, metavar="OUT_DIR")
    stats.add_argument("--recipe", help="take the tokenizer and train.max_length from this recipe "
                       "(default recipes/demo.yaml)")
    stats.add_argument("--tokenizer", help="a tokenizer folder instead of a recipe's")

    for sub in (split, stats):
        sub.add_argument("--max-line-bytes", type=int, default=DEFAULT_MAX_LINE_BYTES,
                         help="a longer input line is a bad line (default %(default)s)")

    pipeline = commands.add_parser("pipeline", help="run the steps listed in a YAML file, raw file to train/eval",
                                   description="Run data_prep steps from a YAML file (see recipes/data/).",
                                   epilog=EXAMPLES["pipeline"], formatter_class=argparse.RawDescriptionHelpFormatter)
    pipeline.add_argument("file", type=Path, metavar="PIPELINE_YAML")
    return parser


def run(args: argparse.Namespace) -> dict:
    common = {"rejects_path": getattr(args, "rejects", None), "skip_bad_lines": getattr(args, "skip_bad_lines", False)}
    if args.command == "convert":
        from data_prep.convert import convert_file

        return convert_file(args.input, args.output, args.format, args.text_field, **common)
    if args.command == "dedup":
        from data_prep.dedup import dedup_file

        both = not (args.exact or args.near)
        return dedup_file(args.input, args.output, exact=args.exact or both, near=args.near or both,
                          threshold=args.threshold, ngram=args.ngram, **common)
    if args.command == "filter":
        from data_prep.filters import FilterSettings, filter_file

        settings = FilterSettings(
            min_chars=args.min_chars, max_chars=args.max_chars, max_repetition=args.max_repetition,
            min_alpha_ratio=args.min_alpha_ratio, max_symbol_ratio=args.max_symbol_ratio,
            max_boilerplate=args.max_boilerplate, languages=tuple(args.lang.split(",")) if args.lang else None,
            toxicity_max=args.toxicity_max, toxicity_model=args.toxicity_model)
        return filter_file(args.input, args.output, settings, allow_empty=args.allow_empty, **common)
    if args.command == "pii":
        from data_prep.pii import pii_file

        return pii_file(args.input, args.output, **common)
    if args.command == "decontaminate":
        from data_prep.decontaminate import decontaminate_file

        return decontaminate_file(args.input, args.output, args.against, args.ngram, args.ngram_chars, **common)
    if args.command == "split":
        from data_prep.split import split_file

        return split_file(args.input, args.output_dir, args.eval_fraction, args.seed)
    if args.command == "stats":
        from data_prep.stats import load_stats_tokenizer, stats_file

        tokenizer, max_length = load_stats_tokenizer(args.tokenizer, args.recipe)
        return stats_file(args.input, args.output_dir, tokenizer, max_length)
    from data_prep.pipeline import run_pipeline

    return run_pipeline(args.file)


def take_positionals_back(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`decontaminate --against EVAL IN OUT` (or `IN --against EVAL OUT`): argparse gives what follows --against to
    it (one or more values), so the positionals it swallowed are taken back from its end."""
    if args.command != "decontaminate":
        return
    missing = [name for name in ("input", "output") if getattr(args, name) is None]
    if len(args.against) <= len(missing):
        parser.error("decontaminate needs IN, OUT and at least one --against EVAL")
    taken = args.against[len(args.against) - len(missing):]
    args.against = args.against[: len(args.against) - len(missing)]
    for name, value in zip(missing, taken):
        setattr(args, name, value)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    take_positionals_back(parser, args)
    try:
        with line_limit(getattr(args, "max_line_bytes", DEFAULT_MAX_LINE_BYTES)):
            summary = run(args)
    except AlignpipeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from data_prep.records import print_summary

    print_summary(args.command, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
