"""Export: the merged model and the GGUF file match the adapter model on fixed prompts, on the tiny model (fast)
and on the embedded model (slow); `generate` answers the same from the export as from the run; the model card."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignpipe import cli, export
from alignpipe.errors import AlignpipeError

REPO = Path(__file__).parents[1]


def run_cli(*argv: object) -> int:
    return cli.main([str(arg) for arg in argv])


def checks_of(out: Path) -> dict[str, dict]:
    record = json.loads((out / "alignpipe_export.json").read_text())
    return {check["key"]: check for check in record["checks"]}


def greedy_answer(capsys, model_dir: Path, prompt: str) -> str:
    capsys.readouterr()
    assert run_cli("generate", model_dir, prompt, "--max-new-tokens", "12") == 0
    return capsys.readouterr().out.strip()


@pytest.fixture
def tiny_sft_stage(tiny_recipe) -> Path:
    assert run_cli("sft", tiny_recipe, "train.max_steps=6") == 0
    return tiny_recipe.parent / "runs" / "tiny" / "sft"


def test_tiny_export_merged_and_gguf_match_the_adapter_model(tiny_sft_stage, tmp_path, capsys):
    for quant in ("f16", "q8_0"):
        out = tmp_path / f"export-{quant}"
        assert run_cli("export", tiny_sft_stage, "--out", out, "--format", "gguf", "--quant", quant, "--force") == 0
        printed = capsys.readouterr().out
        assert "OK   merged model (from disk) vs adapter model: max |Δlogit|" in printed
        checks = checks_of(out)
        merged, gguf = checks["merged_vs_adapter"], checks["gguf_vs_merged"]
        assert merged["relative"] <= export.MERGE_TOLERANCE and merged["top1_agreement"] == 1.0
        assert merged["max_abs"] > 0 or merged["relative"] == 0  # a real comparison, not a copy of numbers
        assert gguf["relative"] <= export.GGUF_TOLERANCE[quant]
        assert gguf["tolerance"] == export.GGUF_TOLERANCE[quant]
        assert (out / f"tiny-sft-{quant}.gguf").stat().st_size > 0
        assert (out / "chat_template.jinja").is_file() or "chat_template" in (out / "tokenizer_config.json").read_text()
    # q8_0 rounds harder than f16, and both are near-identical to the merged model on a random tiny model.
    assert checks_of(tmp_path / "export-f16")["gguf_vs_merged"]["relative"] < checks_of(tmp_path / "export-q8_0")["gguf_vs_merged"]["relative"]

    card = (tmp_path / "export-f16" / "README.md").read_text()
    assert "| sft | " in card and "eval_loss" in card and "trained" in card and "skipped" in card  # gate verdict
    assert "Exported with --force: the gate did not promote this stage" in card  # tiny recipes skip the gate
    assert "sha256" in card and "Intended use" in card and "Licence" in card and "tiny-sft-f16.gguf" in card
    from huggingface_hub import ModelCard  # the Hub's metadata, as front matter the Hub parses

    metadata = ModelCard.load(tmp_path / "export-f16" / "README.md").data
    assert metadata.base_model is None  # a local base: nothing on the Hub to link
    assert "alignpipe" in metadata.tags and metadata.language == ["en", "ja"]
    assert metadata.alignpipe_gate[-1]["status"] == "trained" and metadata.alignpipe_gate[-1]["verdict"] == "skipped"

    # The GGUF metadata carries the chat template and the special tokens.
    from gguf import GGUFReader

    reader = GGUFReader(str(tmp_path / "export-f16" / "tiny-sft-f16.gguf"))
    assert "<|im_start|>" in reader.fields["tokenizer.chat_template"].contents()
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    assert tokens[reader.fields["tokenizer.ggml.eos_token_id"].contents()] == "<|im_end|>"

    assert run_cli("export", tiny_sft_stage, "--out", tmp_path / "export-f16", "--force") == 2  # never over an export


def test_generate_gives_the_same_greedy_answer_from_the_export_and_the_run(tiny_sft_stage, tmp_path, capsys):
    out = tmp_path / "merged"
    assert run_cli("export", tiny_sft_stage, "--out", out, "--force") == 0
    for prompt in ("What is the warranty?", "保証期間は？"):
        from_run = greedy_answer(capsys, tiny_sft_stage, prompt)
        assert from_run and greedy_answer(capsys, out, prompt) == from_run


def test_4bit_run_merges_into_its_dequantized_base_and_reports_the_difference(tiny_recipe, tmp_path, capsys):
    assert run_cli("sft", tiny_recipe, "train.max_steps=4", "model.quantization=4bit") == 0
    out = tmp_path / "merged-4bit"
    assert run_cli("export", tiny_recipe.parent / "runs" / "tiny" / "sft", "--out", out, "--force") == 0
    assert "measured only" in capsys.readouterr().out
    checks = checks_of(out)
    assert checks["merged_vs_adapter"]["relative"] <= export.MERGE_TOLERANCE
    quantized = checks["merged_vs_quantized_adapter"]
    # Merged into the dequantized NF4 weights it was trained against: only bf16-vs-float32 compute differs. (Merged
    # into the original weights instead, this tiny run agreed on 92% of next tokens, the embedded model on 63%.)
    assert quantized["tolerance"] is None and 0 < quantized["relative"] < 0.05
    assert quantized["top1_agreement"] >= 0.97
    assert "4bit" in (out / "README.md").read_text()


def test_a_failed_parity_check_exports_nothing(tiny_sft_stage, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(export, "compare_logits", _with_offset(export.compare_logits))
    out = tmp_path / "never"
    assert run_cli("export", tiny_sft_stage, "--out", out, "--force") == 2
    assert "Export parity check failed" in capsys.readouterr().err
    assert not out.exists() and not list(tmp_path.glob(".never.exporting-*"))


def test_staging_folders_of_killed_exports_are_removed_and_named_live_ones_kept(tmp_path, capsys):
    import os
    import socket
    import subprocess
    import sys

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    host = socket.gethostname()
    killed = tmp_path / f".demo.exporting-{gone.pid}@{host}-abc_1234"
    live = tmp_path / f".other.exporting-{os.getpid()}@{host}-xyz_9876"
    foreign = tmp_path / ".third.exporting-17@another-host-qqq_0000"
    for folder in (killed, live, foreign):
        folder.mkdir()
        (folder / "model.safetensors").write_bytes(b"x" * 2**20)
    assert export.remove_interrupted_exports(tmp_path) == [killed]
    out = capsys.readouterr().out
    assert f"Removed {killed}: an interrupted export's staging folder (1 MiB; its process {gone.pid} is gone)" in out
    assert f"left {live} alone" in out and "its export is running" in out and "on another host" in out
    assert not killed.exists() and live.exists() and foreign.exists()


def _with_offset(compare):
    def shifted(key, name, reference, other, tolerance):
        return compare(key, name, reference, [logits + 1e-3 for logits in other], tolerance)

    return shifted


def test_gguf_for_other_architectures_is_not_supported_yet(tmp_path, capsys):
    from transformers import Qwen2Config

    base = tmp_path / "qwen"
    Qwen2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64).save_pretrained(base)
    manifest = {"recipe": {"model": {"base": str(base)}}}
    with pytest.raises(AlignpipeError, match="not supported yet for qwen2"):
        export.refuse_unsupported_gguf(tmp_path, manifest)


@pytest.mark.slow
def test_embedded_model_export_parity(tmp_path, monkeypatch, capsys):
    """A short sft run on SmolLM2-135M in full precision (so that `generate` on the run and on the export run the
    same weights; a 4-bit run is compared in the export record instead), exported as merged, GGUF f16 and q8_0."""
    monkeypatch.chdir(REPO)
    assert run_cli("sft", "recipes/demo.yaml", "train.max_steps=3", "gate.enabled=false", "data.eval=null",
                   "model.quantization=none",
                   f"run.output_root={tmp_path}") == 0
    stage_dir = tmp_path / "demo" / "sft"
    for quant in ("f16", "q8_0"):
        out = tmp_path / f"export-{quant}"
        assert run_cli("export", stage_dir, "--out", out, "--format", "gguf", "--quant", quant, "--force") == 0
        checks = checks_of(out)
        assert checks["merged_vs_adapter"]["relative"] <= export.MERGE_TOLERANCE
        assert checks["gguf_vs_merged"]["relative"] <= export.GGUF_TOLERANCE[quant]
        assert checks["gguf_vs_merged"]["top1_agreement"] >= 0.9
    capsys.readouterr()
    prompt = "How do I reset my Kumo K2?"
    assert greedy_answer(capsys, tmp_path / "export-f16", prompt) == greedy_answer(capsys, stage_dir, prompt)
