"""`pipeline`: run data_prep steps listed in a YAML file, from a raw file to train/eval JSONL, in one command.

    input: data/raw.jsonl
    output: data/prepared          # a new folder: NN-<step>.jsonl per step, then train.jsonl, eval.jsonl
    steps:
      - convert: {format: alpaca}
      - dedup: {threshold: 0.7}
      - split: {eval_fraction: 0.05}

Each step reads what the one before wrote. Every unknown step or option is reported at once, with suggestions,
before anything runs. `split` ends the chain of files; only `stats` (on the training file) may follow it.
"""

from __future__ import annotations

import difflib
import json
from pathlib import Path
from typing import Any

import yaml

from alignpipe.errors import AlignpipeError
from data_prep.convert import convert_file
from data_prep.decontaminate import decontaminate_file
from data_prep.dedup import dedup_file
from data_prep.filters import FilterSettings, filter_file
from data_prep.pii import pii_file
from data_prep.split import split_file
from data_prep.stats import load_stats_tokenizer, stats_file

STEP_OPTIONS = {
    "convert": {"format", "text_field", "skip_bad_lines"},
    "pii": set(),
    "dedup": {"exact", "near", "threshold", "ngram"},
    "filter": {"min_chars", "max_chars", "max_repetition", "min_alpha_ratio", "max_symbol_ratio", "max_boilerplate",
               "lang", "toxicity_max", "toxicity_model", "allow_empty"},
    "decontaminate": {"against", "ngram", "ngram_chars"},
    "split": {"eval_fraction", "seed"},
    "stats": {"recipe", "tokenizer"},
}


def load_pipeline(path: str | Path) -> dict[str, Any]:
    """The pipeline file, checked: every problem reported together."""
    path = Path(path)
    if not path.is_file():
        raise AlignpipeError(f"Pipeline file not found: {path}")
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise AlignpipeError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(spec, dict):
        raise AlignpipeError(f"{path}: expected a mapping with input, output and steps.")
    problems = [f"unknown key {key!r}{_suggest(key, ['input', 'output', 'steps'])}"
                for key in spec if key not in ("input", "output", "steps")]
    problems += [f"missing {key!r}" for key in ("input", "output", "steps") if key not in spec]
    steps = spec.get("steps") or []
    if not isinstance(steps, list):
        problems.append("'steps' must be a list such as [{convert: {format: alpaca}}, {dedup: {}}]")
        steps = []
    for number, step in enumerate(steps, start=1):
        if not isinstance(step, dict) or len(step) != 1:
            problems.append(f"step {number}: write it as `- name: {{option: value}}`")
            continue
        (name, options), = step.items()
        if name not in STEP_OPTIONS:
            problems.append(f"step {number}: unknown step {name!r}{_suggest(name, list(STEP_OPTIONS))}")
        elif options is not None and not isinstance(options, dict):
            problems.append(f"step {number} ({name}): options must be a mapping")
        else:
            problems += [f"step {number} ({name}): unknown option {key!r}{_suggest(key, sorted(STEP_OPTIONS[name]))}"
                         for key in options or {} if key not in STEP_OPTIONS[name]]
    names = [next(iter(step)) for step in steps if isinstance(step, dict) and len(step) == 1]
    if "split" in names and any(name != "stats" for name in names[names.index("split") + 1:]):
        problems.append("only stats may follow split (it runs on the training file)")
    if problems:
        raise AlignpipeError(f"Invalid pipeline {path}:\n  " + "\n  ".join(problems))
    return spec


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def run_pipeline(path: str | Path) -> dict[str, Any]:
    spec = load_pipeline(path)
    output = Path(spec["output"])
    if output.exists() and any(output.iterdir()):
        raise AlignpipeError(f"Pipeline output {output} exists and is not empty; choose another output "
                             "(outputs are never overwritten).")
    current = Path(spec["input"])
    summaries = []
    for number, step in enumerate(spec["steps"], start=1):
        (name, options), = step.items()
        options = options or {}
        print(f"[{number}/{len(spec['steps'])}] {name} {current}", flush=True)
        target = output / f"{number:02d}-{name}.jsonl"
        summary = run_step(name, options, current, target, output)
        summaries.append({"step": name, **summary})
        if name == "split":
            current = Path(summary["train"])
        elif name != "stats":
            current = target
    result = {"pipeline": str(path), "input": spec["input"], "final": str(current), "steps": summaries}
    (output / "summary.json").write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return result


def run_step(name: str, options: dict[str, Any], source: Path, target: Path, output: Path) -> dict[str, Any]:
    """One step with its options, written out per step so that each call reads like its command line."""
    o = options
    if name == "convert":
        return convert_file(source, target, o.get("format", "messages"), o.get("text_field", "text"),
                            skip_bad_lines=o.get("skip_bad_lines", False))
    if name == "pii":
        return pii_file(source, target)
    if name == "dedup":
        return dedup_file(source, target, exact=o.get("exact", True), near=o.get("near", True),
                          threshold=o.get("threshold", 0.7), ngram=o.get("ngram", 3))
    if name == "filter":
        lang = o.get("lang")
        settings = FilterSettings(
            min_chars=o.get("min_chars"), max_chars=o.get("max_chars"), max_repetition=o.get("max_repetition"),
            min_alpha_ratio=o.get("min_alpha_ratio"), max_symbol_ratio=o.get("max_symbol_ratio"),
            max_boilerplate=o.get("max_boilerplate"),
            languages=tuple(lang.split(",") if isinstance(lang, str) else lang) if lang else None,
            toxicity_max=o.get("toxicity_max"), toxicity_model=o.get("toxicity_model"))
        return filter_file(source, target, settings, allow_empty=o.get("allow_empty", False))
    if name == "decontaminate":
        against = o.get("against") or []
        return decontaminate_file(source, target, [against] if isinstance(against, str) else against,
                                  ngram_words=o.get("ngram", 13), ngram_chars=o.get("ngram_chars", 20))
    if name == "split":
        return split_file(source, output, eval_fraction=o.get("eval_fraction", 0.05), seed=o.get("seed", 42))
    tokenizer, max_length = load_stats_tokenizer(o.get("tokenizer"), o.get("recipe"))
    return stats_file(source, output / "stats", tokenizer, max_length)
