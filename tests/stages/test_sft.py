"""SFT on the tiny local model: it trains, learns, records, refuses to overwrite, resumes, generates, exports."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alignpipe import cli

MANIFEST_FIELDS = {
    "stage", "status", "parent", "base_model", "recipe", "metrics", "gate", "forced", "data", "versions",
    "git_commit", "started_at", "finished_at",
}


def run_cli(*argv: str) -> int:
    return cli.main([str(arg) for arg in argv])


def stage_dir_of(tiny_recipe: Path, name: str = "tiny") -> Path:
    return tiny_recipe.parent / "runs" / name / "sft"


@pytest.mark.parametrize("quantization", ["none", "4bit", "8bit"])
def test_sft_trains_and_writes_a_complete_run_directory(tiny_recipe, quantization):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    assert run_cli("sft", tiny_recipe, f"model.quantization={quantization}") == 0

    stage_dir = stage_dir_of(tiny_recipe)
    manifest = json.loads((stage_dir / "manifest.json").read_text())
    assert MANIFEST_FIELDS <= set(manifest)
    assert manifest["status"] == "trained" and manifest["gate"]["verdict"] == "skipped"  # tiny recipes skip the gate
    assert manifest["stage"] == "sft" and manifest["parent"] is None
    assert manifest["recipe"]["model"]["quantization"] == quantization
    assert len(manifest["data"]["train"]["sha256"]) == 64
    metrics = manifest["metrics"]
    assert metrics["global_step"] == 12
    assert math.isfinite(metrics["train_loss"])
    assert metrics["eval_loss"] < metrics["eval_loss_base"]  # it learned the held-out answers
    assert (stage_dir / "loss.png").stat().st_size > 0
    assert not (stage_dir / "checkpoints").exists()
    # Lineage: the exact local weights; and every file readable like the rest (the shard writer's 0600 undone).
    weights = Path(manifest["recipe"]["model"]["base"]) / "model.safetensors"
    assert manifest["base_lineage"]["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    umask = os.umask(0o022)
    os.umask(umask)
    assert {path.stat().st_mode & 0o777 for path in stage_dir.rglob("*") if path.is_file()} == {0o666 & ~umask}

    base = AutoModelForCausalLM.from_pretrained(manifest["recipe"]["model"]["base"])
    model = PeftModel.from_pretrained(base, stage_dir / "adapter")
    assert any("lora_A" in name for name, _ in model.named_parameters())


def test_assistant_only_loss_switch_changes_what_is_learned(tiny_recipe):
    assert run_cli("sft", tiny_recipe, "run.name=full", "sft.assistant_only_loss=false", "train.max_steps=2") == 0
    assert run_cli("sft", tiny_recipe, "run.name=masked", "train.max_steps=2") == 0
    full = json.loads((stage_dir_of(tiny_recipe, "full") / "manifest.json").read_text())["metrics"]
    masked = json.loads((stage_dir_of(tiny_recipe, "masked") / "manifest.json").read_text())["metrics"]
    # Same model, same data: the base loss differs only because different tokens are counted.
    assert full["eval_loss_base"] != pytest.approx(masked["eval_loss_base"])


def test_text_data_for_continued_pretraining(tiny_recipe, tmp_path):
    from conftest import write_jsonl

    text = write_jsonl(tmp_path / "text.jsonl", [{"text": "The K2 kettle boils 1.2 litres."}] * 16)
    assert run_cli("sft", tiny_recipe, f"data.train={text}", f"data.eval={text}", "train.max_steps=4") == 0
    metrics = json.loads((stage_dir_of(tiny_recipe) / "manifest.json").read_text())["metrics"]
    assert metrics["eval_loss"] < metrics["eval_loss_base"]


def test_packing_runs(tiny_recipe):
    assert run_cli("sft", tiny_recipe, "sft.packing=true", "train.max_steps=3") == 0
    assert json.loads((stage_dir_of(tiny_recipe) / "manifest.json").read_text())["status"] == "trained"


def test_finished_run_is_never_overwritten(tiny_recipe, capsys):
    assert run_cli("sft", tiny_recipe, "train.max_steps=2") == 0
    manifest_path = stage_dir_of(tiny_recipe) / "manifest.json"
    before = manifest_path.read_bytes()
    adapter_before = (stage_dir_of(tiny_recipe) / "adapter" / "adapter_model.safetensors").read_bytes()
    capsys.readouterr()

    assert run_cli("sft", tiny_recipe, "train.max_steps=2") == 2
    assert run_cli("sft", tiny_recipe, "train.max_steps=2", "run.resume=false") == 2
    err = capsys.readouterr().err
    assert "finished stage" in err and "never overwritten" in err and "Traceback" not in err
    assert manifest_path.read_bytes() == before
    assert (stage_dir_of(tiny_recipe) / "adapter" / "adapter_model.safetensors").read_bytes() == adapter_before


def test_killed_run_resumes_from_its_last_checkpoint(tiny_recipe, capsys):
    command = [sys.executable, "-m", "alignpipe.cli", "sft", str(tiny_recipe), "train.max_steps=400",
               "train.save_steps=5", "train.batch_size=1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tiny_recipe.parent,
                               env={**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])})
    checkpoints = stage_dir_of(tiny_recipe) / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not list(checkpoints.glob("checkpoint-*/trainer_state.json")):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = sorted(int(path.parent.name.split("-")[1]) for path in checkpoints.glob("checkpoint-*/trainer_state.json"))
    assert saved, "the run was killed before it wrote a checkpoint"
    manifest = json.loads((stage_dir_of(tiny_recipe) / "manifest.json").read_text())
    assert manifest["status"] == "running"  # a killed run cannot say anything else

    # kill -9 left its lock: the next run names the dead holder and resumes only when told to take the lock over.
    assert run_cli("sft", tiny_recipe, "train.max_steps=400", "train.save_steps=5", "train.batch_size=1") == 2
    err = capsys.readouterr().err
    assert f"locked by pid {process.pid}" in err and "no longer running" in err and "--break-lock" in err
    assert run_cli("sft", tiny_recipe, "train.max_steps=400", "train.save_steps=5", "train.batch_size=1",
                   "--break-lock") == 0
    assert f"Resuming {stage_dir_of(tiny_recipe)} from checkpoint-{saved[-1]}" in capsys.readouterr().out
    assert not (stage_dir_of(tiny_recipe) / "alignpipe.lock").exists()  # released at the end
    metrics = json.loads((stage_dir_of(tiny_recipe) / "manifest.json").read_text())["metrics"]
    assert metrics["resumed_from_step"] == saved[-1] > 0
    assert metrics["global_step"] == 400


def test_two_runs_of_one_stage_started_a_second_apart_one_writes_the_other_exits_2(tiny_recipe):
    command = [sys.executable, "-m", "alignpipe.cli", "sft", str(tiny_recipe), "train.max_steps=60",
               "train.batch_size=1", "train.save_steps=20"]
    env = {**os.environ, "PYTHONPATH": str(Path(cli.__file__).parents[1])}
    first = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(1)
    second = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    results = {process.pid: (process.wait(timeout=600), process.stderr.read()) for process in (first, second)}
    assert sorted(code for code, _ in results.values()) == [0, 2], results
    (winner,) = [pid for pid, (code, _) in results.items() if code == 0]
    (loser_err,) = [err for code, err in results.values() if code == 2]
    # The loser met the winner's lock while it trained, or (on a slow machine) its finished stage: never both writing.
    assert f"locked by pid {winner}" in loser_err or "finished stage" in loser_err, loser_err
    assert "Traceback" not in loser_err
    stage_dir = stage_dir_of(tiny_recipe)
    assert sorted(path.name for path in stage_dir.parent.iterdir()) == ["sft"]  # nothing moved aside
    manifest = json.loads((stage_dir / "manifest.json").read_text())
    assert manifest["status"] == "trained" and manifest["metrics"]["global_step"] == 60
    assert not (stage_dir / "alignpipe.lock").exists()


def test_resume_false_moves_an_interrupted_run_aside(tiny_recipe):
    stage_dir = stage_dir_of(tiny_recipe)
    stage_dir.mkdir(parents=True)
    (stage_dir / "manifest.json").write_text(json.dumps({"stage": "sft", "status": "running"}))
    assert run_cli("sft", tiny_recipe, "train.max_steps=2", "run.resume=false") == 0
    aside = [path for path in stage_dir.parent.iterdir() if path.name.startswith("sft.interrupted-")]
    assert len(aside) == 1 and json.loads((aside[0] / "manifest.json").read_text())["status"] == "running"
    assert json.loads((stage_dir / "manifest.json").read_text())["status"] == "trained"


def test_generate_and_export_match_the_adapter_model(tiny_recipe, tmp_path, capsys):
    from transformers import AutoModelForCausalLM

    from alignpipe import models

    assert run_cli("sft", tiny_recipe, "train.max_steps=4") == 0
    stage_dir = stage_dir_of(tiny_recipe)
    capsys.readouterr()
    assert run_cli("generate", stage_dir, "What is the warranty?", "--max-new-tokens", "8") == 0
    assert capsys.readouterr().out.strip()

    out = tmp_path / "exported"
    assert run_cli("export", stage_dir, "--out", out, "--force") == 0
    merged = AutoModelForCausalLM.from_pretrained(out)
    adapter_model, tokenizer = models.load_stage_for_inference(stage_dir)
    ids = tokenizer("How do I reset the kettle?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(merged(ids).logits, adapter_model(ids).logits, atol=1e-4)
    assert (out / "chat_template.jinja").is_file() or "chat_template" in (out / "tokenizer_config.json").read_text()

    assert run_cli("export", stage_dir, "--out", out, "--force") == 2  # never over an existing export
