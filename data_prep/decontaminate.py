"""`decontaminate`: drop training records that share an n-gram with any evaluation record.

As in GPT-3 (Brown et al. 2020, appendix C): a training record is contaminated when it contains an n-gram of
--ngram words (13) found in an eval record. Japanese has no spaces, so its n-grams are of characters
(--ngram-chars, 20: a 13-character window still catches stock phrases such as お問い合わせいただきありがとうございます
shared by unrelated texts). Word n-grams are taken over the Latin-script words of a text; character n-grams over
its characters without spaces and punctuation, keeping only windows that are at least half kana/kanji, so mixed
texts are checked both ways and English never matches on characters.

Every turn of an eval record counts (prompts, answers, both sides of a pair), each turn on its own. Eval files may
be in any format `convert` reads, converted or not: the text fields of docs/design.md section 3 and any other string
column (e.g. a benchmark's `question`). The eval n-grams are kept as 64-bit hashes, with the eval file they came
from; an eval record too short to have one n-gram cannot be checked and is counted in the summary.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import xxhash

from alignpipe.errors import AlignpipeError
from data_prep.records import JsonlWriter, Rejects, iter_records, run_streaming, text_pieces
from data_prep.text import is_cjk, units


def ngrams(text: str, ngram_words: int, ngram_chars: int) -> Iterator[tuple[int, str]]:
    """(hash, readable n-gram) for every word n-gram and every mostly-Japanese character n-gram of `text`."""
    tokens = units(text)
    words = [token for token in tokens if not is_cjk(token)]
    for start in range(len(words) - ngram_words + 1):
        gram = " ".join(words[start:start + ngram_words])
        yield xxhash.xxh3_64_intdigest(("w" + gram).encode("utf-8")), gram
    chars = "".join(tokens)
    flags = [is_cjk(c) for c in chars]
    cjk_in_window = sum(flags[:ngram_chars])
    for start in range(len(chars) - ngram_chars + 1):
        if start:
            cjk_in_window += flags[start + ngram_chars - 1] - flags[start - 1]
        if cjk_in_window * 2 >= ngram_chars:
            gram = chars[start:start + ngram_chars]
            yield xxhash.xxh3_64_intdigest(("c" + gram).encode("utf-8")), gram


def texts_to_check(data: Any) -> list[str]:
    """Every turn of a standard record; for any other record (a raw benchmark file), every string value."""
    pieces = text_pieces(data)
    if pieces or not isinstance(data, Mapping):
        return pieces
    return [value for value in data.values() if isinstance(value, str)]


def build_eval_index(eval_paths: list[str | Path], ngram_words: int, ngram_chars: int
                     ) -> tuple[dict[int, int], dict[str, Any]]:
    """n-gram hash -> index of the eval file it came from (the first one), and per-file counts."""
    index: dict[int, int] = {}
    files: dict[str, Any] = {}
    for file_number, path in enumerate(eval_paths):
        records = too_short = 0
        for record in iter_records(path):
            records += 1
            found = False
            for text in texts_to_check(record.data):
                for key, _ in ngrams(text, ngram_words, ngram_chars):
                    index.setdefault(key, file_number)
                    found = True
            too_short += not found
        files[str(path)] = {"records": records, "too_short_to_check": too_short}
    return index, files


def decontaminate_file(input_path: str | Path, output_path: str | Path, eval_paths: list[str | Path],
                       ngram_words: int = 13, ngram_chars: int = 20, rejects_path: str | Path | None = None,
                       skip_bad_lines: bool = False) -> dict[str, Any]:
    if not eval_paths:
        raise AlignpipeError("decontaminate: give the eval files with --against.")
    if ngram_words < 1 or ngram_chars < 1:
        raise AlignpipeError("decontaminate: --ngram and --ngram-chars must be at least 1.")
    index, eval_files = build_eval_index(eval_paths, ngram_words, ngram_chars)
    names = [str(path) for path in eval_paths]

    def body(writer: JsonlWriter, rejects: Rejects) -> dict[str, Any]:
        hits: Counter = Counter()
        read = 0
        for record in iter_records(input_path, rejects if skip_bad_lines else None):
            read += 1
            match = _first_match(record.data, index, ngram_words, ngram_chars)
            if match is None:
                writer.write(record.data)
                continue
            file_number, gram = match
            hits[names[file_number]] += 1
            rejects.add(record, "contaminated", f"shares the n-gram {gram!r} with {names[file_number]}")
        for name in names:
            eval_files[name]["training_records_removed"] = hits[name]
        return {"read": read, "eval_files": eval_files,
                "settings": {"ngram_words": ngram_words, "ngram_chars": ngram_chars}}

    return run_streaming(output_path, rejects_path, body)


def _first_match(data: Any, index: dict[int, int], ngram_words: int, ngram_chars: int) -> tuple[int, str] | None:
    for text in texts_to_check(data):
        for key, gram in ngrams(text, ngram_words, ngram_chars):
            if key in index:
                return index[key], gram
    return None
