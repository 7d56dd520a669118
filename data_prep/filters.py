"""`filter`: drop low-quality, toxic or off-language records (each check runs only when its option is given).

Quality heuristics after Gopher (Rae et al. 2021, appendix A: length, repeated lines and n-grams, symbol ratio,
alphabetic ratio) and C4 (Raffel et al. 2020: lorem ipsum, javascript/cookie notices). Units are words for English
and characters for Japanese (data_prep.text), so the same limits mean the same thing in both.

Toxicity reuses the gate's scorer (alignpipe.gate.toxicity: the offline EN/JA lexicon, or a Hugging Face classifier
with --toxicity-model). It scores what the model would learn to say: assistant turns, raw text, the chosen answer of
a pair, a desirable KTO completion. A toxic user prompt answered with a refusal is safety data worth keeping, and a
toxic rejected answer is what a preference pair is for.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignpipe.errors import AlignpipeError
from data_prep.records import JsonlWriter, Rejects, iter_records, run_streaming, text_pieces
from data_prep.text import is_cjk, language, units

REPEATED_NGRAM = 5  # words; Gopher uses 5- to 10-grams of words
REPEATED_NGRAM_CJK = 10  # characters: a Japanese word is about two
TOXICITY_BATCH = 64  # records scored together (a classifier batches them on its device)
_BOILERPLATE = re.compile(
    r"lorem ipsum|enable javascript|javascript is disabled|uses cookies|cookie policy|all rights reserved|"
    r"terms of use|privacy policy|javascriptを有効|クッキーを使用|無断転載|利用規約|プライバシーポリシー",
    re.IGNORECASE)
_SYMBOLS = re.compile(r"#|\.\.\.|…")


@dataclass
class FilterSettings:
    """Every limit is off when None. See `python -m data_prep filter --help` for suggested values."""

    min_chars: int | None = None
    max_chars: int | None = None
    max_repetition: float | None = None  # share of duplicated lines, or of units inside repeated 5-grams
    min_alpha_ratio: float | None = None  # letters among non-space characters
    max_symbol_ratio: float | None = None  # '#' and ellipses per unit (Gopher: 0.1)
    max_boilerplate: float | None = None  # share of lines that are site boilerplate; lorem ipsum always counts
    languages: tuple[str, ...] | None = None  # keep only these: en, ja, zh, other
    toxicity_max: float | None = None
    toxicity_model: str | None = None

    def any_check(self) -> bool:
        return any(value is not None for key, value in vars(self).items() if key != "toxicity_model")


def repetition(text: str) -> float:
    """The larger of: share of characters in lines that occur more than once, and share of units covered by an
    n-gram that occurs more than once (5 words, or 10 characters for mostly Japanese text)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    line_counts = Counter(lines)
    total_chars = sum(len(line) for line in lines) or 1
    duplicated_lines = sum(len(line) for line in lines if line_counts[line] > 1) / total_chars
    tokens = units(text)
    n = REPEATED_NGRAM_CJK if sum(map(is_cjk, tokens)) * 2 > len(tokens) else REPEATED_NGRAM
    if len(tokens) < n:
        return duplicated_lines
    grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
    gram_counts = Counter(grams)
    covered = set()
    for start, gram in enumerate(grams):
        if gram_counts[gram] > 1:
            covered.update(range(start, start + n))
    return max(duplicated_lines, len(covered) / len(tokens))


def alpha_ratio(text: str) -> float:
    visible = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in visible) / len(visible) if visible else 0.0


def symbol_ratio(text: str) -> float:
    return len(_SYMBOLS.findall(text)) / max(1, len(units(text)))


def boilerplate_ratio(text: str) -> float:
    if re.search("lorem ipsum", text, re.IGNORECASE):
        return 1.0
    lines = [line for line in text.splitlines() if line.strip()]
    return sum(bool(_BOILERPLATE.search(line)) for line in lines) / len(lines) if lines else 0.0


