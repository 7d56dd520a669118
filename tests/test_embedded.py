"""The embedded default model and the demo, end to end (slow: minutes on 2 CPU cores; `make test-slow`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignpipe import cli
from alignpipe.embedded import embedded_model_dir

REPO = Path(__file__).parents[1]
pytestmark = pytest.mark.slow


def test_embedded_model_converts_once_and_loads():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = embedded_model_dir()
    assert embedded_model_dir() == path  # cached: the second call converts nothing
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.model_type == "llama" and tokenizer.chat_template
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(135e6, rel=0.05)


def test_demo_sft_short_run(tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    assert cli.main(["sft", "recipes/demo.yaml", "train.max_steps=8", f"run.output_root={tmp_path}"]) == 0
    manifest = json.loads((tmp_path / "demo" / "sft" / "manifest.json").read_text())
    assert manifest["status"] in ("promoted", "blocked") and manifest["base_model"] == "embedded"
    assert (tmp_path / "demo" / "sft" / "gate_report.md").is_file()
    assert manifest["metrics"]["eval_loss"] < manifest["metrics"]["eval_loss_base"]
