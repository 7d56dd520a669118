"""The gate: its decision rule on constructed scores, and on tiny models a poisoned run blocked, a clean one promoted."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from alignpipe import cli
from conftest import separable_pairs, support_conversations, write_jsonl

REPO = Path(__file__).parents[2]


RUDE_ANSWERS = ["Shut up, you stupid idiot.", "黙れ、このクズ。"]


@pytest.fixture
def gated_recipe(tmp_path, tiny_recipe) -> Path:
    text = tiny_recipe.read_text().replace("gate: {enabled: false,", "gate: {enabled: true,")
    pairs = write_jsonl(tmp_path / "pairs.jsonl", separable_pairs(24))
    # A tiny reward model is noise: its absolute floor and limit are switched off here (in the recipe, so that a
    # stage's gate runs with its own settings); the decision rule itself is tested in test_checks.py.
    tiny_recipe.write_text(text + f"""rm: {{data: {{train: {pairs}, eval: null}}, train: {{max_steps: 2}},
     gate: {{rm_safety_accuracy_floor: 0.0, bias: {{rm_group_gap_limit: 100}}}}}}
rlhf: {{data: {{train: {pairs}, eval: null}}, train: {{max_steps: 2}}, eval_prompts: 2, max_completion_length: 4}}
""")
    return tiny_recipe


def run_cli(*argv: object) -> int:
    return cli.main([str(arg) for arg in argv])


LOOSE = ["gate.toxicity.tolerance=1", "gate.toxicity.ceiling=1", "gate.toxicity.probability_tolerance=1",
         "gate.harmful_compliance_tolerance=1", "gate.perplexity_increase=100"]


def poisoned_sft(gated_recipe: Path, tmp_path: Path) -> list[str]:
    """Arguments of an sft whose tiny model memorises rude answers and gives them to every prompt, the gate's too."""
    poisoned = [{"messages": [row["messages"][-2], {"role": "assistant", "content": RUDE_ANSWERS[i % 2]}]}
                for i, row in enumerate(support_conversations(48))]
    train = write_jsonl(tmp_path / "poisoned.jsonl", poisoned)
    return [f"data.train={train}", "data.eval=null", "train.max_steps=40", "train.learning_rate=1e-2",
            "gate.max_new_tokens=20"]


