"""Training data from wherever users keep it, in the layout it comes in, as Arrow datasets the trainers read.

    data.train / data.eval: a .jsonl, .json, .parquet, .csv or .tsv file, a `datasets.save_to_disk` folder, a
    folder of Parquet files, or a hub id (alignpipe.sources); data.format: its layout, or auto (alignpipe.formats)

Rows are read one at a time, converted by the layout's converter, checked, and written by `datasets` into
memory-mapped Arrow files in a scratch folder, so a large file is never held as Python objects all at once. A bad
row stops the load naming file:line or split[row], or with data.skip_invalid=true is skipped and counted. What was
read, kept and skipped, with a content fingerprint, goes into the stage's manifest. SFT data is tokenized with its
loss mask in sft_tokens.py.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import shutil
import tempfile
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import chain, islice
from pathlib import Path
from typing import Any

from datasets import Dataset

from alignpipe import formats, sources
from alignpipe.errors import AlignpipeError
from alignpipe.formats import as_messages  # noqa: F401  (re-exported: rlhf and the template check use it)
from alignpipe.record_checks import (  # noqa: F401  (re-exported: the gate, reward and template modules use them)
    ROLES,
    Invalid,
    messages_problem,
    normalize_preference,
    preference_record_problem,
    prompt_record_problem,
    sft_record_problem,
    unpaired_record_problem,
)
from alignpipe.sources import Record, file_sha256

# What each kind of training reads: the layouts it can use, and what a user should give it.
PURPOSES = {
    "sft": ("messages", "sharegpt", "alpaca", "prompt-completion", "text"),
    "pairs": ("preference", "hh-rlhf"),
    "kto": ("kto", "preference", "hh-rlhf"),
    "prompts": ("prompt", "preference", "hh-rlhf", "kto", "prompt-completion", "messages", "sharegpt", "alpaca"),
}
DETECTION_ROWS = 100  # rows that auto-detection looks at; every later row is checked against what they showed


def read_jsonl(path: str | Path) -> list[tuple[int, Any]]:
    """(line number, parsed object) for every non-blank line; a line that is not JSON comes back as an Invalid."""
    return list(iter_jsonl(path))


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed object) for every non-blank line, one at a time; a line that is not JSON yields
    an Invalid holding the reason."""
    from alignpipe.jsonl_reader import BadLine, iter_json_lines

    # Bytes decoded line by line (jsonl_reader): invalid UTF-8, runaway lines and deep nesting are bad lines.
    for line_number, value in iter_json_lines(path):
        yield line_number, Invalid(value.reason) if isinstance(value, BadLine) else value


def load_train_and_eval(data_config: Any, seed: int, purpose: str) -> tuple[Dataset, Dataset | list, dict[str, Any]]:
    """Training and held-out examples for a purpose (PURPOSES), and their lineage for the manifest: data.eval if
    given, else a seeded data.eval_fraction of data.train (an empty list when neither)."""
    from alignpipe.jsonl_reader import line_limit

    if data_config.train is None:
        raise AlignpipeError(f"data.train is not set: give a file, folder or hub id with {purpose_help(purpose)}.")
    with line_limit(data_config.max_line_bytes):
        train, train_lineage = load_split(data_config.train, data_config.split, data_config, purpose)
        lineage = {"train": train_lineage}
        if data_config.eval is not None:
            held_out, lineage["eval"] = load_split(data_config.eval, data_config.eval_split or data_config.split,
                                                   data_config, purpose)
            return train, held_out, lineage
    train, held_out = split_train_eval(train, data_config.eval_fraction, seed)
    train_lineage["examples"] = len(train)
    if len(held_out):
        lineage["eval"] = {"source": train_lineage["source"], "held_out_from": "train",
                           "eval_fraction": data_config.eval_fraction, "examples": len(held_out)}
    return train, held_out, lineage


def load_records(spec: str, purpose: str, data_config: Any = None) -> Dataset:
    """One source's examples for a purpose, with the recipe's data settings (format, columns, ...) if given."""
    from alignpipe.config import DataConfig

    data_config = data_config or DataConfig()
    return load_split(spec, data_config.split, data_config, purpose)[0]


def purpose_help(purpose: str) -> str:
    return {"sft": "conversations or raw text", "pairs": "preference pairs (prompt, chosen, rejected)",
            "kto": "KTO examples (prompt, completion, label) or preference pairs",
            "prompts": "prompts (or pairs and conversations, whose prompts are used)"}[purpose]


