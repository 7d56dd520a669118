"""Stages read data where users keep it (JSON, CSV, TSV, Parquet, `datasets` folders, hub ids) in the layout it
comes in (Alpaca, ShareGPT, HH-RLHF, TRL's), without a conversion step; bad input is one clear message."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import write_jsonl
from datasets import Dataset, DatasetDict

from alignpipe import cli, data
from alignpipe.config import DataConfig
from alignpipe.errors import AlignpipeError

ALPACA = [{"instruction": f"Question {i}?", "input": "" if i % 2 else "context", "output": f"Answer {i}."}
          for i in range(8)]
EXPECTED_FIRST = [{"role": "user", "content": "Question 0?\n\ncontext"}, {"role": "assistant", "content": "Answer 0."}]


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def alpaca_sources(tmp_path: Path) -> dict[str, Path]:
    """The same eight Alpaca rows in every kind of source."""
    paths = {"jsonl": write_jsonl(tmp_path / "a.jsonl", ALPACA), "json": tmp_path / "a.json",
             "json-lines": tmp_path / "lines.json", "parquet": tmp_path / "a.parquet", "csv": tmp_path / "a.csv",
             "tsv": tmp_path / "a.tsv", "saved": tmp_path / "saved", "parquet-folder": tmp_path / "shards"}
    paths["json"].write_text(json.dumps(ALPACA, indent=2), encoding="utf-8")
    paths["json-lines"].write_text("".join(json.dumps(row) + "\n" for row in ALPACA), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(ALPACA), paths["parquet"])
    for name, separator in (("csv", ","), ("tsv", "\t")):
        lines = [separator.join(["instruction", "input", "output"])]
        lines += [separator.join([row["instruction"], row["input"], row["output"]]) for row in ALPACA]
        paths[name].write_text("\n".join(lines) + "\n", encoding="utf-8")
    Dataset.from_list(ALPACA).save_to_disk(str(paths["saved"]))
    paths["parquet-folder"].mkdir()
    for shard in range(2):
        pq.write_table(pa.Table.from_pylist(ALPACA[shard * 4:(shard + 1) * 4]),
                       paths["parquet-folder"] / f"train-{shard:05d}.parquet")
    return paths


def test_every_source_gives_the_same_conversations(tmp_path, capsys):
    for kind, path in alpaca_sources(tmp_path).items():
        records = data.load_records(path, "sft")
        assert len(records) == 8, kind
        assert records[0]["messages"] == EXPECTED_FIRST, kind
        assert records[7]["messages"][0]["content"] == "Question 7?", kind
        assert f"Data: {path}: alpaca layout (detected)" in capsys.readouterr().out, kind


def test_a_datasets_dict_needs_its_split_and_an_empty_split_is_an_error(tmp_path):
    folder = tmp_path / "dd"
    DatasetDict({"train": Dataset.from_list(ALPACA), "test": Dataset.from_list(ALPACA[:2]),
                 "empty": Dataset.from_list(ALPACA).select([])}).save_to_disk(str(folder))
    with pytest.raises(AlignpipeError, match=r"holds several splits \(train, test, empty\); give one: data.split=train"):
        data.load_records(folder, "sft")
    assert len(data.load_records(folder, "sft", DataConfig(split="test"))) == 2
    with pytest.raises(AlignpipeError, match="has no split 'dev'; it has train, test, empty"):
        data.load_records(folder, "sft", DataConfig(split="dev"))
    with pytest.raises(AlignpipeError, match=r"dd:empty holds no usable examples: it is empty"):
        data.load_records(folder, "sft", DataConfig(split="empty"))
    # data.eval from another split of the same folder; the lineage names both.
    config = DataConfig(train=str(folder), split="train", eval=str(folder), eval_split="test")
    train, held_out, lineage = data.load_train_and_eval(config, seed=0, purpose="sft")
    assert (len(train), len(held_out)) == (8, 2)
    assert lineage["train"]["split"] == "train" and lineage["eval"]["split"] == "test"
    assert lineage["train"]["datasets_fingerprint"] and lineage["train"]["kind"] == "datasets"


def test_without_eval_a_seeded_fraction_of_train_is_held_out(tmp_path):
    config = DataConfig(train=str(alpaca_sources(tmp_path)["parquet"]), eval_fraction=0.25)
    train, held_out, lineage = data.load_train_and_eval(config, seed=3, purpose="sft")
    assert (len(train), len(held_out)) == (6, 2)
    again = data.load_train_and_eval(config, seed=3, purpose="sft")[1]
    assert held_out["messages"] == again["messages"]
    assert not {json.dumps(m) for m in train["messages"]} & {json.dumps(m) for m in held_out["messages"]}
    assert lineage["eval"] == {"source": config.train, "held_out_from": "train", "eval_fraction": 0.25, "examples": 2}
    assert lineage["train"]["examples"] == 6 and lineage["train"]["rows_read"] == 8


def test_lineage_records_source_layout_counts_and_fingerprint(tmp_path):
    path = write_jsonl(tmp_path / "sg.jsonl", [
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
        {"conversations": [{"from": "robot", "value": "?"}]},
        {"conversations": [{"from": "human", "value": "保証は？"}, {"from": "gpt", "value": "2年です。"}]},
    ])
    config = DataConfig(train=str(path), skip_invalid=True)
    _, _, lineage = data.load_train_and_eval(config, seed=0, purpose="sft")
    entry = lineage["train"]
    assert entry["layout"] == "sharegpt" and entry["layout_from"] == "detected"
    assert (entry["rows_read"], entry["rows_kept"], entry["rows_skipped"]) == (3, 2, 1)
    assert entry["skipped"] == {"invalid": 1} and entry["sha256"] == data.file_sha256(path)


LAYOUT_ROWS = {
    "messages": ({"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}, "sft",
                 {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}),
    "text": ({"text": "A document."}, "sft", {"text": "A document."}),
    "alpaca": ({"instruction": "Q", "output": "A", "system": "S"}, "sft",
               {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"},
                             {"role": "assistant", "content": "A"}]}),
    "sharegpt": ({"conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}, "sft",
                 {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}),
    "prompt-completion": ({"prompt": "Q", "completion": "A"}, "sft",
                          {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}),
    "preference": ({"prompt": "Q", "chosen": "good", "rejected": "bad"}, "pairs",
                   {"prompt": [{"role": "user", "content": "Q"}], "chosen": [{"role": "assistant", "content": "good"}],
                    "rejected": [{"role": "assistant", "content": "bad"}]}),
    "hh-rlhf": ({"chosen": "\n\nHuman: Q\n\nAssistant: good", "rejected": "\n\nHuman: Q\n\nAssistant: bad"}, "pairs",
                {"prompt": [{"role": "user", "content": "Q"}], "chosen": [{"role": "assistant", "content": "good"}],
                 "rejected": [{"role": "assistant", "content": "bad"}]}),
    "kto": ({"prompt": "Q", "completion": "A", "label": False}, "kto",
            {"prompt": [{"role": "user", "content": "Q"}], "completion": [{"role": "assistant", "content": "A"}],
             "label": False}),
    "prompt": ({"prompt": "Q"}, "prompts", {"prompt": [{"role": "user", "content": "Q"}]}),
}


@pytest.mark.parametrize("layout", list(LAYOUT_ROWS))
def test_every_layout_detected_and_named_gives_our_records(tmp_path, layout):
    row, purpose, expected = LAYOUT_ROWS[layout]
    rows = [row, {**row, "label": True}] if layout == "kto" else [row]  # KTO needs both labels
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    for wanted in ("auto", layout):
        records = data.load_records(path, purpose, DataConfig(format=wanted))
        assert records[0] == expected, wanted
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "d.parquet")  # the same from Parquet's typed columns
    assert data.load_records(tmp_path / "d.parquet", purpose)[0] == expected


def test_kto_and_online_rl_read_pairs_and_conversations(tmp_path):
    pairs = write_jsonl(tmp_path / "p.jsonl", [LAYOUT_ROWS["preference"][0], LAYOUT_ROWS["preference"][0]])
    kto = data.load_records(pairs, "kto")
    assert kto["label"] == [True, False, True, False]
    prompts = data.load_records(pairs, "prompts")  # each prompt once
    assert prompts["prompt"] == [[{"role": "user", "content": "Q"}]]
    chats = write_jsonl(tmp_path / "c.jsonl", [{"messages": [
        {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"},
        {"role": "assistant", "content": "A2"}]}])
    assert [m["content"] for m in data.load_records(chats, "prompts")[0]["prompt"]] == ["Q1", "A1", "Q2"]


def test_columns_map_other_names_and_must_exist(tmp_path):
    path = tmp_path / "q.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "Q", "good": "yes", "bad": "no", "id": 1}]), path)
    config = DataConfig(columns={"prompt": "question", "chosen": "good", "rejected": "bad"})
    assert data.load_records(path, "pairs", config)[0]["chosen"] == [{"role": "assistant", "content": "yes"}]
    with pytest.raises(AlignpipeError, match=r"data.columns names 'answer', but .*q.parquet\[0\] has no such column; "
                                             r"its columns: question, good, bad, id"):
        data.load_records(path, "pairs", DataConfig(columns={"chosen": "answer", "rejected": "bad"}))
    with pytest.raises(AlignpipeError, match="data.columns: good is not a column of any layout"):
        data.load_records(path, "pairs", DataConfig(columns={"good": "chosen"}))


def test_a_parquet_without_the_layouts_columns_names_what_it_found(tmp_path):
    path = tmp_path / "wrong.parquet"
    pq.write_table(pa.Table.from_pylist([{"question": "Q", "answer": "A"}]), path)
    with pytest.raises(AlignpipeError, match=r"wrong.parquet\[0\]: data.format=alpaca needs the column\(s\) "
                                             r"instruction, output; .* has question, answer"):
        data.load_records(path, "sft", DataConfig(format="alpaca"))
    with pytest.raises(AlignpipeError, match=r"cannot tell the layout: a row with the columns question, answer "
                                             r"matches none of .*alpaca \(instruction, output\).*data.columns"):
        data.load_records(path, "sft")


def test_ambiguous_and_mixed_layouts_are_errors(tmp_path):
    both = write_jsonl(tmp_path / "both.jsonl", [{"text": "doc", "messages": LAYOUT_ROWS["messages"][0]["messages"]}])
    with pytest.raises(AlignpipeError, match=r"both.jsonl:1: cannot tell the layout: .* could be messages or text"):
        data.load_records(both, "sft")
    # A row that fits no layout is a bad row, not a detection failure: data.skip_invalid skips it.
    stray = write_jsonl(tmp_path / "stray.jsonl", [{"oops": 1}, ALPACA[0], ALPACA[1]])
    with pytest.raises(AlignpipeError, match=r"stray.jsonl:1: no 'instruction', 'output' for the alpaca layout"):
        data.load_records(stray, "sft")
    assert len(data.load_records(stray, "sft", DataConfig(skip_invalid=True))) == 2
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [ALPACA[0], LAYOUT_ROWS["sharegpt"][0], ALPACA[1]])
    with pytest.raises(AlignpipeError, match=r"mixed.jsonl mixes layouts: .*mixed.jsonl:1 is alpaca; "
                                             r".*mixed.jsonl:2 is sharegpt"):
        data.load_records(mixed, "sft")
    # Past the rows detection reads, a row of another layout is a bad row that says so.
    late = write_jsonl(tmp_path / "late.jsonl", [ALPACA[0]] * data.DETECTION_ROWS + [LAYOUT_ROWS["sharegpt"][0]])
    with pytest.raises(AlignpipeError, match=rf"late.jsonl:{data.DETECTION_ROWS + 1}: no 'instruction', 'output' for "
                                             r"the alpaca layout .*looks like sharegpt \(mixed layouts"):
        data.load_records(late, "sft")
    text_then_chat = write_jsonl(tmp_path / "tc.jsonl", [{"text": "doc"}, LAYOUT_ROWS["messages"][0]])
    with pytest.raises(AlignpipeError, match="mixes layouts"):
        data.load_records(text_then_chat, "sft")


@pytest.mark.parametrize("purpose", ["pairs", "kto", "prompts"])
def test_raw_text_given_to_rm_or_rlhf_is_refused(tmp_path, purpose):
    path = write_jsonl(tmp_path / "docs.jsonl", [{"text": "A document."}])
    with pytest.raises(AlignpipeError, match="text layout .*cannot train on.*Raw text trains the sft stage only"):
        data.load_records(path, purpose)
    with pytest.raises(AlignpipeError, match="data.format=text is a layout this stage cannot train on"):
        data.load_records(path, purpose, DataConfig(format="text"))


def test_bad_rows_are_named_by_line_or_row_and_skipped_alike(tmp_path):
    bad = {"instruction": "", "output": "orphan"}
    rows = [ALPACA[0], bad, ALPACA[1]]
    (tmp_path / "a.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    Dataset.from_list(rows).save_to_disk(str(tmp_path / "saved"))
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(tmp_path / "dd"))
    write_csv(tmp_path / "a.csv", "instruction,output\nQ0,A0\n,orphan\nQ1,A1\n")
    where = {
        write_jsonl(tmp_path / "a.jsonl", rows): "a.jsonl:2",
        tmp_path / "a.json": "a.json:7",  # the line the second element starts on
        tmp_path / "a.csv": "a.csv:3",
        tmp_path / "a.parquet": "a.parquet[1]",
        tmp_path / "saved": "saved[1]",
        tmp_path / "dd": "dd:train[1]",
    }
    for path, expected in where.items():
        with pytest.raises(AlignpipeError, match=re.escape(expected) + r": 'instruction' is missing or empty\. .*"
                                                 r"data.skip_invalid=true"):
            data.load_records(path, "sft", DataConfig(format="alpaca", split="train"))
        kept = data.load_records(path, "sft", DataConfig(format="alpaca", skip_invalid=True, split="train"))
        assert len(kept) == 2, path


def test_csv_quoted_fields_may_span_lines(tmp_path):
    path = write_csv(tmp_path / "multi.csv", 'instruction,output\n"Line one\nline two","Answer,\n""quoted"""\n'
                                             'Q2,\n')
    with pytest.raises(AlignpipeError, match=r"multi.csv:5: 'output' is missing or empty"):
        data.load_records(path, "sft")  # the second row starts on line 5, after a row over lines 2-4
    records = data.load_records(path, "sft", DataConfig(skip_invalid=True))
    assert records[0]["messages"] == [{"role": "user", "content": "Line one\nline two"},
                                      {"role": "assistant", "content": 'Answer,\n"quoted"'}]
    unclosed = write_csv(tmp_path / "unclosed.csv", 'instruction,output\nQ,"never closed\nQ2,A2\n')
    with pytest.raises(AlignpipeError, match=r"unclosed.csv:2: not valid CSV .*must end with a quote"):
        data.load_records(unclosed, "sft")


