"""Data loading: per-line errors with file and line, skipping, and the assistant-only loss mask."""

from __future__ import annotations

import pytest

from alignpipe import data, models
from alignpipe.errors import AlignpipeError
from conftest import write_jsonl

GOOD = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


@pytest.mark.parametrize(
    ("bad_line", "expected"),
    [
        ("{not json", "not valid JSON"),
        ({"prompt": "no messages here"}, "neither 'messages'"),
        ({"messages": [{"role": "robot", "content": "beep"}]}, "role 'robot'"),
        ({"messages": [{"role": "user", "content": "only a question"}]}, "no assistant message"),
        ({"messages": []}, "non-empty list"),
    ],
)
def test_bad_line_names_file_and_line(tmp_path, bad_line, expected):
    path = write_jsonl(tmp_path / "train.jsonl", [GOOD, GOOD, bad_line])
    with pytest.raises(AlignpipeError) as error:
        data.load_sft_records(path, skip_invalid=False)
    assert f"{path}:3:" in str(error.value) and expected in str(error.value)
    assert "data.skip_invalid=true" in str(error.value)


def test_skip_invalid_skips_and_counts(tmp_path, capsys):
    path = write_jsonl(tmp_path / "train.jsonl", [GOOD, "{oops", GOOD, {"text": ""}])
    records = data.load_sft_records(path, skip_invalid=True)
    assert len(records) == 2
    assert "skipped 2 invalid line(s)" in capsys.readouterr().out


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(AlignpipeError, match="no usable examples"):
        data.load_sft_records(write_jsonl(tmp_path / "empty.jsonl", []), skip_invalid=False)
    with pytest.raises(AlignpipeError, match="no usable examples"):
        data.load_sft_records(write_jsonl(tmp_path / "bad.jsonl", ["{x"]), skip_invalid=True)
    with pytest.raises(AlignpipeError, match="Data file not found: .*missing.jsonl"):
        data.load_sft_records(tmp_path / "missing.jsonl", skip_invalid=False)


def test_assistant_mask_covers_exactly_the_assistant_turns(tiny_model_dir):
    tokenizer = models.load_tokenizer(str(tiny_model_dir))
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "How do I reset the kettle?"},
        {"role": "assistant", "content": "Hold Temp and Power."},
        {"role": "user", "content": "保証期間は？"},
        {"role": "assistant", "content": "2年間です。"},
    ]
    row = data.tokenize_sft([{"messages": messages}], tokenizer, assistant_only_loss=True)[0]
    learned = tokenizer.decode([t for t, m in zip(row["input_ids"], row["assistant_masks"]) if m])
    assert learned == "Hold Temp and Power.<|im_end|>\n2年間です。<|im_end|>\n"  # answers and their end-of-turn

    full = data.tokenize_sft([{"messages": messages}], tokenizer, assistant_only_loss=False)[0]
    assert "assistant_masks" not in full and full["input_ids"] == row["input_ids"]


def test_text_records_end_with_eos(tiny_model_dir):
    tokenizer = models.load_tokenizer(str(tiny_model_dir))
    row = data.tokenize_sft([{"text": "The warranty is two years."}], tokenizer, assistant_only_loss=True)[0]
    assert row["input_ids"][-1] == tokenizer.eos_token_id and "assistant_masks" not in row


def test_eval_fraction_holds_out_a_seeded_split():
    records = [{"text": str(index)} for index in range(20)]
    train, held_out = data.split_train_eval(records, 0.25, seed=1)
    assert len(held_out) == 5 and len(train) == 15
    assert held_out == data.split_train_eval(records, 0.25, seed=1)[1]
    assert not {r["text"] for r in train} & {r["text"] for r in held_out}


def test_the_first_bad_line_is_named_with_how_many_follow(tmp_path):
    path = write_jsonl(tmp_path / "train.jsonl", [GOOD, "{x", GOOD, {"text": ""}, "[1"])
    with pytest.raises(AlignpipeError, match=rf"{path}:2: not valid JSON .*\(2 more invalid line\(s\) in the file\)"):
        data.load_sft_records(path, skip_invalid=False)


def test_hostile_bytes_in_stage_data_are_bad_lines_and_the_limit_is_a_recipe_key(tmp_path, capsys):
    from alignpipe.config import DataConfig

    path = tmp_path / "train.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{"text": "\xc3\x28"}\n{"text": "' + b"z" * 2000 + b'"}\n{"text": "ok"}\n')
    with pytest.raises(AlignpipeError, match=rf"{path}:2: not UTF-8 text"):
        data.load_sft_records(path, skip_invalid=False)
    config = DataConfig(train=str(path), skip_invalid=True, max_line_bytes=1000)
    train, _ = data.load_train_and_eval(config, 0, data.load_sft_records, "text")
    assert train == [{"text": "ok"}, {"text": "ok"}]
    assert "skipped 2 invalid line(s)" in capsys.readouterr().out
    assert data.load_train_and_eval(DataConfig(train=str(path), skip_invalid=True), 0, data.load_sft_records,
                                    "text")[0][1] == {"text": "z" * 2000}  # under the default 1 MB limit


def test_identical_pairs_are_invalid_for_every_preference_loader(tmp_path, capsys):
    pair = {"prompt": "q", "chosen": "good", "rejected": "bad"}
    path = write_jsonl(tmp_path / "pairs.jsonl", [pair, {**pair, "rejected": "good"}, {**pair, "rejected": "good"}])
    for load in (data.load_preference_records, data.load_unpaired_records):
        with pytest.raises(AlignpipeError, match=rf"{path}:2: 'chosen' equals 'rejected'.*1 more invalid"):
            load(path, skip_invalid=False)
    assert len(data.load_preference_records(path, skip_invalid=True)) == 1
    assert [example["label"] for example in data.load_unpaired_records(path, skip_invalid=True)] == [True, False]
    assert "skipped 2 invalid line(s)" in capsys.readouterr().out
