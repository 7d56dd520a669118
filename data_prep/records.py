"""Reading records from any supported file, writing JSONL outputs and rejects, and the text of a record.

Everything streams: records are read one at a time (JSONL line by line here; JSON arrays object by object, CSV and
TSV row by row, Parquet and `datasets` folders batch by batch through alignpipe.sources, as the stages read them)
and written as they come, so memory stays bounded for inputs larger than RAM. A bad line is one clear `file:line: reason` error; records a command decides to drop go to
a rejects file with the reason, so nothing disappears silently. Outputs are written to a temporary file and renamed
when complete, and an existing output is never overwritten.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from alignpipe.errors import AlignpipeError
from alignpipe.jsonl_reader import BadLine, iter_json_lines, iter_text_lines
from alignpipe.sources import Record, Source, read_rows, resolve_source

# The fields that hold text in our formats (docs/design.md section 3); every other field is carried along untouched.
TEXT_FIELDS = ("text", "prompt", "messages", "chosen", "rejected", "completion")


def iter_records(path: str | Path, bad_lines_to: Rejects | None = None) -> Iterator[Record]:
    """Every record of a supported input, in order. A JSONL line that is not JSON stops with `file:line`, or, when
    `bad_lines_to` is given (--skip-bad-lines), goes there as a reject holding the raw line."""
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
    """JSON lines (gzipped too) and .txt here; every other input through alignpipe.sources, as the stages read it."""
    name = path.name.lower()
    if path.is_file() and name.endswith(".txt"):
        yield from _iter_txt(path, bad_lines_to)
        return
    source = Source("jsonl", str(path)) if path.is_file() and name.endswith(".jsonl.gz") else resolve_source(str(path))
    if source.kind == "jsonl":
        yield from _iter_jsonl(path, bad_lines_to)
    else:
        yield from read_rows(source, fingerprint=False)[0]


def _open_text(path: Path) -> Any:
    return gzip.open(path, "rt", encoding="utf-8") if path.name.endswith(".gz") else path.open(encoding="utf-8")


def _iter_jsonl(path: Path, bad_lines_to: Rejects | None) -> Iterator[Record]:
    yield from _good_lines(path, iter_json_lines(path), bad_lines_to)


def _good_lines(path: Path, lines: Iterator[tuple[int, Any]], bad_lines_to: Rejects | None) -> Iterator[Record]:
    # Bytes decoded line by line (alignpipe.jsonl_reader): invalid UTF-8, runaway lines and deep nesting are bad lines.
    for line_number, value in lines:
        if not isinstance(value, BadLine):
            yield Record(str(path), line_number, value)
        elif bad_lines_to is None:
            raise AlignpipeError(f"{path}:{line_number}: {value.reason}. Fix the line, or pass --skip-bad-lines to "
                                 "send such lines to the rejects file.")
        else:
            bad_lines_to.add(Record(str(path), line_number, value.raw), value.kind, value.reason)


def _iter_txt(path: Path, bad_lines_to: Rejects | None) -> Iterator[Record]:
    """Plain text: one document per non-empty line."""
    lines = ((number, value if isinstance(value, BadLine) else {"text": value})
             for number, value in iter_text_lines(path))
    yield from _good_lines(path, lines, bad_lines_to)


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
