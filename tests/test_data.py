"""Data loading: per-line errors with file and line, skipping, and the assistant-only loss mask."""

from __future__ import annotations

import pytest
from conftest import write_jsonl

from alignpipe import data, models, sft_tokens
from alignpipe.config import DataConfig
from alignpipe.errors import AlignpipeError

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ("{not json", "not valid JSON"),
        ({"prompt": "no messages here"}, "no 'messages' for the messages layout"),
        ({"messages": [{"role": "robot", "content": "beep"}]}, "role 'robot'"),
        ({"messages": [{"role": "user", "content": "only a question"}]}, "no assistant message"),
        ({"messages": []}, "non-empty list"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, bad_line, expected):
    path = write_jsonl(tmp_path / "train.jsonl", [GOOD, GOOD, bad_line])
    with pytest.raises(AlignpipeError) as error:
        data.load_records(path, "sft", DataConfig(format="messages"))
    assert f"{path}:3:" in str(error.value) and expected in str(error.value)
    assert "data.skip_invalid=true" in str(error.value)


def test_skip_invalid_skips_and_counts(tmp_path, capsys):
    path = write_jsonl(tmp_path / "train.jsonl", [GOOD, "{oops", GOOD, {"text": ""}])
    records = data.load_records(path, "sft", DataConfig(skip_invalid=True, format="messages"))
    assert len(records) == 2
    assert "4 rows read, 2 kept, skipped: {'invalid': 2}" in capsys.readouterr().out


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(AlignpipeError, match="no usable examples"):
        data.load_records(write_jsonl(tmp_path / "empty.jsonl", []), "sft", DataConfig(format="messages"))
    with pytest.raises(AlignpipeError, match="no usable examples"):
        data.load_records(write_jsonl(tmp_path / "bad.jsonl", ["{x"]), "sft", DataConfig(skip_invalid=True,
                                                                                         format="messages"))
    with pytest.raises(AlignpipeError, match="Data file not found: .*missing.jsonl"):
        data.load_records(tmp_path / "missing.jsonl", "sft")


def test_assistant_mask_covers_exactly_the_assistant_turns(tiny_model_dir):
    tokenizer = models.load_tokenizer(str(tiny_model_dir))
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How do I reset the kettle?"},
        {"role": "assistant", "content": "Hold Temp and Power."},
        {"role": "user", "content": "保証期間は？"},
        {"role": "assistant", "content": "2年間です。"},
    ]
    row = sft_tokens.tokenize_sft([{"messages": messages}], tokenizer, assistant_only_loss=True)[0]
    learned = tokenizer.decode([t for t, m in zip(row["input_ids"], row["assistant_masks"]) if m])
    assert learned == "Hold Temp and Power.<|im_end|>\n2年間です。<|im_end|>\n"  # answers and their end-of-turn

    full = sft_tokens.tokenize_sft([{"messages": messages}], tokenizer, assistant_only_loss=False)[0]
    assert "assistant_masks" not in full and full["input_ids"] == row["input_ids"]


def test_text_records_end_with_eos(tiny_model_dir):
    tokenizer = models.load_tokenizer(str(tiny_model_dir))
    row = sft_tokens.tokenize_sft([{"text": "The warranty is two years."}], tokenizer, assistant_only_loss=True)[0]
    assert row["input_ids"][-1] == tokenizer.eos_token_id and "assistant_masks" not in row


def test_eval_fraction_holds_out_a_seeded_split():
    from datasets import Dataset

    records = Dataset.from_list([{"text": str(index)} for index in range(20)])
    train, held_out = data.split_train_eval(records, 0.25, seed=1)
    assert len(held_out) == 5 and len(train) == 15
    assert held_out["text"] == data.split_train_eval(records, 0.25, seed=1)[1]["text"]
    assert not {r["text"] for r in train} & {r["text"] for r in held_out}


def test_long_raw_text_is_cut_into_windows_not_truncated(tiny_model_dir):
    tokenizer = models.load_tokenizer(str(tiny_model_dir))
    text = "The warranty is two years. " * 20
    whole = sft_tokens.tokenize_sft_record({"text": text}, tokenizer, assistant_only_loss=True)["input_ids"]
    windows = sft_tokens.tokenize_sft([{"text": text}, {"text": "Short."}], tokenizer, True, max_length=16)["input_ids"]
    assert len(whole) > 16 and all(len(ids) <= 16 for ids in windows)
    assert [token for ids in windows[:-1] for token in ids] == whole and windows[-1][-1] == tokenizer.eos_token_id  # every token, in order
    chat = sft_tokens.tokenize_sft([GOOD], tokenizer, True, max_length=4)  # conversations are left to the trainer
    assert len(chat) == 1 and len(chat[0]["input_ids"]) > 4


def test_hostile_bytes_in_stage_data_are_bad_lines_and_the_limit_is_a_recipe_key(tmp_path, capsys):
    from alignpipe.config import DataConfig

    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "\xc3\x28"}\n{"text": "' + b"z" * 2000 + b'"}\n{"text": "ok"}\n')
    with pytest.raises(AlignpipeError, match=rf"{path}:2: .*not UTF-8 text"):
        data.load_train_and_eval(DataConfig(train=str(path), eval_fraction=0.0), 0, "sft")
    train, _, _ = data.load_train_and_eval(DataConfig(train=str(path), skip_invalid=True, max_line_bytes=1000,
                                                      eval_fraction=0.0), 0, "sft")
    assert [row["text"] for row in train] == ["ok", "ok"]  # the bad bytes and the runaway line skipped
    train, _, _ = data.load_train_and_eval(DataConfig(train=str(path), skip_invalid=True, eval_fraction=0.0), 0, "sft")
    assert len(train) == 3  # a 2,000-byte line is under the default 1 MB limit
