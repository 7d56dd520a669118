"""Every user error through the real command line: exit code 2, one clear message, no traceback."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from conftest import write_jsonl

from alignpipe import cli, data, models

REPO = Path(__file__).parents[1]


def fails_cleanly(capsys, *argv: str) -> str:
    code = cli.main([str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("alignpipe: error:") and "Traceback" not in err
    return err


def test_unknown_key(capsys, tiny_recipe):
    assert "did you mean train.max_steps?" in fails_cleanly(capsys, "sft", tiny_recipe, "train.max_stepz=3")


def test_wrong_value_type(capsys, tiny_recipe):
    err = fails_cleanly(capsys, "sft", tiny_recipe, "train.max_steps=abc")
    assert "train.max_steps" in err and "valid integer" in err


def test_missing_recipe_file(capsys, tmp_path):
    assert str(tmp_path / "missing.yaml") in fails_cleanly(capsys, "sft", tmp_path / "missing.yaml")


def test_missing_data_file(capsys, tiny_recipe, tmp_path):
    err = fails_cleanly(capsys, "sft", tiny_recipe, f"data.train={tmp_path / 'gone.jsonl'}")
    assert f"Data file not found: {tmp_path / 'gone.jsonl'}" in err


@pytest.mark.parametrize(
    ("line", "expected"),
    [("not json at all", "not valid JSON"), ({"text_": "x"}, "no 'messages' for the messages layout (this row has text_)"),
     ({"messages": [{"role": "bot", "content": "x"}]}, "role 'bot'")],
)
def test_bad_jsonl_line(capsys, tiny_recipe, tmp_path, line, expected):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = write_jsonl(tmp_path / "bad.jsonl", [good, line])
    err = fails_cleanly(capsys, "sft", tiny_recipe, f"data.train={path}")
    assert f"{path}:2:" in err and expected in err
    assert not (tmp_path / "runs").exists()  # failed before creating anything


def test_skip_invalid_trains_on_the_rest(capsys, tiny_recipe, tmp_path):
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path = write_jsonl(tmp_path / "mixed.jsonl", [good] * 8 + ["{broken"])
    assert cli.main(["sft", str(tiny_recipe), f"data.train={path}", "data.skip_invalid=true", "train.max_steps=1"]) == 0
    assert "9 rows read, 8 kept, skipped: {'invalid': 1}" in capsys.readouterr().out


def test_empty_dataset(capsys, tiny_recipe, tmp_path):
    path = write_jsonl(tmp_path / "empty.jsonl", [])
    assert "no usable examples" in fails_cleanly(capsys, "sft", tiny_recipe, f"data.train={path}")


def test_4bit_without_bitsandbytes(capsys, tiny_recipe, monkeypatch):
    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    err = fails_cleanly(capsys, "sft", tiny_recipe, "model.quantization=4bit")
    assert "bitsandbytes" in err and "model.quantization=none" in err


def test_not_a_stage_directory(capsys, tmp_path):
    assert "manifest.json is missing" in fails_cleanly(capsys, "generate", tmp_path, "hello")


def test_dry_run_of_the_real_model_recipe_loads_nothing(capsys, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("--dry-run must not load weights or tokenizers")

    monkeypatch.setattr(models, "load_causal_lm", no_loading)
    monkeypatch.setattr(models, "load_tokenizer", no_loading)
    monkeypatch.chdir(REPO)
    assert cli.main(["sft", "recipes/llama3-8b-qlora-sft.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "base: meta-llama/Meta-Llama-3-8B-Instruct" in out and "optimizer: paged_adamw_8bit" in out
    assert "max_length: 2048" in out and "Dry run" in out


@pytest.mark.parametrize("recipe", ["recipes/ja-domain/cpt.yaml", "recipes/ja-domain/sft.yaml"])
def test_japanese_domain_recipes_validate_offline_with_their_data_in_place(capsys, monkeypatch, recipe):
    # The shipped data is what the recipe says: raw text for step 1, conversations for step 2.
    shipped = "recipes/ja-domain/data/" + ("tea_text.jsonl" if "cpt" in recipe else "tea_qa.jsonl")
    records = data.load_records(REPO / shipped, "sft")
    assert len(records) >= 24 and set(records.column_names) == ({"text"} if "cpt" in recipe else {"messages"})

    def no_loading(*args, **kwargs):
        raise AssertionError("--dry-run must not load weights, tokenizers or data")

    monkeypatch.setattr(models, "load_causal_lm", no_loading)
    monkeypatch.setattr(models, "load_tokenizer", no_loading)
    monkeypatch.setattr(data, "load_split", no_loading)
    monkeypatch.chdir(REPO)
    assert cli.main(["sft", recipe, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "base: llm-jp/llm-jp-3-13b" in out or "base: exported/ja-domain-cpt" in out
    assert "quantization: 4bit" in out and "Dry run" in out
    assert out.count("recipes/ja-domain/data/") >= 2 and "local jsonl" in out  # train and eval, both shipped
    assert cli.main(["plan", recipe, "model.base=llm-jp/llm-jp-3-13b", "--gpu", "rtx4090", "--json"]) == 0
    estimate = json.loads(capsys.readouterr().out)
    assert estimate["fits"] and estimate["peak_memory_gb"] < 20  # the figures written in the recipe


def test_help_explains_the_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sft", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "key=value" in out and "resumes" in out
