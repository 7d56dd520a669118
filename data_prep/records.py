"""Reading records from any supported file, writing JSONL outputs and rejects, and the text of a record.

Everything streams: records are read one at a time (JSONL line by line, JSON arrays object by object, CSV row by
row, Parquet and `datasets` directories batch by batch) and written as they come, so memory stays bounded for
inputs larger than RAM. A bad line is one clear `file:line: reason` error; records a command decides to drop go to
a rejects file with the reason, so nothing disappears silently. Outputs are written to a temporary file and renamed
when complete, and an existing output is never overwritten.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from alignpipe.errors import AlignpipeError
from alignpipe.jsonl_reader import (MAX_DEPTH, BadLine, first_undecodable_line, iter_json_lines, iter_text_lines,
                                    max_line_bytes, nested_too_deeply)

# The fields that hold text in our formats (DESIGN.md section 3); every other field is carried along untouched.
TEXT_FIELDS = ("text", "prompt", "messages", "chosen", "rejected", "completion")
SUPPORTED_INPUTS = ".jsonl, .jsonl.gz, .json, .csv, .txt, .parquet, or a local Hugging Face datasets / Parquet folder"


class Record:
    """One input record and where it came from (`line`: the line in JSONL/CSV/TXT, the row number otherwise)."""

    __slots__ = ("source", "line", "data")

    def __init__(self, source: str, line: int, data: Any) -> None:
        self.source, self.line, self.data = source, line, data

    @property
    def where(self) -> str:
        return f"{self.source}:{self.line}"


def iter_records(path: str | Path, bad_lines_to: Rejects | None = None) -> Iterator[Record]:
    """Every record of a supported input, in order. A bad JSONL or TXT line (not JSON, not UTF-8, too long, nested
    too deeply: see alignpipe/jsonl_reader.py) stops with `file:line`, or, when `bad_lines_to` is given
    (--skip-bad-lines), goes there as a reject with its reason and the raw line."""
    path = Path(path)
    if not path.exists():
        raise AlignpipeError(f"Input not found: {path}")
    count, rejected_before = 0, bad_lines_to.total if bad_lines_to else 0
    for record in _iter_any(path, bad_lines_to):
        count += 1
        yield record
    if count == 0 and bad_lines_to and bad_lines_to.total > rejected_before:
        raise AlignpipeError(f"{path} holds no usable record: every line of it is a bad line "
                             f"({bad_lines_to.total - rejected_before}; the first: {bad_lines_to.first_reason}).")
    if count == 0:
        raise AlignpipeError(f"{path} is empty: no records in it.")


def _iter_any(path: Path, bad_lines_to: Rejects | None) -> Iterator[Record]:
    name = path.name.lower()
    if path.is_dir():
        yield from _iter_folder(path)
    elif name.endswith((".jsonl", ".jsonl.gz", ".ndjson")):
        yield from _iter_jsonl(path, bad_lines_to)
    elif name.endswith(".json"):
        yield from _iter_json_array(path)
    elif name.endswith(".csv"):
        yield from _iter_csv(path)
    elif name.endswith(".txt"):
        yield from _iter_txt(path, bad_lines_to)
    elif name.endswith(".parquet"):
        yield from _iter_parquet(path, str(path))
    else:
        raise AlignpipeError(f"{path}: unsupported input type; use {SUPPORTED_INPUTS}.")


def _iter_jsonl(path: Path, bad_lines_to: Rejects | None) -> Iterator[Record]:
    yield from _good_lines(path, iter_json_lines(path), bad_lines_to)


def _good_lines(path: Path, lines: Iterator[tuple[int, Any]], bad_lines_to: Rejects | None) -> Iterator[Record]:
    for line_number, value in lines:
        if not isinstance(value, BadLine):
            yield Record(str(path), line_number, value)
        elif bad_lines_to is None:
            raise AlignpipeError(f"{path}:{line_number}: {value.reason}. Fix the line, or pass --skip-bad-lines to "
                                 "send such lines to the rejects file.")
        else:
            bad_lines_to.add(Record(str(path), line_number, value.raw), value.kind, value.reason)


def _iter_json_array(path: Path) -> Iterator[Record]:
    """A JSON array of objects, decoded one element at a time from 1 MiB chunks (no whole-file load)."""
    decoder = json.JSONDecoder()
    try:
        yield from _decode_json_array(path, decoder)
    except UnicodeDecodeError as error:
        raise AlignpipeError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start} of a 1 MiB block); a "
                             ".json input must be UTF-8. Convert it, or use .jsonl to skip single bad lines.") from None
    except RecursionError:
        raise AlignpipeError(f"{path}: a record is nested too deeply to be data.") from None


def _decode_json_array(path: Path, decoder: json.JSONDecoder) -> Iterator[Record]:
    buffer, position, index, finished, lines_before = "", 0, 0, False, 1
    started = False
    with path.open(encoding="utf-8") as handle:
        while True:
            # Skip separators; refill when the buffer runs dry.
            while position < len(buffer) and buffer[position] in " \t\r\n,":
                position += 1
            if not started and position < len(buffer):
                if buffer[position] != "[":
                    raise AlignpipeError(f"{path}: a .json input must be a JSON array of records ([{{...}}, ...]); "
                                         "for one object a line use .jsonl.")
                started, position = True, position + 1
                continue
            if started and position < len(buffer) and buffer[position] == "]":
                finished = True
                break
            try:
                if position >= len(buffer):
                    raise ValueError
                value, end = decoder.raw_decode(buffer, position)
            except ValueError:  # incomplete element (or an empty buffer): read more, or fail at end of file
                if len(buffer) - position > max_line_bytes():  # one record, too long to be data: stop reading it
                    raise AlignpipeError(f"{path}: record {index + 1} is longer than the limit of {max_line_bytes()} "
                                         "characters (--max-line-bytes raises it).")
                chunk = handle.read(1 << 20)
                if not chunk:
                    break
                lines_before += buffer.count("\n", 0, position)
                buffer, position = buffer[position:] + chunk, 0
                continue
            index += 1
            if nested_too_deeply(value):
                raise AlignpipeError(f"{path}: record {index} is nested deeper than {MAX_DEPTH} levels.")
            yield Record(str(path), index, value)
            position = end
    if started and not finished:
        line = lines_before + buffer.count("\n", 0, position)
        raise AlignpipeError(f"{path}:{line}: not valid JSON after record {index} (truncated or malformed array).")


def _iter_csv(path: Path) -> Iterator[Record]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        try:
            for row in reader:
                if None in row:  # more cells than the header names
                    raise AlignpipeError(f"{path}:{reader.line_num}: more cells than the header's "
                                         f"{len(reader.fieldnames)} columns (an unquoted comma?).")
                yield Record(str(path), reader.line_num, dict(row))
        except UnicodeDecodeError:  # a CSV row may span lines, so one bad byte spoils the file
            raise AlignpipeError(f"{path}:{first_undecodable_line(path)}: not UTF-8 text; a CSV input must be UTF-8 "
                                 "throughout (convert it, e.g. with iconv).") from None
        except csv.Error as error:
            raise AlignpipeError(f"{path}:{reader.line_num}: not a readable CSV row ({error}).") from None


def _iter_txt(path: Path, bad_lines_to: Rejects | None) -> Iterator[Record]:
    """Plain text: one document per non-empty line."""
    lines = ((number, value if isinstance(value, BadLine) else {"text": value})
             for number, value in iter_text_lines(path))
    yield from _good_lines(path, lines, bad_lines_to)


def _iter_parquet(path: Path, source: str) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several types for a file that is not Parquet
        raise AlignpipeError(f"{path}: not a readable Parquet file ({error}).") from None
    row = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for data in batch.to_pylist():
            row += 1
            yield Record(source, row, data)


def _iter_folder(path: Path) -> Iterator[Record]:
    """A `datasets.save_to_disk` folder (memory-mapped Arrow, read lazily) or a folder of Parquet files."""
    if (path / "dataset_dict.json").exists():
        splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
        raise AlignpipeError(f"{path} holds several splits ({', '.join(splits)}); give one, e.g. {path / splits[0]}.")
    if (path / "state.json").exists():
        from datasets import load_from_disk

        dataset = load_from_disk(str(path))
        for row, data in enumerate(dataset, start=1):
            yield Record(str(path), row, data)
        return
    parquet_files = sorted(path.rglob("*.parquet"))
    if not parquet_files:
        raise AlignpipeError(f"{path} is a folder with neither a saved `datasets` dataset nor Parquet files.")
    for parquet_file in parquet_files:
        yield from _iter_parquet(parquet_file, str(parquet_file))


class JsonlWriter:
    """Writes JSONL to `path` through a temporary file renamed on `close()`; refuses an existing `path`."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise AlignpipeError(f"Output {self.path} exists; choose another path (outputs are never overwritten).")
        # Folders made for this output, deepest first: a failed command removes them again (when still empty).
        self.made_folders = [folder for folder in (self.path.parent, *self.path.parent.parents) if not folder.exists()]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.handle = (gzip.open(self.temporary, "wt", encoding="utf-8") if self.path.name.endswith(".gz")
                       else self.temporary.open("w", encoding="utf-8"))
        self.count = 0

    def write(self, data: Any) -> None:
        self.handle.write(json.dumps(data, ensure_ascii=False) + "\n")
        self.count += 1

    def close(self) -> None:
        self.handle.close()
        os.replace(self.temporary, self.path)

    def abort(self) -> None:
        self.handle.close()
        self.temporary.unlink(missing_ok=True)
        for folder in self.made_folders:
            with contextlib.suppress(OSError):  # not empty: something else was written there meanwhile
                folder.rmdir()


