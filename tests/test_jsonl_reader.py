"""The one reader of user data lines: hostile bytes become bad lines with their line number, never a crash."""

from __future__ import annotations

import gzip
import json
import time

import pytest

from alignpipe.errors import AlignpipeError
from alignpipe.jsonl_reader import (DEFAULT_MAX_LINE_BYTES, MAX_DEPTH, BadLine, iter_json_lines, iter_text_lines,
                                    line_limit, max_line_bytes, read_valid_json_lines)

GOOD = b'{"text": "fine"}\n'


def kinds(path) -> list:
    return [(number, value.kind if isinstance(value, BadLine) else value) for number, value in iter_json_lines(path)]


def test_invalid_utf8_spoils_only_its_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD + b'{"text": "caf\xe9"}\n\n' + GOOD)  # BOM, Latin-1 byte, blank line
    rows = list(iter_json_lines(path))
    assert [number for number, _ in rows] == [1, 2, 4]
    assert rows[0][1] == {"text": "fine"} and rows[2][1] == {"text": "fine"}
    bad = rows[1][1]
    assert isinstance(bad, BadLine) and bad.kind == "not_utf8"
    assert "not UTF-8" in bad.reason and "0xe9" in bad.reason and "\\xe9" in bad.raw


def test_a_long_line_is_read_past_quickly_and_never_held(tmp_path):
    path = tmp_path / "long.jsonl"
    path.write_bytes(GOOD + b'{"text": "' + b"x" * 5_000_000 + b'"}\n' + GOOD)
    started = time.perf_counter()
    with line_limit(1000):
        assert max_line_bytes() == 1000
        rows = list(iter_json_lines(path))
    assert time.perf_counter() - started < 5
    assert max_line_bytes() == DEFAULT_MAX_LINE_BYTES  # the limit is back outside the block
    assert [(number, getattr(value, "kind", "ok")) for number, value in rows] == [(1, "ok"), (2, "line_too_long"), (3, "ok")]
    bad = rows[1][1]
    assert "5000012 bytes" in bad.reason and "data.max_line_bytes" in bad.reason and len(bad.raw) < 300
    with line_limit(len(GOOD) - 1):  # exactly the limit (the line break does not count) is allowed
        assert kinds(tmp_path / "long.jsonl")[0] == (1, {"text": "fine"})


def test_deep_nesting_is_a_bad_line_not_a_recursion_error(tmp_path):
    path = tmp_path / "deep.jsonl"
    deepest_allowed = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n" + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "\n"
                    + deepest_allowed + "\n" + '{"messages": [{"role": "user", "content": "hi"}]}\n')
    found = kinds(path)
    assert found[0] == (1, "too_deep") and found[1] == (2, "too_deep")
    assert found[2][0] == 3 and isinstance(found[2][1], list)
    assert found[3] == (4, {"messages": [{"role": "user", "content": "hi"}]})


def test_not_json_gzip_and_text_lines(tmp_path):
    path = tmp_path / "data.jsonl.gz"
    with gzip.open(path, "wb") as out:
        out.write(GOOD + b"{broken\n")
    assert kinds(path) == [(1, {"text": "fine"}), (2, "bad_json")]
    text = tmp_path / "docs.txt"
    text.write_bytes(b"first line\r\n\xff\xfe\nthird\n")
    assert [(n, v if isinstance(v, str) else v.kind) for n, v in iter_text_lines(text)] == [
        (1, "first line"), (2, "not_utf8"), (3, "third")]


def test_paths_that_are_no_data_file(tmp_path):
    with pytest.raises(AlignpipeError, match="is a directory, not a data file"):
        list(iter_json_lines(tmp_path))
    with pytest.raises(AlignpipeError, match="Data file not found"):
        list(iter_json_lines(tmp_path / "missing.jsonl"))
    broken = tmp_path / "broken.jsonl.gz"
    broken.write_bytes(b"not gzip at all")
    with pytest.raises(AlignpipeError, match="cannot be read"):
        list(iter_json_lines(broken))
    with pytest.raises(AlignpipeError, match="at least 1 byte"):
        with line_limit(0):
            pass


def test_strict_reading_names_the_first_bad_line(tmp_path):
    path = tmp_path / "score.jsonl"
    path.write_bytes(GOOD + json.dumps({"text": "ok"}).encode() + b"\n" + b"\x80\n")
    with pytest.raises(AlignpipeError, match=rf"{path}:3: not UTF-8 text"):
        read_valid_json_lines(path)
