"""filter: each quality heuristic, language id, and toxicity through the gate's scorer, with reasons in rejects."""

from __future__ import annotations

import json

import pytest

import alignpipe.gate.toxicity_scorers
from alignpipe.errors import AlignpipeError
from conftest import write_jsonl
from data_prep.filters import FilterSettings, filter_file, learned_output, repetition
from data_prep.text import language


def read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def chat(user: str, answer: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}], **extra}


def test_language_tells_english_from_japanese_without_a_model():
    assert language("How do I reset the kettle? Hold both buttons for ten seconds.") == "en"
    assert language("Yes.") == "en"
    assert language("ケトルをリセットするには、電源ボタンを押してください。") == "ja"
    assert language("K2の保証期間は何年ですか？") == "ja"  # Latin letters inside Japanese
    assert language("我们明天去北京开会。") == "zh"  # kanji without kana
    assert language("Der Wasserkocher ist kaputt und ich möchte ihn zurückgeben, bitte helfen Sie mir.") == "other"


def test_each_quality_check_rejects_with_its_reason(tmp_path):
    good = chat("How long is the warranty?", "The warranty lasts two years from the date of purchase.", id="good")
    rows = [
        good,
        chat("Hi", "Yo", id="short"),
        chat("Tell me", "buy now! " * 3 + "\n" + "\n".join(["click here for deals"] * 6), id="repetitive"),
        chat("Numbers?", "1234 5678 9012 3456 7890 1234 5678 9012 3456", id="digits"),
        chat("Tags?", "#tea #kettle #sale #hot #deal #buy #now great kettle", id="hashtags"),
        chat("Page", "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod.", id="lorem"),
        chat("Was ist das?", "Das ist ein Wasserkocher, und er kocht das Wasser sehr schnell für dich.", id="german"),
        chat("保証期間は？", "保証期間はご購入日から2年間です。", id="japanese"),
    ]
    settings = FilterSettings(min_chars=20, max_chars=500, max_repetition=0.3, min_alpha_ratio=0.5,
                              max_symbol_ratio=0.1, max_boilerplate=0.5, languages=("en", "ja"))
    summary = filter_file(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl", settings)
    assert [r["id"] for r in read(tmp_path / "out.jsonl")] == ["good", "japanese"]
    kinds = {r["record"]["id"]: r["kind"] for r in read(tmp_path / "out.rejects.jsonl")}
    assert kinds == {"short": "too_short", "repetitive": "repetitive", "digits": "few_letters",
                     "hashtags": "symbols", "lorem": "boilerplate", "german": "language"}
    assert summary["languages_read"]["ja"] == 1
    assert "--min-chars 20" in read(tmp_path / "out.rejects.jsonl")[0]["reason"]


def test_repetition_is_per_turn_and_counts_japanese_characters():
    assert repetition("one line\none line\none line\nanother") > 0.5
    assert repetition("A sentence that says something once and only once, with no repeats.") == 0.0
    assert repetition("ありがとうございます。" * 5) > 0.8
    assert repetition("保証期間はご購入日から2年間です。延長保証もございます。") == 0.0


def test_toxicity_scores_what_the_model_would_learn_to_say(tmp_path):
    rows = [
        chat("You are a fucking idiot, answer me", "I'm sorry you're frustrated. How can I help?", id="refusal"),
        chat("What do you think of me?", "You are a fucking idiot and a worthless loser.", id="toxic"),
        chat("私のことどう思う？", "お前は本当にバカでクズだな。死ね。", id="toxic-ja"),
        {"prompt": [{"role": "user", "content": "Be nice"}], "chosen": [{"role": "assistant", "content": "Sure!"}],
         "rejected": [{"role": "assistant", "content": "Shut up, you stupid bitch."}], "id": "pair"},
        {"text": "Fuck you, idiot.", "id": "text"},
    ]
    summary = filter_file(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl",
                          FilterSettings(toxicity_max=0.5))
    assert [r["id"] for r in read(tmp_path / "out.jsonl")] == ["refusal", "pair"]
    assert summary["rejected"] == {"toxic": 3}
    assert all("--toxicity-max 0.5" in r["reason"] for r in read(tmp_path / "out.rejects.jsonl"))
    assert learned_output(rows[3]) == "Sure!"


def test_toxicity_model_goes_to_the_gate_scorer_loader(tmp_path, monkeypatch):
    asked = []

    class Fixed:
        def score(self, texts):
            return [0.9 if "bad" in text else 0.1 for text in texts]

    def fake_loader(model):
        asked.append(model)
        return Fixed()

    monkeypatch.setattr(alignpipe.gate.toxicity_scorers, "load_toxicity_scorer", fake_loader)
    rows = [{"text": "a good line"}, {"text": "a bad line"}]
    filter_file(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl",
                FilterSettings(toxicity_max=0.5, toxicity_model="some/classifier"))
    assert asked == ["some/classifier"] and read(tmp_path / "out.jsonl") == [rows[0]]


def test_no_check_is_an_error_and_non_text_records_are_rejected(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "fine text here"}, {"id": 3}])
    with pytest.raises(AlignpipeError, match="no check chosen"):
        filter_file(source, tmp_path / "out.jsonl", FilterSettings())
    summary = filter_file(source, tmp_path / "out.jsonl", FilterSettings(min_chars=1))
    assert summary["rejected"] == {"no_text": 1}


def test_a_filter_that_keeps_nothing_is_an_error_unless_allowed(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": "An English sentence, plainly."}] * 3)
    with pytest.raises(AlignpipeError, match=r"kept none of the 3 records .*language 3.*--allow-empty"):
        filter_file(source, tmp_path / "out.jsonl", FilterSettings(languages=("xx",)))
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out.rejects.jsonl").exists()
    summary = filter_file(source, tmp_path / "out.jsonl", FilterSettings(languages=("xx",)), allow_empty=True)
    assert summary["written"] == 0 and (tmp_path / "out.jsonl").read_text() == ""
