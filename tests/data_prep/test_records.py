"""Every command: a bad JSON line and an empty file are one clear `file:line` error, exit code 2, and leave nothing."""

from __future__ import annotations

import json

import pytest

from conftest import build_tokenizer, write_jsonl
from data_prep.__main__ import main
from data_prep.records import iter_records, map_text, record_text

GOOD = {"messages": [{"role": "user", "content": "What is the warranty?"},
                     {"role": "assistant", "content": "Two years."}]}


def command_line(command: str, source, tmp_path, tokenizer_dir) -> list[str]:
    out = str(tmp_path / "out" / "o.jsonl")
    return {
        "convert": ["convert", "--format", "messages", str(source), out],
        "dedup": ["dedup", str(source), out],
        "filter": ["filter", "--min-chars", "5", str(source), out],
        "pii": ["pii", str(source), out],
        "decontaminate": ["decontaminate", str(source), out, "--against", str(tmp_path / "eval.jsonl")],
        "split": ["split", str(source), str(tmp_path / "out")],
        "stats": ["stats", "--tokenizer", str(tokenizer_dir), str(source), str(tmp_path / "out")],
    }[command]


COMMANDS = ["convert", "dedup", "filter", "pii", "decontaminate", "split", "stats"]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer().save_pretrained(path)
    return path


@pytest.fixture
def prepared(tmp_path):
    write_jsonl(tmp_path / "eval.jsonl", [{"text": "An evaluation question with more than thirteen words in it, "
                                                   "so that it can be checked at all."}])
    return tmp_path


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_json_line_is_named_with_its_line(prepared, tokenizer_dir, command, capsys):
    source = write_jsonl(prepared / "bad.jsonl", [GOOD, GOOD, "{'single': 'quotes'}"])
    assert main(command_line(command, source, prepared, tokenizer_dir)) == 2
    error = capsys.readouterr().err
    assert f"{source}:3: not valid JSON" in error and "Traceback" not in error
    assert not (prepared / "out").exists() or not any((prepared / "out").iterdir())


@pytest.mark.parametrize("command", COMMANDS)
def test_empty_and_missing_files_are_clear_errors(prepared, tokenizer_dir, command, capsys):
    empty = prepared / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    assert main(command_line(command, empty, prepared, tokenizer_dir)) == 2
    assert f"{empty} is empty" in capsys.readouterr().err
    assert main(command_line(command, prepared / "missing.jsonl", prepared, tokenizer_dir)) == 2
    assert "not found" in capsys.readouterr().err


def test_unsupported_input_and_datasets_folder_with_splits(tmp_path):
    from datasets import Dataset, DatasetDict

    (tmp_path / "data.xml").write_text("<a/>", encoding="utf-8")
    with pytest.raises(Exception, match="unsupported input type"):
        list(iter_records(tmp_path / "data.xml"))
    DatasetDict({"train": Dataset.from_list([GOOD]), "test": Dataset.from_list([GOOD])}).save_to_disk(
        str(tmp_path / "dd"))
    with pytest.raises(Exception, match="several splits.*give one"):
        list(iter_records(tmp_path / "dd"))
    assert [record.data["messages"] for record in iter_records(tmp_path / "dd" / "train")] == [GOOD["messages"]]


def test_record_text_and_map_text_cover_every_turn_and_keep_other_fields():
    record = {"prompt": [{"role": "user", "content": "Q", "name": "x"}], "chosen": "A", "rejected": [
        {"role": "assistant", "content": "B"}], "source": "Q"}
    assert record_text(record) == "Q\nA\nB"
    changed = map_text(record, str.lower)
    assert changed == {"prompt": [{"role": "user", "content": "q", "name": "x"}], "chosen": "a",
                       "rejected": [{"role": "assistant", "content": "b"}], "source": "Q"}
    assert record["chosen"] == "A"  # the input is not modified


SKIPPING = ["convert", "dedup", "filter", "pii", "decontaminate"]  # the commands with --skip-bad-lines


@pytest.mark.parametrize("command", COMMANDS)
def test_hostile_bytes_are_a_bad_line_named_with_its_line(prepared, tokenizer_dir, command, capsys):
    good = json.dumps(GOOD).encode() + b"\n"
    source = prepared / "hostile.jsonl"
    source.write_bytes(good + b'{"text": "caf\xe9"}\n' + b"[" * 50_000 + b"]" * 50_000 + b"\n" + good)
    assert main(command_line(command, source, prepared, tokenizer_dir)) == 2
    error = capsys.readouterr().err
    assert f"{source}:2: not UTF-8 text" in error and "Traceback" not in error
    assert not (prepared / "out").exists()
    if command not in SKIPPING:
        return
    assert main(command_line(command, source, prepared, tokenizer_dir)[:1] + ["--skip-bad-lines"]
                + command_line(command, source, prepared, tokenizer_dir)[1:]) == 0
    rejects = [json.loads(line) for line in (prepared / "out" / "o.rejects.jsonl").read_text().splitlines()]
    assert [(reject["line"], reject["kind"]) for reject in rejects][:2] == [(2, "not_utf8"), (3, "too_deep")]
    assert rejects[0]["record"] == '{"text": "caf\\xe9"}'  # the raw line, printable


def test_an_over_long_line_is_rejected_before_anything_reads_it(tmp_path):
    from alignpipe.jsonl_reader import line_limit
    from data_prep.records import Rejects

    source = tmp_path / "long.jsonl"
    source.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"text": "' + b"y" * 3_000_000 + b'"}\n')
    rejects = Rejects(tmp_path / "rejects.jsonl")
    with line_limit(10_000):
        records = list(iter_records(source, rejects))
    rejects.close()
    assert len(records) == 1 and rejects.counts == {"line_too_long": 1}
    (reject,) = [json.loads(line) for line in (tmp_path / "rejects.jsonl").read_text().splitlines()]
    assert "3000012 bytes" in reject["reason"] and len(reject["record"]) < 300
    assert main(["pii", "--max-line-bytes", "100", str(source), str(tmp_path / "out.jsonl")]) == 2


def test_text_csv_and_json_inputs_with_bad_bytes_are_clear_errors(tmp_path, capsys):
    (tmp_path / "docs.txt").write_bytes(b"a document\n\xff bad\n")
    (tmp_path / "table.csv").write_bytes(b"text\nfine\n\xff bad\n")
    (tmp_path / "array.json").write_bytes(b'[{"text": "\xff"}]')
    for name, expected in (("docs.txt", "docs.txt:2: not UTF-8"), ("table.csv", "table.csv:3: not UTF-8 text"),
                           ("array.json", "array.json: not UTF-8 text")):
        assert main(["pii", str(tmp_path / name), str(tmp_path / f"{name}.out.jsonl")]) == 2
        error = capsys.readouterr().err
        assert expected in error and "Traceback" not in error, error