def test_a_hub_id_without_network_says_how_to_use_a_local_copy(tiny_recipe, monkeypatch, capsys):
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", unreachable)
    with pytest.raises(AlignpipeError, match=r"org/chat is not a local path and the hub cannot be reached .*"
                                             r"save_to_disk\('DIR'\).*data.train=DIR"):
        data.load_records("org/chat", "sft")
    assert cli.main(["sft", str(tiny_recipe), "data.train=org/chat", "data.eval=null"]) == 2
    error = capsys.readouterr().err
    assert "hub cannot be reached" in error and "Traceback" not in error
    with pytest.raises(AlignpipeError, match="Data file not found: .*nothere.parquet"):
        data.load_records("org/nothere.parquet", "sft")  # a file name, not a hub id


def test_a_hub_id_loads_through_datasets_with_split_subset_and_revision(monkeypatch):
    import datasets
    import huggingface_hub

    asked = {}

    class Info:
        sha = "0123abc"

    def fake_load_dataset(path, name=None, split=None, revision=None):
        asked.update(path=path, name=name, split=split, revision=revision)
        return DatasetDict({"train": Dataset.from_list(ALPACA), "test": Dataset.from_list(ALPACA[:3])})[split]

    monkeypatch.setattr(huggingface_hub.HfApi, "dataset_info", lambda self, repo, revision=None, timeout=None: Info())
    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    config = DataConfig(train="org/alpaca-ja", split="test", subset="ja", revision="v1")
    records, _, lineage = data.load_train_and_eval(config, seed=0, purpose="sft")
    assert asked == {"path": "org/alpaca-ja", "name": "ja", "split": "test", "revision": "0123abc"}
    assert len(records) == 3 and records[0]["messages"] == EXPECTED_FIRST
    entry = lineage["train"]
    assert (entry["kind"], entry["source"], entry["split"], entry["subset"]) == ("hub", "org/alpaca-ja", "test", "ja")
    assert entry["revision"] == "v1" and entry["resolved_revision"] == "0123abc" and entry["datasets_fingerprint"]


def test_sft_stage_trains_from_an_alpaca_parquet_and_records_its_lineage(tiny_recipe, tmp_path):
    path = tmp_path / "alpaca.parquet"
    pq.write_table(pa.Table.from_pylist(ALPACA * 2), path)
    assert cli.main(["sft", str(tiny_recipe), f"data.train={path}", "data.format=alpaca", "data.eval=null",
                     "data.eval_fraction=0.25", "train.max_steps=2", "gate.enabled=false"]) == 0
    manifest = json.loads((tiny_recipe.parent / "runs" / "tiny" / "sft" / "manifest.json").read_text())
    assert manifest["status"] in ("trained", "promoted") and manifest["metrics"]["global_step"] == 2
    train = manifest["data"]["train"]
    assert (train["source"], train["kind"], train["layout"], train["layout_from"]) == (str(path), "parquet", "alpaca",
                                                                                       "data.format")
    assert (train["rows_read"], train["rows_kept"], train["examples"]) == (16, 16, 12)
    assert train["sha256"] == data.file_sha256(path)
    assert manifest["data"]["eval"]["held_out_from"] == "train" and manifest["data"]["eval"]["examples"] == 4