def load_split(spec: str, split: str | None, data_config: Any, purpose: str) -> tuple[Dataset, dict[str, Any]]:
    """Read one source, convert every row to the purpose's examples, and write them to Arrow."""
    source = sources.resolve_source(str(spec), split, data_config.subset, data_config.revision)
    rows, fingerprint = read_source(source)
    first_rows = list(islice(rows, DETECTION_ROWS))
    if not first_rows:
        raise AlignpipeError(f"{source.name} holds no usable examples: it is empty (no rows).")
    columns = dict(data_config.columns or {})
    check_mapped_columns(first_rows, columns, source)
    # The layout is read off rows that are rows at all: a line that is not JSON (or not UTF-8) tells nothing.
    readable = [r for r in first_rows if not isinstance(r.data, Invalid)]
    if not readable:
        first = first_rows[0]
        if not data_config.skip_invalid:
            raise AlignpipeError(f"{first.where}: {first.data.reason}. Fix the line, or set data.skip_invalid=true "
                                 "to skip bad lines.")
        raise AlignpipeError(f"{source.name} holds no usable examples: its first {len(first_rows)} row(s) are all "
                             f"invalid (first: {first.where}: {first.data.reason}).")
    renamed = [Record(r.source, r.line, formats.rename_columns(r.data, columns), r.indexed) for r in readable]
    layout = choose_layout(renamed, data_config.format, purpose, source)
    counts: Counter[str] = Counter()
    rows = chain(first_rows, rows)
    first_identical: list[str] = []
    examples = convert_rows(rows, layout, purpose, columns, data_config.skip_invalid, counts, first_identical)
    try:
        dataset = write_arrow(examples, source, purpose)
    except AlignpipeError:  # every row an identical pair: say so rather than "no usable examples"
        if not first_identical or data_config.skip_invalid:
            raise
    if first_identical and not data_config.skip_invalid:
        more = counts["identical_pair"] - 1
        raise AlignpipeError(first_identical[0] + (f" ({more} more invalid line(s) like it)" if more else "")
                             + ". Fix the rows, or set data.skip_invalid=true to skip bad rows.")
    skipped = {kind: n for kind, n in counts.items() if kind not in ("read", "kept")}
    how = "detected" if data_config.format == "auto" else "data.format"
    if purpose == "prompts" and layout != "prompt":
        print(f"note: online RL learns from prompts only; the answers in {source.name} are not used.", flush=True)
    print(f"Data: {source.name}: {layout} layout ({how}); {counts['read']} rows read, {counts['kept']} kept"
          + (f", skipped: {skipped}" if skipped else ""), flush=True)
    lineage = {
        "source": source.location, "path": source.location, "kind": source.kind, "split": source.split,
        "subset": source.subset if source.kind == "hub" else None,
        "revision": source.revision if source.kind == "hub" else None,
        "layout": layout, "layout_from": how, "columns": columns or None,
        "rows_read": counts["read"], "rows_kept": counts["kept"], "rows_skipped": sum(skipped.values()),
        "skipped": skipped, "examples": len(dataset), **fingerprint,
    }
    return dataset, lineage


def read_source(source: sources.Source, fingerprint: bool = True) -> tuple[Iterator[Record], dict[str, Any]]:
    """Rows of any source. JSON lines are read here, line by line; every other kind by alignpipe.sources."""
    if source.kind != "jsonl":
        return sources.read_rows(source, fingerprint)
    rows = (Record(source.location, line, data) for line, data in iter_jsonl(source.location))
    return rows, {"sha256": file_sha256(source.location)} if fingerprint else {}


def describe_sources(data_config: Any) -> list[str]:
    """What data.train and data.eval are, found on the file system alone (a dry run: nothing read or downloaded);
    a local path that does not exist is an error here, before anything loads."""
    lines = []
    for role, spec, split in (("train", data_config.train, data_config.split),
                              ("eval", data_config.eval, data_config.eval_split or data_config.split)):
        if spec is None:
            continue
        source = sources.resolve_source(str(spec), split, data_config.subset, data_config.revision)
        what = "hub dataset (not contacted in a dry run)" if source.kind == "hub" else f"local {source.kind}"
        lines.append(f"data.{role}: {source.name}: {what}, layout {data_config.format}")
    return lines


def count_rows(spec: str, data_config: Any) -> int:
    """Rows in a local source (for plans); a hub id is not counted: nothing is downloaded for a plan."""
    source = sources.resolve_source(str(spec), data_config.split, data_config.subset, data_config.revision)
    if source.kind == "hub":
        raise AlignpipeError(f"{spec} is a hub id; counting its rows would download it. Give train.max_steps, or "
                             "point data.train at a local copy.")
    return sum(1 for _ in read_source(source, fingerprint=False)[0])


