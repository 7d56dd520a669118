"""`stats`: what a data file holds: counts by format, turns, language mix, token lengths (the recipe's tokenizer and
chat template), and how many records train.max_length would truncate. Writes OUT_DIR/stats.json and stats.png.

Token lengths are those training sees: a conversation rendered with the chat template, a pair as prompt plus its
longer answer, raw text as it is. Only the lengths (4 bytes a record) are kept in memory.
"""

from __future__ import annotations

import json
from array import array
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alignpipe.errors import AlignpipeError
from data_prep.records import iter_records, record_text
from data_prep.text import language

BATCH = 256  # texts tokenized together


def load_stats_tokenizer(tokenizer_path: str | None, recipe_path: str | None) -> tuple[Any, int | None]:
    """The tokenizer (and train.max_length) of a recipe, or a tokenizer folder given directly."""
    from alignpipe.models import load_tokenizer, resolve_base

    if tokenizer_path is not None:
        return load_tokenizer(tokenizer_path), None
    from alignpipe.recipe_loading import load_recipe

    recipe = load_recipe(recipe_path or "recipes/demo.yaml", "sft", [])
    return load_tokenizer(resolve_base(recipe.model.base), recipe.model.chat_template), recipe.train.max_length


def record_format(data: Any) -> str:
    if not isinstance(data, Mapping):
        return "not an object"
    for name, keys in (("preference", ("chosen", "rejected")), ("kto", ("completion", "label")),
                       ("conversation", ("messages",)), ("text", ("text",)), ("prompt only", ("prompt",))):
        if all(key in data for key in keys):
            return name
    return "other"


def turns(data: Any) -> int:
    if not isinstance(data, Mapping):
        return 0
    conversation = data.get("messages") or data.get("prompt") or []
    return len(conversation) if isinstance(conversation, list) else 1


def training_text(data: Any, tokenizer: Any) -> str:
    """The text whose tokens training sees (the longer side of a pair)."""
    def render(messages: Any) -> str:
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        return tokenizer.apply_chat_template(messages, tokenize=False)

    if not isinstance(data, Mapping):
        return ""
    if isinstance(data.get("messages"), list):
        return render(data["messages"])
    if isinstance(data.get("text"), str):
        return data["text"]
    prompt = data.get("prompt") or []
    prompt = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
    answers = [data[key] for key in ("chosen", "rejected", "completion") if key in data]
    answers = [[{"role": "assistant", "content": a}] if isinstance(a, str) else a for a in answers] or [[]]
    return max((render(prompt + answer) for answer in answers if prompt + answer), key=len, default="")


def stats_file(input_path: str | Path, output_dir: str | Path, tokenizer: Any, max_length: int | None = None
               ) -> dict[str, Any]:
    output_dir = Path(output_dir)
    if (output_dir / "stats.json").exists():
        raise AlignpipeError(f"{output_dir / 'stats.json'} exists; choose another folder (outputs are never overwritten).")
    formats: Counter = Counter()
    languages: Counter = Counter()
    turn_counts: Counter = Counter()
    lengths = array("I")
    batch: list[str] = []

    def flush() -> None:
        if batch:
            lengths.extend(len(ids) for ids in tokenizer(batch, add_special_tokens=False)["input_ids"])
            batch.clear()

    for record in iter_records(input_path):
        formats[record_format(record.data)] += 1
        languages[language(record_text(record.data))] += 1
        turn_counts[turns(record.data)] += 1
        batch.append(training_text(record.data, tokenizer))
        if len(batch) >= BATCH:
            flush()
    flush()
    summary = {
        "input": str(input_path),
        "records": len(lengths),
        "formats": dict(formats.most_common()),
        "languages": dict(languages.most_common()),
        "turns": {str(k): v for k, v in sorted(turn_counts.items())},
        "tokens": _length_summary(sorted(lengths), max_length),
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "stats.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    summary["plot"] = str(_plot(lengths, languages, max_length, output_dir / "stats.png", Path(input_path).name))
    return summary


def _length_summary(ordered: list[int], max_length: int | None) -> dict[str, Any]:
    def percentile(p: float) -> int:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    summary = {"total": sum(ordered), "min": ordered[0], "mean": round(sum(ordered) / len(ordered), 1),
               "p50": percentile(0.5), "p90": percentile(0.9), "p99": percentile(0.99), "max": ordered[-1]}
    if max_length is not None:
        summary[f"over_max_length_{max_length}"] = sum(length > max_length for length in ordered)
    return summary


def _plot(lengths: array, languages: Counter, max_length: int | None, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [3, 1]})
    left.hist(lengths, bins=50, color="#4c72b0")
    if max_length is not None:
        left.axvline(max_length, color="#c44e52", linestyle="--", label=f"train.max_length = {max_length}")
        left.legend()
    left.set(xlabel="tokens per record", ylabel="records", title=f"{title}: token lengths")
    right.bar(list(languages), list(languages.values()), color="#55a868")
    right.set(title="language mix", ylabel="records")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