def quality_problem(pieces: list[str], settings: FilterSettings) -> tuple[str, str] | None:
    """(kind, reason) of the first failed quality check of a record's text pieces (its turns), or None. Length and
    language are measured on the whole record; repetition, symbols and boilerplate on each turn, since a turn that
    repeats a phrase of the one before is normal in a conversation."""
    s, text = settings, "\n".join(pieces)
    if s.min_chars is not None and len(text) < s.min_chars:
        return "too_short", f"{len(text)} characters < --min-chars {s.min_chars}"
    if s.max_chars is not None and len(text) > s.max_chars:
        return "too_long", f"{len(text)} characters > --max-chars {s.max_chars}"
    if s.max_repetition is not None and (value := max(map(repetition, pieces))) > s.max_repetition:
        return "repetitive", f"repetition {value:.2f} > --max-repetition {s.max_repetition}"
    if s.min_alpha_ratio is not None and (value := alpha_ratio(text)) < s.min_alpha_ratio:
        return "few_letters", f"letter ratio {value:.2f} < --min-alpha-ratio {s.min_alpha_ratio}"
    if s.max_symbol_ratio is not None and (value := max(map(symbol_ratio, pieces))) > s.max_symbol_ratio:
        return "symbols", f"symbol ratio {value:.2f} > --max-symbol-ratio {s.max_symbol_ratio}"
    if s.max_boilerplate is not None and (value := max(map(boilerplate_ratio, pieces))) > s.max_boilerplate:
        return "boilerplate", f"boilerplate share {value:.2f} > --max-boilerplate {s.max_boilerplate}"
    if s.languages is not None and (found := language(text)) not in s.languages:
        return "language", f"language {found} not in --lang {','.join(s.languages)}"
    return None


def learned_output(data: Any) -> str:
    """The text a model would learn to produce from this record (see the module docstring)."""
    if not isinstance(data, Mapping):
        return ""
    if isinstance(data.get("text"), str):
        return data["text"]
    if isinstance(data.get("messages"), list):
        return "\n".join(m["content"] for m in data["messages"]
                         if isinstance(m, dict) and m.get("role") == "assistant" and isinstance(m.get("content"), str))
    field = "chosen" if "chosen" in data else "completion" if data.get("label", True) is True else None
    value = data.get(field) if field else None
    if isinstance(value, list):
        return "\n".join(m["content"] for m in value if isinstance(m, dict) and isinstance(m.get("content"), str))
    return value if isinstance(value, str) else ""


def filter_file(input_path: str | Path, output_path: str | Path, settings: FilterSettings,
                rejects_path: str | Path | None = None, skip_bad_lines: bool = False,
                allow_empty: bool = False) -> dict[str, Any]:
    """Keep the records that pass every chosen check. Keeping none is an error (a wrong --lang, a threshold the
    wrong way round) unless `allow_empty`: then the output is written empty."""
    if not settings.any_check():
        raise AlignpipeError("filter: no check chosen; give at least one of --min-chars, --max-chars, "
                             "--max-repetition, --min-alpha-ratio, --max-symbol-ratio, --max-boilerplate, --lang, "
                             "--toxicity-max.")
    scorer = None
    if settings.toxicity_max is not None:
        from alignpipe.gate.toxicity_scorers import load_toxicity_scorer

        scorer = load_toxicity_scorer(settings.toxicity_model)

    def body(writer: JsonlWriter, rejects: Rejects) -> dict[str, Any]:
        read, languages, batch = 0, Counter(), []

        def flush() -> None:
            scores = scorer.score([learned_output(r.data) for r in batch]) if scorer else [0.0] * len(batch)
            for record, score in zip(batch, scores):
                if scorer is not None and score > settings.toxicity_max:
                    rejects.add(record, "toxic", f"toxicity {score:.2f} > --toxicity-max {settings.toxicity_max}")
                else:
                    writer.write(record.data)
            batch.clear()

        for record in iter_records(input_path, rejects if skip_bad_lines else None):
            read += 1
            pieces = text_pieces(record.data)
            languages[language("\n".join(pieces))] += 1
            problem = quality_problem(pieces, settings) if "".join(pieces).strip() else ("no_text", "no text to check")
            if problem is not None:
                rejects.add(record, *problem)
                continue
            batch.append(record)
            if len(batch) >= TOXICITY_BATCH:
                flush()
        flush()
        if writer.count == 0 and not allow_empty:
            rejected = ", ".join(f"{kind} {count}" for kind, count in sorted(rejects.counts.items()))
            raise AlignpipeError(f"filter kept none of the {read} records of {input_path} (rejected: {rejected}; "
                                 f"languages read: {dict(languages.most_common())}), so nothing was written. Loosen "
                                 "the checks, or pass --allow-empty to write an empty output.")
        return {"read": read, "languages_read": dict(languages.most_common())}

    return run_streaming(output_path, rejects_path, body)