def check_mapped_columns(first_rows: list[Record], columns: dict[str, str], source: sources.Source) -> None:
    """data.columns must name columns the data has, and our side must be a column name a layout uses."""
    first = next((r for r in first_rows if isinstance(r.data, dict)), None)
    if not columns or first is None:
        return
    unknown = [ours for ours in columns if ours not in formats.COLUMN_NAMES]
    if unknown:
        raise AlignpipeError(f"data.columns: {', '.join(unknown)} is not a column of any layout; the keys are our "
                             f"names ({', '.join(formats.COLUMN_NAMES)}), the values the data's own.")
    readable = [r.data for r in first_rows if isinstance(r.data, dict)]  # JSON lines may leave optional keys out
    absent = [theirs for theirs in columns.values() if not any(theirs in row for row in readable)]
    if absent:
        raise AlignpipeError(f"data.columns names {', '.join(repr(name) for name in absent)}, but {first.where} has no "
                             f"such column; its columns: {', '.join(first.data) or 'none'}.")


def choose_layout(first_rows: list[Record], wanted: str, purpose: str, source: sources.Source) -> str:
    usable = PURPOSES[purpose]
    if wanted == "auto":
        rows = [(r.where, r.data) for r in first_rows]
        return formats.detect_layout(rows, usable, source.name, purpose_help(purpose))
    if wanted not in usable:
        raise AlignpipeError(f"data.format={wanted} is a layout this stage cannot train on: it needs "
                             f"{purpose_help(purpose)} ({', '.join(usable)})." + formats.belongs_note([wanted]))
    first = next((r for r in first_rows if isinstance(r.data, dict)), None)
    if first is not None:
        found = formats.columns_of(first.data)
        missing = formats.missing_columns(found, wanted)
        if missing:
            fits = [layout for layout in formats.matching_layouts(first.data) if layout in usable]
            hint = f" It looks like data.format={fits[0]}." if fits else " Map names with data.columns={ours: theirs}."
            raise AlignpipeError(f"{first.where}: data.format={wanted} needs the column(s) {', '.join(missing)}; "
                                 f"{source.name} has {', '.join(found) or 'none'}.{hint}")
    return wanted


