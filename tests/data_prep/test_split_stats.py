"""split: exact, seeded, disjoint; stats: counts, languages, turns and token lengths with the given tokenizer."""

from __future__ import annotations

import json

import pytest

from alignpipe.errors import AlignpipeError
from conftest import build_tokenizer, support_conversations, write_jsonl
from data_prep.split import split_file
from data_prep.stats import load_stats_tokenizer, stats_file


def ids(path):
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_split_is_exact_seeded_and_disjoint(tmp_path):
    source = write_jsonl(tmp_path / "in.jsonl", [{"text": f"record {i}", "id": i} for i in range(200)])
    summary = split_file(source, tmp_path / "a", eval_fraction=0.05, seed=1)
    train, held_out = ids(tmp_path / "a" / "train.jsonl"), ids(tmp_path / "a" / "eval.jsonl")
    assert summary["eval_records"] == len(held_out) == 10 and len(train) == 190
    assert sorted(train + held_out) == list(range(200)) and train == sorted(train)  # file order kept
    split_file(source, tmp_path / "b", eval_fraction=0.05, seed=1)
    assert ids(tmp_path / "b" / "eval.jsonl") == held_out
    split_file(source, tmp_path / "c", eval_fraction=0.05, seed=2)
    assert ids(tmp_path / "c" / "eval.jsonl") != held_out
    with pytest.raises(AlignpipeError, match="never overwritten"):
        split_file(source, tmp_path / "a", eval_fraction=0.05, seed=1)
    with pytest.raises(AlignpipeError, match="between 0 and 1"):
        split_file(source, tmp_path / "d", eval_fraction=1.5)


def test_stats_counts_turns_languages_and_token_lengths(tmp_path):
    build_tokenizer().save_pretrained(tmp_path / "tokenizer")
    rows = support_conversations(12) + [
        {"text": "Plain text for continued pretraining."},
        {"prompt": [{"role": "user", "content": "保証は？"}], "chosen": [{"role": "assistant", "content": "2年です。"}],
         "rejected": [{"role": "assistant", "content": "知りません。わかりません。"}]},
    ]
    tokenizer, max_length = load_stats_tokenizer(str(tmp_path / "tokenizer"), None)
    summary = stats_file(write_jsonl(tmp_path / "in.jsonl", rows), tmp_path / "stats", tokenizer, max_length=40)

    assert summary["records"] == 14
    assert summary["formats"] == {"conversation": 12, "text": 1, "preference": 1}
    assert summary["languages"] == {"en": 7, "ja": 7}
    assert summary["turns"] == {"0": 1, "1": 1, "2": 8, "3": 4}  # text has no turns; a system message every third
    expected = [len(tokenizer(tokenizer.apply_chat_template(r["messages"], tokenize=False),
                              add_special_tokens=False)["input_ids"]) for r in rows[:12]]
    expected.append(len(tokenizer("Plain text for continued pretraining.", add_special_tokens=False)["input_ids"]))
    pair = rows[13]
    expected.append(len(tokenizer(tokenizer.apply_chat_template(pair["prompt"] + pair["rejected"], tokenize=False),
                                  add_special_tokens=False)["input_ids"]))  # the longer answer counts
    assert summary["tokens"]["total"] == sum(expected) and summary["tokens"]["max"] == max(expected)
    assert summary["tokens"]["over_max_length_40"] == sum(length > 40 for length in expected)
    assert json.loads((tmp_path / "stats" / "stats.json").read_text())["records"] == 14
    assert (tmp_path / "stats" / "stats.png").stat().st_size > 5000
    with pytest.raises(AlignpipeError, match="never overwritten"):
        stats_file(tmp_path / "in.jsonl", tmp_path / "stats", tokenizer)
