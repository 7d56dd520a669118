"""dedup: exact and near duplicates in English and Japanese; the first occurrence and every extra field survive."""

from __future__ import annotations

import json
import random

import pytest

from alignpipe.errors import AlignpipeError
from conftest import write_jsonl
from data_prep.__main__ import main
from data_prep.dedup import NearDuplicateIndex, dedup_file
from synthetic import near_duplicate_corpus


def read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.mark.parametrize("japanese", [False, True], ids=["english", "japanese"])
def test_lightly_edited_copies_collapse_back_to_the_originals(tmp_path, japanese):
    originals, copies = near_duplicate_corpus(300, 2, japanese, seed=3)
    rows = [{"text": text, "original": i} for i, text in enumerate(originals)]
    rows += [{"text": text, "copy_of": i} for text, i in copies]
    assert all(text not in originals for text, _ in copies)  # every copy really was edited
    summary = dedup_file(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl", progress=False)

    kept = read(tmp_path / "out.jsonl")
    assert sorted(r["original"] for r in kept if "original" in r) == list(range(300))  # no original lost
    assert abs(len(kept) - 300) <= 0.03 * 300
    assert summary["near_duplicate_clusters"] >= 0.97 * 300
    rejects = read(tmp_path / "out.rejects.jsonl")
    assert all(r["kind"] == "near_duplicate" and "copy_of" in r["record"] for r in rejects)
    # each removed copy names its own original as the record it duplicates
    assert all(r["reason"].startswith(f"near duplicate of {tmp_path / 'in.jsonl'}:{r['record']['copy_of'] + 1} ")
               for r in rejects)


def test_exact_duplicates_ignore_case_and_spacing_and_keep_the_first(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": "Hello  there"}, {"role": "assistant", "content": "Hi!"}], "id": 1},
        {"messages": [{"role": "user", "content": "hello there"}, {"role": "assistant", "content": "HI!"}], "id": 2},
        {"messages": [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Bye!"}], "id": 3},
        {"text": "ｋｅｔｔｌｅ", "id": 4}, {"text": "kettle", "id": 5}, {"other": "no text", "id": 6},
    ]
    summary = dedup_file(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl", near=False)
    assert [r["id"] for r in read(tmp_path / "out.jsonl")] == [1, 3, 4]
    assert read(tmp_path / "out.jsonl")[0] == rows[0]  # records pass through unchanged
    assert summary["rejected"] == {"exact_duplicate": 2, "no_text": 1}
    reasons = [r["reason"] for r in read(tmp_path / "out.rejects.jsonl")]
    assert reasons[0].endswith("in.jsonl:1") and reasons[1].endswith("in.jsonl:4")


def test_near_dedup_reads_every_turn(tmp_path):
    answer = "Hold the Temp and Power buttons together for ten seconds until the ring light blinks blue."
    rows = [
        {"messages": [{"role": "user", "content": "How do I reset my kettle?"},
                      {"role": "assistant", "content": answer}]},
        {"messages": [{"role": "user", "content": "How do I reset my kettle??"},
                      {"role": "assistant", "content": answer.replace("ten", "10")}]},
        {"messages": [{"role": "user", "content": "What is the warranty on the kettle body and base?"},
                      {"role": "assistant", "content": "The warranty is two years from the date of purchase."}]},
    ]
    dedup_file(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl", exact=False, progress=False)
    assert read(tmp_path / "out.jsonl") == [rows[0], rows[2]]


def test_the_index_separates_unrelated_texts_and_validates_settings():
    index = NearDuplicateIndex(threshold=0.7, ngram=3)
    rng = random.Random(0)
    texts = [" ".join(rng.choice(["tea", "kettle", "water", "boil", "lid", "cup", "steam", "hot"]) for _ in range(30))
             for _ in range(50)]
    for text in texts:
        index.add(index.signature(text))
    assert index.find(index.signature(texts[7]))[0] == 7
    assert index.find(index.signature("A completely different sentence about trains and stations.")) is None
    with pytest.raises(AlignpipeError, match="threshold"):
        NearDuplicateIndex(threshold=1.5, ngram=3)


def test_cli_runs_both_by_default_and_reports(tmp_path, capsys):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "Same text here."}, {"text": "same  TEXT here."},
                                                 {"text": "Same text here!"}, '{"text": broken'])
    assert main(["dedup", str(source), str(tmp_path / "out.jsonl")]) == 2
    assert "in.jsonl:4: not valid JSON" in capsys.readouterr().err
    assert main(["dedup", "--skip-bad-lines", str(source), str(tmp_path / "out.jsonl")]) == 0
    summary = json.loads(capsys.readouterr().out.split("dedup: ", 1)[1])
    assert summary["written"] == 1
    assert summary["rejected"] == {"bad_json": 1, "exact_duplicate": 1, "near_duplicate": 1}
