"""pipeline: raw file -> train/eval in one command; every problem in the YAML reported at once; shipped files valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignpipe.data import load_records
from alignpipe.errors import AlignpipeError
from conftest import build_tokenizer, write_jsonl
from data_prep.__main__ import main
from data_prep.pipeline import load_pipeline

SHIPPED = sorted(Path(__file__).parents[2].joinpath("recipes", "data").glob("*.yaml"))


def test_raw_alpaca_to_train_and_eval_in_one_command(tmp_path, capsys):
    rows = [{"instruction": f"Question number {i} about the kettle and its {i % 7} buttons?",
             "input": "", "output": f"Answer {i}: press the button {i} times, then mail help@kumo.example.", "id": i}
            for i in range(40)]
    rows.append(dict(rows[3], id=99))  # an exact duplicate
    rows.append({"instruction": "Ask", "input": "", "output": "You are a fucking idiot.", "id": 100})
    rows.append({"instruction": "Bad", "output": ""})
    raw = write_jsonl(tmp_path / "raw.jsonl", rows)
    eval_file = write_jsonl(tmp_path / "bench.jsonl", [{"question": rows[5]["output"] + " and then wait a while"}])
    build_tokenizer().save_pretrained(tmp_path / "tok")
    spec = tmp_path / "pipe.yaml"
    spec.write_text(f"""
input: {raw}
output: {tmp_path / "prepared"}
steps:
  - convert: {{format: alpaca}}
  - pii: {{}}
  - dedup: {{threshold: 0.95}}
  - filter: {{toxicity_max: 0.5, lang: en}}
  - decontaminate: {{against: {eval_file}, ngram: 8}}
  - split: {{eval_fraction: 0.1, seed: 3}}
  - stats: {{tokenizer: {tmp_path / "tok"}}}
""", encoding="utf-8")
    assert main(["pipeline", str(spec)]) == 0
    out = tmp_path / "prepared"
    train, held_out = [[json.loads(line) for line in (out / name).read_text(encoding="utf-8").splitlines()]
                       for name in ("train.jsonl", "eval.jsonl")]
    assert len(load_records(out / "train.jsonl", "sft")) == len(train)  # what sft accepts
    assert len(train) + len(held_out) == 39 and len(held_out) == 4  # 43 - bad - duplicate - toxic - contaminated
    assert all("[EMAIL]" in r["messages"][1]["content"] for r in train)
    assert sorted(r["id"] for r in train + held_out) == sorted(set(range(40)) - {5})
    summary = json.loads((out / "summary.json").read_text())
    assert [step["step"] for step in summary["steps"]] == ["convert", "pii", "dedup", "filter", "decontaminate",
                                                           "split", "stats"]
    assert summary["steps"][-1]["records"] == 35 and (out / "stats" / "stats.png").exists()
    for name, kind in [("01-convert", "malformed"), ("03-dedup", "exact_duplicate"), ("04-filter", "toxic"),
                       ("05-decontaminate", "contaminated")]:
        assert [json.loads(line)["kind"] for line in (out / f"{name}.rejects.jsonl").open()] == [kind]

    assert main(["pipeline", str(spec)]) == 2  # never overwritten
    assert "exists and is not empty" in capsys.readouterr().err


def test_every_problem_in_a_pipeline_file_is_reported_at_once(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text("""
input: raw.jsonl
outptu: prepared
steps:
  - convert: {formt: alpaca}
  - dedupe: {}
  - split: {}
  - pii: {}
""", encoding="utf-8")
    with pytest.raises(AlignpipeError) as error:
        load_pipeline(spec)
    message = str(error.value)
    for expected in ["unknown key 'outptu' (did you mean 'output'?)", "missing 'output'",
                     "unknown option 'formt' (did you mean 'format'?)", "unknown step 'dedupe' (did you mean 'dedup'?)",
                     "only stats may follow split"]:
        assert expected in message


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.name)
def test_shipped_pipelines_are_valid(path):
    spec = load_pipeline(path)
    assert path.read_text().startswith("# ")  # starts with the command that runs it
    assert Path(spec["input"]).exists() or Path(__file__).parents[2].joinpath(spec["input"]).exists()


def test_the_same_functions_run_under_datasets_map(tmp_path):
    """The README's recipe for one big machine: per-record functions in datasets.map/filter, dedup in two passes."""
    import numpy as np
    from datasets import Dataset

    from data_prep.dedup import NearDuplicateIndex
    from data_prep.filters import FilterSettings, quality_problem
    from data_prep.pii import mask_pii
    from data_prep.records import map_text, text_pieces

    rows = [{"messages": [{"role": "user", "content": f"Question {i}: mail me at user{i}@example.com"},
                          {"role": "assistant", "content": "Sure, I will write to you about the kettle warranty."}],
             "id": i} for i in range(6)]
    rows.append({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], "id": 6})
    dataset = Dataset.from_list(rows)
    masked = dataset.map(lambda record: map_text(record, mask_pii))  # LazyRow records, not dicts
    assert masked[0]["messages"][0]["content"] == "Question 0: mail me at [EMAIL]" and masked[0]["id"] == 0
    settings = FilterSettings(min_chars=10)
    kept = masked.filter(lambda record: quality_problem(text_pieces(record), settings) is None)
    assert kept["id"] == [0, 1, 2, 3, 4, 5]

    index = NearDuplicateIndex(threshold=0.7, ngram=3)
    signed = kept.map(lambda record: {"signature": index.signature("\n".join(text_pieces(record)))})
    keep = []
    for signature in signed["signature"]:
        signature = np.asarray(signature, dtype=np.uint32)
        keep.append(index.find(signature) is None)
        if keep[-1]:
            index.add(signature)
    assert keep == [True, False, False, False, False, False]  # "Question 1" ... differ by one digit
