"""Read lines of user data safely: bytes in, each line decoded, checked and parsed on its own.

Every reader of user data calls this one (stage data in `data.py`, `alignpipe score`, `data_prep`), so hostile bytes
get one treatment everywhere, and each problem spoils only its own line (an error naming file:line, or a counted
skip with `data.skip_invalid` / `--skip-bad-lines`):
- invalid UTF-8 is a bad line, not a UnicodeDecodeError for the whole file;
- a line longer than the limit (`data.max_line_bytes` in a recipe, `--max-line-bytes` for `score` and `data_prep`;
  default 1 MB) is a bad line. It is read past in chunks, never held whole, and never reaches the tokenizer: a
  50 MB line once took minutes to tokenize before `train.max_length` applied (issue 21);
- JSON nested deeper than MAX_DEPTH levels is a bad line, not a RecursionError (our formats need 4 levels).
"""

from __future__ import annotations

import contextlib
import contextvars
import gzip
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

from alignpipe.errors import AlignpipeError

DEFAULT_MAX_LINE_BYTES = 1_000_000
MAX_DEPTH = 64  # a conversation is 4 deep ({"messages": [{"content": ...}]}); 64 leaves room for metadata
_CHUNK = 1 << 20
_RAW_SHOWN = 200  # bytes of an over-long line kept for a rejects file

# The limit for the readers called inside `line_limit(...)`: set once per command, not passed through every loader.
_max_line_bytes: contextvars.ContextVar[int] = contextvars.ContextVar("max_line_bytes", default=DEFAULT_MAX_LINE_BYTES)


class BadLine:
    """A line that is not a usable value: `kind` (not_utf8, line_too_long, too_deep, bad_json), `reason` for the
    user, and `raw`, the line as printable text for a rejects file (only its start when it is over-long)."""

    __slots__ = ("kind", "reason", "raw")

    def __init__(self, kind: str, reason: str, raw: str) -> None:
        self.kind, self.reason, self.raw = kind, reason, raw


@contextlib.contextmanager
def line_limit(max_line_bytes: int) -> Iterator[None]:
    """Readers inside this block refuse lines longer than `max_line_bytes` bytes."""
    if max_line_bytes < 1:
        raise AlignpipeError(f"The line length limit must be at least 1 byte, not {max_line_bytes}.")
    token = _max_line_bytes.set(max_line_bytes)
    try:
        yield
    finally:
        _max_line_bytes.reset(token)


def max_line_bytes() -> int:
    """The limit in force here (see line_limit)."""
    return _max_line_bytes.get()


def check_data_file(path: Path, what: str = "Data file") -> None:
    if path.is_dir():
        raise AlignpipeError(f"{path} is a directory, not a data file; give the path of a JSONL file in it.")
    if not path.is_file():
        raise AlignpipeError(f"{what} not found: {path}")


def iter_json_lines(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON value or BadLine) for every non-blank line of a JSONL file (.gz read as gzip)."""
    for line_number, text in iter_text_lines(path):
        yield line_number, text if isinstance(text, BadLine) else parse_json_line(text)


def iter_text_lines(path: str | Path) -> Iterator[tuple[int, str | BadLine]]:
    """(line number, decoded text without its line break, or BadLine) for every non-blank line."""
    path = Path(path)
    check_data_file(path)
    limit = _max_line_bytes.get()
    try:
        with (gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")) as handle:
            line_number = 0
            while True:
                chunk = handle.readline(limit + 1)
                if not chunk:
                    return
                line_number += 1
                if len(chunk) > limit and not chunk.endswith(b"\n"):
                    length = len(chunk) + _skip_rest_of_line(handle)
                    yield line_number, BadLine(
                        "line_too_long", f"line of {length} bytes, longer than the limit of {limit} bytes (raise "
                        "data.max_line_bytes, or --max-line-bytes, if such lines are real data)", _shown(chunk))
                    continue
                line = chunk.rstrip(b"\r\n")
                if line_number == 1 and line.startswith(b"\xef\xbb\xbf"):
                    line = line[3:]  # a UTF-8 byte-order mark, as some editors write
                if not line.strip():
                    continue
                try:
                    yield line_number, line.decode("utf-8")
                except UnicodeDecodeError as error:
                    reason = f"not UTF-8 text (byte 0x{line[error.start]:02x} at byte {error.start + 1} of the line)"
                    yield line_number, BadLine("not_utf8", reason, line.decode("utf-8", "backslashreplace"))
    except (OSError, EOFError) as error:  # gzip.BadGzipFile is an OSError; a truncated gzip is an EOFError
        raise AlignpipeError(f"{path}: cannot be read ({error}).") from None


def parse_json_line(text: str) -> Any:
    """The JSON value of one line, or a BadLine saying why it is not one."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        return BadLine("bad_json", f"not valid JSON ({error.msg}, column {error.colno})", text)
    except RecursionError:
        return BadLine("too_deep", f"JSON nested deeper than {MAX_DEPTH} levels", text)
    if nested_too_deeply(value):
        return BadLine("too_deep", f"JSON nested deeper than {MAX_DEPTH} levels", text)
    return value


def read_valid_json_lines(path: str | Path) -> list[tuple[int, Any]]:
    """Every line parsed, for commands that take no bad line (`alignpipe score`): the first one is a file:line error."""
    rows = list(iter_json_lines(path))
    for line_number, value in rows:
        if isinstance(value, BadLine):
            raise AlignpipeError(f"{path}:{line_number}: {value.reason}.")
    return rows


def nested_too_deeply(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether containers nest deeper than `limit`, walked with a stack (no recursion, stops at the first)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def first_undecodable_line(path: Path) -> int | None:
    """The number of the first line that is not UTF-8, for readers that decode whole blocks (csv): their error
    knows only a position in the block."""
    with path.open("rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                return line_number
    return None


def _skip_rest_of_line(handle: BinaryIO) -> int:
    """Read to the end of the line in bounded chunks; return how many bytes it had, its line break left out."""
    skipped = 0
    while True:
        chunk = handle.readline(_CHUNK)
        skipped += len(chunk.rstrip(b"\r\n"))
        if not chunk or chunk.endswith(b"\n"):
            return skipped


def _shown(line: bytes) -> str:
    """The start of an over-long line, printable, for the rejects file (never the whole line)."""
    return line[:_RAW_SHOWN].decode("utf-8", "backslashreplace") + "..."