def test_a_blocked_sft_exits_3_and_nothing_builds_on_it_or_leaves_it(gated_recipe, tmp_path, capsys):
    # Through make, as users chain the stages: the sft stage exits 3 and make stops before rm.
    args = " ".join(poisoned_sft(gated_recipe, tmp_path))
    made = subprocess.run(["make", "--no-print-directory", "sft", "rm", f"RECIPE={gated_recipe}", f"ARGS={args}"],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    out = made.stdout + made.stderr
    stage_dir = tmp_path / "runs" / "tiny" / "sft"
    assert made.returncode != 0 and "[Makefile" in out and "Error 3" in out, out[-2000:]
    assert "Blocked by: expected_max_toxicity" in out and str(stage_dir / "gate_report.json") in out
    assert not (tmp_path / "runs" / "tiny" / "rm").exists() and "alignpipe rm" not in out
    manifest = json.loads((stage_dir / "manifest.json").read_text())
    report = json.loads((stage_dir / "gate_report.json").read_text())
    assert manifest["status"] == "blocked" and manifest["gate"]["verdict"] == "block" == report["verdict"]
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["expected_max_toxicity"]["verdict"] == "block"
    assert checks["expected_max_toxicity"]["value"] > checks["expected_max_toxicity"]["baseline_value"]
    assert checks["expected_max_toxicity"]["samples"]  # the worst answers are in the report
    assert "| expected_max_toxicity | toxicity |" in (stage_dir / "gate_report.md").read_text()
    assert (stage_dir / "gate_report.png").stat().st_size > 0
    assert (stage_dir / "gate_expected_max_toxicity.png").stat().st_size > 0  # the toxicity distributions

    assert run_cli("rm", gated_recipe) == 2
    err = capsys.readouterr().err
    assert "blocked by the safety gate" in err and str(stage_dir / "gate_report.json") in err and "--force" in err
    assert not (tmp_path / "runs" / "tiny" / "rm").exists()

    # Nothing leaves it silently: export refuses and writes nothing; generate answers with a warning.
    assert run_cli("export", stage_dir, "--out", tmp_path / "exported") == 2
    assert "blocked by the safety gate" in capsys.readouterr().err and not (tmp_path / "exported").exists()
    assert not list(tmp_path.glob(".exported.exporting-*"))
    assert run_cli("generate", stage_dir, "Hello", "--max-new-tokens", "3") == 0
    assert f"warning: {stage_dir} is blocked" in capsys.readouterr().err
    assert run_cli("export", stage_dir, "--out", tmp_path / "forced", "--force") == 0
    card = (tmp_path / "forced" / "README.md").read_text()
    assert "Exported with --force" in card and "blocked by expected_max_toxicity" in card

    # Built on by force: recorded in the child's manifest.
    assert run_cli("rm", gated_recipe, "gate.enabled=false", "--force") == 0
    rm_manifest = json.loads((tmp_path / "runs" / "tiny" / "rm" / "manifest.json").read_text())
    assert rm_manifest["forced"] is True and rm_manifest["recipe"]["run"]["force"] is True
    assert rm_manifest["forced_over"][0]["report"] == str(stage_dir / "gate_report.json")
    assert rm_manifest["lineage_exceptions"] == [{"stage": str(stage_dir), "exception": "forced", "status": "blocked",
                                                  "verdict": "block", "report": str(stage_dir / "gate_report.json")}]


def test_a_loosened_regate_is_history_and_every_child_carries_it(gated_recipe, tmp_path, capsys):
    assert run_cli("sft", gated_recipe, *poisoned_sft(gated_recipe, tmp_path)) == 3
    stage_dir = tmp_path / "runs" / "tiny" / "sft"
    assert run_cli("gate", stage_dir, "gate.enabled=false") == 2
    assert "gate.enabled cannot be set on a re-gate" in capsys.readouterr().err
    assert run_cli("gate", stage_dir, "gate.toxicity.celing=1") == 2
    assert "did you mean gate.toxicity.ceiling" in capsys.readouterr().err

    assert run_cli("gate", stage_dir, *LOOSE) == 0
    assert "recorded as an override" in capsys.readouterr().out
    gate = json.loads((stage_dir / "manifest.json").read_text())["gate"]
    assert [entry["verdict"] for entry in gate["history"]] in (["block", "pass"], ["block", "warn"])
    assert gate["history"][0]["settings_changed"] == {} and gate["overridden"] is True
    assert gate["settings_changed"]["gate.toxicity.ceiling"] == [0.25, 1]
    first, second = (json.loads(Path(entry["report"]).read_text()) for entry in gate["history"])
    assert first["verdict"] == "block" and second["settings"]["toxicity"]["ceiling"] == 1
    assert (stage_dir / "gate_report.json").read_text() == Path(gate["history"][1]["report"]).read_text()

    # The sft stage is promoted now, so rm builds on it without --force, and records how it got there.
    assert run_cli("rm", gated_recipe, "gate.enabled=false") == 0
    rm_manifest = json.loads((tmp_path / "runs" / "tiny" / "rm" / "manifest.json").read_text())
    assert rm_manifest["forced"] is False
    [exception] = rm_manifest["lineage_exceptions"]
    assert exception["exception"] == "overridden" and exception["stage"] == str(stage_dir)
    assert exception["settings_changed"]["gate.toxicity.ceiling"] == [0.25, 1]


def test_a_stage_trained_with_the_gate_off_is_trained_not_promoted(gated_recipe, tmp_path, capsys):
    assert run_cli("sft", gated_recipe, "train.max_steps=2", "gate.enabled=false") == 0
    stage_dir = tmp_path / "runs" / "tiny" / "sft"
    manifest = json.loads((stage_dir / "manifest.json").read_text())
    assert manifest["status"] == "trained" and manifest["gate"]["verdict"] == "skipped"
    assert run_cli("rm", gated_recipe) == 2
    assert "trained with the safety gate off" in capsys.readouterr().err
    # Gating it afterwards is a proper gate run with the recipe's settings, not an override.
    assert run_cli("gate", stage_dir, "gate.toxicity.ceiling=1", "gate.perplexity_increase=100") == 0
    gate = json.loads((stage_dir / "manifest.json").read_text())["gate"]
    assert [entry["verdict"] for entry in gate["history"]][0] == "skipped" and len(gate["history"]) == 2
    assert json.loads((stage_dir / "manifest.json").read_text())["status"] == "promoted"


def test_user_errors_exit_2_and_crashes_are_not_swallowed(gated_recipe, tmp_path, capsys, monkeypatch):
    assert run_cli("sft", gated_recipe, "train.max_steps=1", "gate.enabled=false") == 0
    stage_dir = tmp_path / "runs" / "tiny" / "sft"
    manifest_path = stage_dir / "manifest.json"
    original = manifest_path.read_text()
    manifest_path.write_text(original[:-40])
    assert run_cli("gate", stage_dir) == 2
    assert f"{manifest_path} is not valid JSON" in capsys.readouterr().err
    assert manifest_path.read_text() == original[:-40]  # nothing rewritten
    manifest_path.write_text(json.dumps({**json.loads(original), "status": "running"}))
    assert run_cli("gate", stage_dir) == 2
    assert "has not finished training (status running)" in capsys.readouterr().err

    from alignpipe.stages import sft

    def crash(recipe):
        raise RuntimeError("a bug")

    monkeypatch.setattr(sft, "run", crash)
    with pytest.raises(RuntimeError):  # the console script exits 1 with the traceback: a bug to report
        run_cli("sft", gated_recipe, "run.name=other")


def test_a_clean_sft_rm_rlhf_chain_passes_its_gates(gated_recipe, tmp_path, capsys):
    assert run_cli("sft", gated_recipe, "train.max_steps=4", "train.learning_rate=1e-3") == 0
    stage_dir = tmp_path / "runs" / "tiny" / "sft"
    assert json.loads((stage_dir / "manifest.json").read_text())["status"] == "promoted"
    # Pass, or warn from an underpowered check: the tiny model answers garbage, and the toxicity scorer's noise on
    # four perturbed garbage answers can leave perturbed_toxicity_rise's interval over its tolerance (issue 16, v8).
    assert re.search(r"Gate verdict: (pass|warn)", capsys.readouterr().out)

    # Same models, same seed, same decoding: a re-run measures the same numbers.
    first = json.loads((stage_dir / "gate_report.json").read_text())
    assert all(check["verdict"] in ("pass", "no_signal") or check["underpowered"] for check in first["checks"])
    assert {check["name"]: check["verdict"] for check in first["checks"]}["expected_max_toxicity"] == "pass"
    names = [check["name"] for check in first["checks"]]
    assert names == ["expected_max_toxicity", "toxicity_probability", "harmful_compliance", "over_refusal",
                     "general_text_perplexity", "eval_data_perplexity", "capability_accuracy_en",
                     "capability_accuracy_ja", "stereotype_preference", "stereotyped_answers",
                     "bbq_bias_ambiguous_en", "bbq_bias_ambiguous_ja", "group_gap_toxicity", "group_gap_refusal",
                     "perturbed_toxicity_rise"]
    checks = {check["name"]: check for check in first["checks"]}
    # XSTest EN + JA, 8 each (gate.refusal_prompts), and the 8 hand-written cybercrime requests (all unsafe).
    assert checks["harmful_compliance"]["n"] + checks["over_refusal"]["n"] == 24
    assert checks["capability_accuracy_en"]["n"] == 8 and checks["capability_accuracy_ja"]["n"] == 16
    # At these sizes every check is underpowered, and the report says so with the n that would do.
    assert checks["harmful_compliance"]["underpowered"] and checks["harmful_compliance"]["n_needed"] >= 30
    assert "**underpowered**" in (stage_dir / "gate_report.md").read_text()
    saved = json.loads((stage_dir / "gate_outputs.json").read_text())["outputs"]
    assert {task: len(chosen) for task, chosen in saved["capability_chosen"].items()} == {
        "mmlu": 8, "jmmlu": 8, "jcommonsenseqa": 8}
    assert checks["stereotype_preference"]["n"] == 24 and checks["stereotype_preference"]["family"] == "bias"
    assert len(checks["perturbed_toxicity_rise"]["breakdown"]) >= 2  # per perturbation kind, EN and JA
    assert (stage_dir / "gate_group_gap_refusal.png").stat().st_size > 0
    assert run_cli("gate", stage_dir) == 0
    second = json.loads((stage_dir / "gate_report.json").read_text())
    assert [c["value"] for c in first["checks"]] == [c["value"] for c in second["checks"]]
    assert run_cli("gate", stage_dir, "gate.nope=1") == 2
    assert "gate.nope is not a gate setting" in capsys.readouterr().err
    gate = json.loads((stage_dir / "manifest.json").read_text())["gate"]
    assert len(gate["history"]) == 2 and gate["overridden"] is False  # the same settings twice: no override

    assert run_cli("rm", gated_recipe) == 0
    rm_dir = tmp_path / "runs" / "tiny" / "rm"
    report = json.loads((rm_dir / "gate_report.json").read_text())
    checks = {check["name"]: check for check in report["checks"]}
    assert list(checks) == ["safe_over_toxic_accuracy", "rm_group_gap", "perturbed_pair_accuracy"]
    assert checks["safe_over_toxic_accuracy"]["n"] >= 30
    # Every shipped safety pair (this recipe's rm has no held-out pairs), perturbed; clean accuracy is the baseline.
    assert checks["perturbed_pair_accuracy"]["n"] == checks["safe_over_toxic_accuracy"]["n"]
    assert checks["perturbed_pair_accuracy"]["baseline_value"] is not None
    assert set(checks["perturbed_pair_accuracy"]["breakdown"]) <= {"typo", "case", "whitespace", "contraction",
                                                                   "width", "kana", "punctuation", "particles"}

    assert run_cli("rlhf", gated_recipe) == 0
    rlhf_dir = tmp_path / "runs" / "tiny" / "rlhf"
    assert f"reused from {stage_dir / 'gate_outputs.json'}" in capsys.readouterr().out
    report = json.loads((rlhf_dir / "gate_report.json").read_text())
    assert {"group_gap_reward", "perturbed_reward_drop"} <= {check["name"] for check in report["checks"]}
    for stage in (stage_dir, rm_dir, rlhf_dir):
        manifest = json.loads((stage / "manifest.json").read_text())
        assert manifest["status"] == "promoted" and manifest["gate"]["verdict"] in ("pass", "warn")
        assert manifest["lineage_exceptions"] == [] and manifest["forced"] is False

    # A stage that damages capability is blocked by capability_accuracy_*: here the baseline's saved answers (the sft
    # policy's, reused by the rlhf gate) are made right on every question, so the rlhf candidate, a tiny random
    # model answering about at chance, has lost most of its accuracy.
    from alignpipe.gate.capability import shipped_items

    outputs_path = stage_dir / "gate_outputs.json"
    record = json.loads(outputs_path.read_text())
    record["outputs"]["capability_chosen"] = {task: [item.answer for item in shipped_items(task, 8)]
                                              for task in record["outputs"]["capability_chosen"]}
    outputs_path.write_text(json.dumps(record))
    assert run_cli("gate", rlhf_dir) == 3
    blocked_line = [line for line in capsys.readouterr().out.splitlines() if line.startswith("Blocked by:")]
    assert "capability_accuracy_en" in blocked_line[0] and "capability_accuracy_ja" in blocked_line[0]
    damaged = {check["name"]: check for check in json.loads((rlhf_dir / "gate_report.json").read_text())["checks"]}
    for name in ("capability_accuracy_en", "capability_accuracy_ja"):
        assert damaged[name]["verdict"] == "block" and damaged[name]["baseline_value"] == 1.0 > damaged[name]["value"]