def rejects_path_for(output: str | Path) -> Path:
    """train.jsonl -> train.rejects.jsonl, next to the output."""
    output = Path(output)
    stem = output.name.removesuffix(".gz").removesuffix(".jsonl").removesuffix(".json")
    return output.with_name(f"{stem}.rejects.jsonl")


class Rejects:
    """The rejects file: one line per dropped record with its source, line, reason, and the record itself.
    Created only when something is rejected; `counts` tallies reasons by kind for the summary."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise AlignpipeError(f"Rejects file {self.path} exists; choose another output (outputs are never overwritten).")
        self.writer: JsonlWriter | None = None
        self.counts: dict[str, int] = {}
        self.first_reason: str | None = None

    def add(self, record: Record, kind: str, reason: str) -> None:
        if self.writer is None:
            self.writer = JsonlWriter(self.path)
        self.writer.write({"source": record.source, "line": record.line, "kind": kind, "reason": reason,
                           "record": record.data})
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.first_reason = self.first_reason or f"{record.where}: {reason}"

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def abort(self) -> None:
        if self.writer is not None:
            self.writer.abort()


def run_streaming(output: str | Path, rejects_file: str | Path | None, body: Callable[[JsonlWriter, Rejects], dict]
                  ) -> dict[str, Any]:
    """Open the output and rejects files, run `body(writer, rejects)`, and commit both only if it finishes."""
    writer = JsonlWriter(output)
    try:
        rejects = Rejects(rejects_file or rejects_path_for(output))
    except AlignpipeError:
        writer.abort()
        raise
    try:
        summary = body(writer, rejects)
    except BaseException:
        rejects.abort()  # first: the output's writer then removes the folders it made, once they are empty
        writer.abort()
        raise
    writer.close()
    rejects.close()
    summary = {"output": str(writer.path), "written": writer.count, **summary}
    if rejects.total:
        summary["rejected"] = dict(sorted(rejects.counts.items()))
        summary["rejects_file"] = str(rejects.path)
    return summary


def text_pieces(data: Any) -> list[str]:
    """The text of a record in a standard format, one piece per turn (prompt, messages, answers), in order.
    A Mapping, not only a dict: `datasets.map` hands functions its own lazy row type."""
    if not isinstance(data, Mapping):
        return []
    pieces = []
    for field in TEXT_FIELDS:
        value = data.get(field)
        if isinstance(value, str):
            pieces.append(value)
        elif isinstance(value, list):
            pieces += [m["content"] for m in value if isinstance(m, dict) and isinstance(m.get("content"), str)]
    return pieces


def record_text(data: Any) -> str:
    return "\n".join(text_pieces(data))


def map_text(data: dict[str, Any], change: Callable[[str], str]) -> dict[str, Any]:
    """A copy of the record with `change` applied to every text piece; all other fields and keys untouched."""
    changed = dict(data)
    for field in TEXT_FIELDS:
        value = data.get(field)
        if isinstance(value, str):
            changed[field] = change(value)
        elif isinstance(value, list):
            changed[field] = [{**m, "content": change(m["content"])}
                              if isinstance(m, dict) and isinstance(m.get("content"), str) else m for m in value]
    return changed


def print_summary(command: str, summary: dict[str, Any]) -> None:
    print(f"{command}: " + json.dumps(summary, ensure_ascii=False, indent=2), flush=True)