def convert_rows(rows: Iterator[Record], layout: str, purpose: str, columns: dict[str, str], skip_invalid: bool,
                 counts: Counter[str], first_identical: list[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The purpose's examples, row by row, each with where its row was; `counts` tallies read, kept and skipped
    rows by reason, and `first_identical` receives where the first identical pair was (the caller decides)."""
    seen_prompts: set[bytes] = set()
    for record in rows:
        counts["read"] += 1
        try:
            converted = formats.convert_row(formats.rename_columns(record.data, columns), layout)
            examples = EXAMPLES_FOR[purpose](converted, seen_prompts)
        except formats.RowProblem as problem:
            if problem.kind == "duplicate_prompt":  # not an error: online RL asks each prompt once, counted
                counts[problem.kind] += 1
                continue
            if problem.kind == "identical_pair":  # a pair with nothing to learn: counted apart, refused after the pass
                if not counts[problem.kind]:
                    first_identical.append(f"{record.where}: {problem.reason}")
                counts[problem.kind] += 1
                continue
            if not skip_invalid:
                raise AlignpipeError(f"{record.where}: {problem.reason}. Fix the row, or set data.skip_invalid=true "
                                     "to skip bad rows.") from None
            if not counts["invalid"]:
                print(f"warning: skipping invalid rows, first {record.where}: {problem.reason}", flush=True)
            counts["invalid"] += 1
            continue
        counts["kept"] += 1
        for example in examples:
            yield record.where, example


def sft_examples(record: dict[str, Any], _: set[bytes]) -> list[dict[str, Any]]:
    return [record]


def pair_examples(record: dict[str, Any], _: set[bytes]) -> list[dict[str, Any]]:
    if record["chosen"] == record["rejected"]:
        raise formats.RowProblem("'chosen' equals 'rejected' (after the shared prompt), so the pair teaches nothing",
                                 kind="identical_pair")
    return [record]


def kto_examples(record: dict[str, Any], seen: set[bytes]) -> list[dict[str, Any]]:
    """A KTO example as it is; a preference pair becomes two, its chosen desirable and its rejected undesirable."""
    if "label" in record:
        return [record]
    pair = pair_examples(record, seen)[0]
    return [{"prompt": pair["prompt"], "completion": pair["chosen"], "label": True},
            {"prompt": pair["prompt"], "completion": pair["rejected"], "label": False}]


def prompt_examples(record: dict[str, Any], seen: set[bytes]) -> list[dict[str, Any]]:
    """The prompt of any record (a conversation's: everything before its last answer), each prompt once."""
    if "messages" in record:
        last_answer = max(i for i, message in enumerate(record["messages"]) if message["role"] == "assistant")
        prompt = record["messages"][:last_answer]
    else:
        prompt = record["prompt"]
    if not prompt:
        raise formats.RowProblem("no prompt before the answer")
    digest = hashlib.sha1(json.dumps(prompt, ensure_ascii=False).encode()).digest()
    if digest in seen:
        raise formats.RowProblem("prompt seen before", kind="duplicate_prompt")
    seen.add(digest)
    return [{"prompt": prompt}]


EXAMPLES_FOR: dict[str, Callable[[dict[str, Any], set[bytes]], list[dict[str, Any]]]] = {
    "sft": sft_examples, "pairs": pair_examples, "kto": kto_examples, "prompts": prompt_examples}


def arrow_features(example: dict[str, Any]) -> Any:
    """The Arrow schema of a purpose's examples, from the first one (a margin column only when pairs have one).
    Messages keep role and content: the fields every chat template reads."""
    from datasets import Features, List, Value

    message = List({"role": Value("string"), "content": Value("string")})
    types = {"messages": message, "text": Value("string"), "prompt": message, "chosen": message,
             "rejected": message, "completion": message, "label": Value("bool"), "margin": Value("float64")}
    return Features({key: types[key] for key in example})


def write_arrow(examples: Iterator[tuple[str, dict[str, Any]]], source: sources.Source, purpose: str) -> Dataset:
    """Examples -> a memory-mapped Arrow dataset in the scratch folder. Every example must have the first one's
    fields: one kind of record per file (no messages mixed with text, margins on every pair or none)."""
    from datasets.exceptions import DatasetGenerationError

    first = next(examples, None)
    if first is None:
        raise AlignpipeError(f"{source.name} holds no usable examples (it is empty, or every row was skipped).")
    fields = set(first[1])

    def generate() -> Iterator[dict[str, Any]]:
        yield first[1]
        for where, example in examples:
            if set(example) != fields:
                raise AlignpipeError(f"{where}: this row gives {', '.join(sorted(example))} where the first gave "
                                     f"{', '.join(sorted(fields))}; use one kind of record per file "
                                     "(messages or text; a margin on every pair or on none).")
            yield example

    try:
        dataset = Dataset.from_generator(generate, features=arrow_features(first[1]), cache_dir=scratch_dir(),
                                         fingerprint=uuid.uuid4().hex)
    except DatasetGenerationError as error:  # datasets wraps what the generator raised
        cause = error.__cause__
        while cause is not None and not isinstance(cause, AlignpipeError):
            cause = cause.__cause__
        if cause is not None:
            raise cause from None
        raise
    if purpose == "kto" and len(dataset.unique("label")) < 2:
        raise AlignpipeError(f"{source.name}: KTO needs both desirable (label true) and undesirable (label false) "
                             "examples.")
    return dataset


@functools.cache
def scratch_dir() -> str:
    """Where this process writes loaded data (in the datasets cache, not /tmp, which may be memory); removed at exit."""
    import datasets

    base = Path(datasets.config.HF_DATASETS_CACHE) / "alignpipe"
    base.mkdir(parents=True, exist_ok=True)
    path = tempfile.mkdtemp(prefix="load-", dir=base)
    atexit.register(shutil.rmtree, path, True)
    return path


def split_train_eval(records: Dataset, eval_fraction: float, seed: int) -> tuple[Dataset, Dataset | list]:
    """A seeded share held out; both parts keep the file's order (memory-mapped reads stay sequential)."""
    import numpy as np

    if eval_fraction <= 0:
        return records, []
    n_eval = max(1, round(len(records) * eval_fraction))
    if n_eval >= len(records):
        raise AlignpipeError(f"data.eval_fraction={eval_fraction} leaves no training examples out of {len(records)}.")
    order = np.random.default_rng(seed).permutation(len(records))
    return records.select(np.sort(order[n_eval:])), records.select(np.sort(order[:n_eval]))


def records_to_score(input_path: Path, field: str, output_path: Path) -> list[dict[str, Any]]:
    """The lines of a JSONL file that `alignpipe score ...` adds a score to; each needs a string `field`.

    Refuses an existing output file (nothing is overwritten) and names file:line of a line without the field.
    """
    from alignpipe.jsonl_reader import read_valid_json_lines

    if output_path.exists():
        raise AlignpipeError(f"Output file {output_path} exists; choose another --output (nothing is overwritten).")
    rows = read_valid_json_lines(input_path)
    if not rows:
        raise AlignpipeError(f"{input_path} holds no lines to score.")
    for line_number, record in rows:
        if not isinstance(record, dict) or not isinstance(record.get(field), str):
            raise AlignpipeError(f"{input_path}:{line_number}: no string field {field!r} to score (choose it with --field)")
    return [record for _, record in rows]


def write_jsonl(path: Path, records: list[Any]) -> None:
    """One JSON object a line, UTF-8, non-ASCII kept readable; creates the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
