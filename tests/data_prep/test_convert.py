"""convert: every format and input type, HH-RLHF round trip, rejects, and clear errors for malformed input."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

import pytest

from alignpipe.data import load_records
from alignpipe.errors import AlignpipeError
from conftest import write_jsonl
from data_prep.__main__ import main
from data_prep.convert import convert_file, parse_hh_transcript, render_hh_transcript


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


ALPACA = [
    {"instruction": "Translate to Japanese.", "input": "Good morning", "output": "おはようございます", "id": "a1",
     "meta": {"source": "book", "n": 1}},
    {"instruction": "Say hello.", "input": "", "output": "Hello!", "id": "a2", "meta": {"source": "web", "n": 3}},
    {"instruction": "", "input": "", "output": "orphan answer", "id": "a3"},
]


def test_alpaca_from_every_input_type_gives_the_same_records(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from datasets import Dataset

    rows = ALPACA[:2]  # the same columns in both: Parquet and Arrow have one schema per file
    sources = {
        "jsonl": write_jsonl(tmp_path / "a.jsonl", rows),
        "json": tmp_path / "a.json",
        "gz": tmp_path / "a.jsonl.gz",
        "parquet": tmp_path / "a.parquet",
        "datasets": tmp_path / "saved",
    }
    sources["json"].write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    with gzip.open(sources["gz"], "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    pq.write_table(pa.Table.from_pylist(rows), sources["parquet"])
    Dataset.from_list(rows).save_to_disk(str(sources["datasets"]))

    outputs = {}
    for name, source in sources.items():
        summary = convert_file(source, tmp_path / f"out-{name}.jsonl", "alpaca")
        assert summary["read"] == summary["written"] == 2 and "rejected" not in summary
        outputs[name] = read(tmp_path / f"out-{name}.jsonl")
    assert all(output == outputs["jsonl"] for output in outputs.values())
    first, second = outputs["jsonl"]
    assert first["messages"] == [{"role": "user", "content": "Translate to Japanese.\n\nGood morning"},
                                 {"role": "assistant", "content": "おはようございます"}]
    assert second["id"] == "a2" and second["meta"] == {"source": "web", "n": 3}  # extra fields untouched
    assert load_records(tmp_path / "out-jsonl.jsonl", "sft")  # what sft will accept


def test_alpaca_csv_and_a_rejected_record(tmp_path):
    source = tmp_path / "alpaca.csv"
    with source.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=["instruction", "input", "output", "id"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(ALPACA)
    summary = convert_file(source, tmp_path / "sft.jsonl", "alpaca")
    assert summary["written"] == 2 and summary["rejected"] == {"malformed": 1}
    (reject,) = read(tmp_path / "sft.rejects.jsonl")
    assert reject["line"] == 4 and reject["source"] == str(source)  # the header is line 1
    assert "instruction" in reject["reason"] and reject["record"]["id"] == "a3"


def test_sharegpt_roles_extra_fields_and_unknown_roles(tmp_path):
    rows = [
        {"id": "s1", "conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
                                       {"from": "gpt", "value": "Hello."}, {"from": "human", "value": "Bye"},
                                       {"from": "gpt", "value": "Goodbye."}]},
        {"id": "s2", "conversations": [{"from": "human", "value": "Weather?"}, {"from": "tool", "value": "{}"}]},
        {"id": "s3", "conversations": [{"from": "human", "value": "Only a question"}]},
    ]
    summary = convert_file(write_jsonl(tmp_path / "sg.jsonl", rows), tmp_path / "out.jsonl", "sharegpt")
    (record,) = read(tmp_path / "out.jsonl")
    assert record["id"] == "s1"
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    assert [m["content"] for m in record["messages"]][-1] == "Goodbye."
    assert summary["rejected"] == {"malformed": 2}
    reasons = [reject["reason"] for reject in read(tmp_path / "out.rejects.jsonl")]
    assert "'tool'" in reasons[0] and "no assistant message" in reasons[1]


HH = [
    {   # three turns of prompt; answers with inner newlines and trailing spaces must come back exactly
        "chosen": "\n\nHuman: What is a kettle?\n\nAssistant: A pot for boiling water.\n\nHuman: Is it safe for "
                  "kids?\n\nAssistant: Keep it out of reach:\n- hot water\n- steam  ",
        "rejected": "\n\nHuman: What is a kettle?\n\nAssistant: A pot for boiling water.\n\nHuman: Is it safe for "
                    "kids?\n\nAssistant: Sure, let them play with it.",
        "split": "train",
    },
    {"chosen": "\n\nHuman: お茶の淹れ方は？\n\nAssistant: 80度のお湯で1分蒸らします。",
     "rejected": "\n\nHuman: お茶の淹れ方は？\n\nAssistant: 知りません。"},
    {"chosen": "\n\nHuman: Hi\n\nAssistant: Hello!", "rejected": "\n\nHuman: Hi\n\nAssistant: Hello!"},
    {"chosen": "\n\nHuman: A\n\nAssistant: B", "rejected": "\n\nHuman: C\n\nAssistant: B"},
]


def test_hh_rlhf_keeps_every_turn_and_round_trips_the_final_responses(tmp_path):
    summary = convert_file(write_jsonl(tmp_path / "hh.jsonl", HH), tmp_path / "pairs.jsonl", "hh-rlhf")
    pairs = read(tmp_path / "pairs.jsonl")
    assert len(pairs) == 2 and summary["rejected"] == {"identical_pair": 1, "malformed": 1}
    for source, pair in zip(HH, pairs):
        turns_in_transcript = source["chosen"].count("\n\nHuman:") + source["chosen"].count("\n\nAssistant:")
        assert len(pair["prompt"]) + 1 == turns_in_transcript
        assert render_hh_transcript(pair["prompt"] + pair["chosen"]) == source["chosen"]
        assert render_hh_transcript(pair["prompt"] + pair["rejected"]) == source["rejected"]
        assert source["chosen"].endswith("\n\nAssistant: " + pair["chosen"][0]["content"])
    assert pairs[0]["chosen"][0]["content"] == "Keep it out of reach:\n- hot water\n- steam  "
    assert [m["role"] for m in pairs[0]["prompt"]] == ["user", "assistant", "user"]
    assert pairs[0]["split"] == "train"
    rejects = read(tmp_path / "pairs.rejects.jsonl")
    assert rejects[0]["kind"] == "identical_pair" and rejects[0]["line"] == 3
    assert "differ before their final" in rejects[1]["reason"]
    assert len(load_records(tmp_path / "pairs.jsonl", "pairs")) == 2


def test_hh_transcript_parser_refuses_what_it_cannot_round_trip():
    assert parse_hh_transcript("Human: hi\n\nAssistant: yo") == [{"role": "user", "content": "hi"},
                                                               {"role": "assistant", "content": "yo"}]
    from data_prep.convert import Reject

    with pytest.raises(Reject, match="before the first"):
        parse_hh_transcript("preamble\n\nHuman: hi\n\nAssistant: yo")


def test_pairs_strings_and_messages_with_margin(tmp_path):
    rows = [
        {"prompt": "Warranty?", "chosen": "Two years.", "rejected": "No idea.", "margin": "1.5", "uid": 7},
        {"prompt": [{"role": "user", "content": "保証は？"}], "chosen": [{"role": "assistant", "content": "2年です。"}],
         "rejected": [{"role": "assistant", "content": "知らない。"}], "margin": 0.5},
        {"prompt": "Same?", "chosen": "Yes.", "rejected": "Yes."},
    ]
    summary = convert_file(write_jsonl(tmp_path / "p.jsonl", rows), tmp_path / "out.jsonl", "pairs")
    first, second = read(tmp_path / "out.jsonl")
    assert first == {"prompt": [{"role": "user", "content": "Warranty?"}],
                     "chosen": [{"role": "assistant", "content": "Two years."}],
                     "rejected": [{"role": "assistant", "content": "No idea."}], "margin": 1.5, "uid": 7}
    assert second["chosen"][0]["content"] == "2年です。"
    assert summary["rejected"] == {"identical_pair": 1}


def test_text_from_csv_column_and_txt_lines(tmp_path):
    (tmp_path / "pages.csv").write_text("url,body\nhttp://a,First page.\nhttp://b,\n", encoding="utf-8")
    summary = convert_file(tmp_path / "pages.csv", tmp_path / "t.jsonl", "text", text_field="body")
    assert read(tmp_path / "t.jsonl") == [{"text": "First page.", "url": "http://a"}]
    assert summary["rejected"] == {"malformed": 1}
    (tmp_path / "lines.txt").write_text("one document\n\nanother document\n", encoding="utf-8")
    convert_file(tmp_path / "lines.txt", tmp_path / "l.jsonl", "text")
    assert [r["text"] for r in read(tmp_path / "l.jsonl")] == ["one document", "another document"]


def test_messages_are_checked_with_alignpipe_validators(tmp_path):
    rows = [{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}], "tag": 1},
            {"messages": [{"role": "robot", "content": "?"}]}]
    summary = convert_file(write_jsonl(tmp_path / "m.jsonl", rows), tmp_path / "out.jsonl", "messages")
    assert read(tmp_path / "out.jsonl") == [rows[0]]
    assert "role 'robot'" in read(tmp_path / "out.rejects.jsonl")[0]["reason"] and summary["written"] == 1


def test_bad_json_line_stops_naming_file_and_line_and_leaves_no_output(tmp_path):
    source = write_jsonl(tmp_path / "bad.jsonl", [ALPACA[0], '{"instruction": "x", "output": ', ALPACA[1]])
    with pytest.raises(AlignpipeError, match=r"bad\.jsonl:2: not valid JSON"):
        convert_file(source, tmp_path / "out.jsonl", "alpaca")
    assert list(tmp_path.iterdir()) == [source]  # no partial output, no temporary file

    summary = convert_file(source, tmp_path / "out.jsonl", "alpaca", skip_bad_lines=True)
    assert summary["written"] == 2 and summary["rejected"] == {"bad_json": 1}
    (reject,) = read(tmp_path / "out.rejects.jsonl")
    assert reject["line"] == 2 and reject["record"] == '{"instruction": "x", "output": '


def test_wrong_columns_empty_and_missing_files_are_one_clear_error(tmp_path, capsys):
    sharegpt = write_jsonl(tmp_path / "sg.jsonl", [{"conversations": [{"from": "human", "value": "hi"}]}])
    with pytest.raises(AlignpipeError, match=r"sg\.jsonl:1: --format alpaca needs .*instruction.*Did you mean "
                                             r"--format sharegpt"):
        convert_file(sharegpt, tmp_path / "out.jsonl", "alpaca")
    (tmp_path / "wrong.csv").write_text("question,answer\nq,a\n", encoding="utf-8")
    with pytest.raises(AlignpipeError, match=r"wrong\.csv:2: .*this record has question, answer"):
        convert_file(tmp_path / "wrong.csv", tmp_path / "out.jsonl", "pairs")
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(AlignpipeError, match=r"empty\.jsonl is empty"):
        convert_file(tmp_path / "empty.jsonl", tmp_path / "out.jsonl", "alpaca")
    (tmp_path / "cut.json").write_text('[{"instruction": "a", "output": "b"}, {"instruction": ', encoding="utf-8")
    with pytest.raises(AlignpipeError, match=r"cut\.json:1: not valid JSON after record 1"):
        convert_file(tmp_path / "cut.json", tmp_path / "out.jsonl", "alpaca")

    assert main(["convert", "--format", "alpaca", str(tmp_path / "nowhere.jsonl"), str(tmp_path / "o.jsonl")]) == 2
    error = capsys.readouterr().err
    assert "Input not found" in error and "nowhere.jsonl" in error and "Traceback" not in error


def test_an_existing_output_is_never_overwritten(tmp_path):
    source = write_jsonl(tmp_path / "a.jsonl", ALPACA[:1])
    (tmp_path / "out.jsonl").write_text("precious\n", encoding="utf-8")
    with pytest.raises(AlignpipeError, match="never overwritten"):
        convert_file(source, tmp_path / "out.jsonl", "alpaca")
    assert (tmp_path / "out.jsonl").read_text() == "precious\n"


def test_cli_help_has_examples(capsys):
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    assert "examples:" in capsys.readouterr().out
