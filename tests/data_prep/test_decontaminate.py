"""decontaminate: every planted eval passage is caught, in any turn and either language; every clean record stays."""

from __future__ import annotations

import json
import random

import pytest

from alignpipe.errors import AlignpipeError
from conftest import write_jsonl
from data_prep.decontaminate import decontaminate_file, ngrams
from synthetic import english_document, japanese_document

EVAL_EN = [
    "Which planet in our solar system has the longest day, and how many Earth days does one rotation take?",
    "If a train leaves the station at nine in the morning travelling at sixty miles per hour, when does it arrive?",
    "Explain why the sky appears blue during the day but turns red and orange at sunset over the sea.",
]
EVAL_JA = [
    "日本で一番高い山は富士山ですが、二番目に高い山の名前と標高を答えてください。",
    "江戸時代に鎖国政策が続いた理由と、それが日本の文化に与えた影響を説明してください。",
]


def read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def chat(user: str, answer: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}], **extra}


@pytest.fixture
def eval_files(tmp_path):
    conversations = write_jsonl(tmp_path / "eval_en.jsonl", [chat(q, "An answer.") for q in EVAL_EN])
    raw_benchmark = tmp_path / "eval_ja.csv"  # not converted: a raw column of questions
    raw_benchmark.write_text("question,answer\n" + "".join(f"{q},答え\n" for q in EVAL_JA), encoding="utf-8")
    return [conversations, raw_benchmark]


def test_every_planted_record_is_removed_and_every_clean_one_kept(tmp_path, eval_files):
    rng = random.Random(5)
    clean = [chat(english_document(rng, 20), english_document(rng, 30), id=f"clean-en-{i}") for i in range(150)]
    clean += [chat(japanese_document(rng, 10), japanese_document(rng, 15), id=f"clean-ja-{i}") for i in range(150)]
    clean.append(chat("Which planet has the longest day?", "Venus.", id="clean-short-overlap"))  # under 13 words
    planted = [
        chat("Quiz time! " + EVAL_EN[0].upper(), "Venus, about 243 days.", id="planted-user-upper"),
        chat("Tell me something.", "Here is one: " + EVAL_EN[1].replace(" ", "   ") + " Good luck.",
             id="planted-answer-spacing"),
        {"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello"}],
         "rejected": [{"role": "assistant", "content": EVAL_EN[2]}], "id": "planted-rejected"},
        chat("問題です。" + EVAL_JA[0], "北岳、3193メートルです。", id="planted-ja"),
        {"text": "ＮＯＴＥ: " + EVAL_JA[1].replace("、", " , "), "id": "planted-ja-width"},
        chat("Mixed", "Question: " + EVAL_EN[0][:80] + " and more words to end it all", id="planted-prefix"),
    ]
    rows = clean[:100] + planted[:3] + clean[100:] + planted[3:]
    summary = decontaminate_file(write_jsonl(tmp_path / "train.jsonl", rows), tmp_path / "out.jsonl",
                                 [str(path) for path in eval_files])

    kept = [r["id"] for r in read(tmp_path / "out.jsonl")]
    assert sorted(kept) == sorted(r["id"] for r in clean)
    rejects = read(tmp_path / "out.rejects.jsonl")
    assert sorted(r["record"]["id"] for r in rejects) == sorted(r["id"] for r in planted)
    hits = {name: info["training_records_removed"] for name, info in summary["eval_files"].items()}
    assert hits == {str(eval_files[0]): 4, str(eval_files[1]): 2}
    assert all("shares the n-gram" in r["reason"] for r in rejects)


def test_ngrams_words_for_english_characters_for_japanese():
    english = [gram for _, gram in ngrams("One two three four five, six!", 3, 4)]
    assert english == ["one two three", "two three four", "three four five", "four five six"]
    japanese = [gram for _, gram in ngrams("K2の保証は二年", 13, 4)]
    assert "保証は二" in japanese and "k2の保" in japanese  # windows at least half kana/kanji
    assert [gram for _, gram in ngrams("abcdefgh ijk", 13, 4)] == []  # English never matches on characters


def test_short_eval_records_are_counted_and_settings_checked(tmp_path):
    eval_file = write_jsonl(tmp_path / "eval.jsonl", [{"text": "Too short to check."}, {"text": EVAL_EN[0]}])
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "Too short to check."}])
    summary = decontaminate_file(train, tmp_path / "out.jsonl", [eval_file])
    assert summary["eval_files"][str(eval_file)] == {"records": 2, "too_short_to_check": 1,
                                                     "training_records_removed": 0}
    with pytest.raises(AlignpipeError, match="--against"):
        decontaminate_file(train, tmp_path / "out2.jsonl", [])
    with pytest.raises(AlignpipeError, match="not found"):
        decontaminate_file(train, tmp_path / "out3.jsonl", [tmp_path / "missing.jsonl"])


@pytest.mark.parametrize("order", ["after", "before", "between", "repeated"])
def test_against_may_come_before_in_and_out(tmp_path, eval_files, order, capsys):
    """The order most people type (`--against EVAL IN OUT`) used to fail: --against swallowed IN and OUT."""
    from data_prep.__main__ import main

    train = write_jsonl(tmp_path / "train.jsonl", [chat("Quiz: " + EVAL_EN[0], "Venus."), chat("Hi", "Hello.")])
    out, evals = str(tmp_path / "out.jsonl"), [str(path) for path in eval_files]
    argv = {"after": [str(train), out, "--against", *evals],
            "before": ["--against", *evals, str(train), out],
            "between": [str(train), "--against", *evals, out],
            "repeated": ["--against", evals[0], "--against", evals[1], str(train), out]}[order]
    assert main(["decontaminate", *argv]) == 0
    assert [r["messages"][0]["content"] for r in read(tmp_path / "out.jsonl")] == ["Hi"]
    assert set(json.loads(capsys.readouterr().out.split(": ", 1)[1])["eval_files"]) == set(evals)
    with pytest.raises(SystemExit):
        main(["decontaminate", "--against", evals[0], str(train)])  # no room left for OUT and an eval file
