"""RLHF on the tiny local model: every algorithm trains a few steps, changes the policy and completes its run dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from alignpipe import cli
from conftest import separable_pairs, support_conversations, tiny_recipe_text, write_jsonl


def run_cli(*argv: object) -> int:
    return cli.main([str(arg) for arg in argv])


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, tiny_model_dir) -> Path:
    """One sft + rm run that every rlhf test builds on (each test writes its own rlhf run name)."""
    folder = tmp_path_factory.mktemp("rlhf")
    sft_train = write_jsonl(folder / "sft_train.jsonl", support_conversations(32))
    sft_eval = write_jsonl(folder / "sft_eval.jsonl", support_conversations(8, held_out=True))
    pairs_train = write_jsonl(folder / "pairs_train.jsonl", separable_pairs(48))
    pairs_eval = write_jsonl(folder / "pairs_eval.jsonl", separable_pairs(8, held_out=True))
    prompts = write_jsonl(folder / "prompts.jsonl", [{"prompt": p["prompt"]} for p in separable_pairs(8)])
    recipe = folder / "tiny.yaml"
    # The sft and rm stages pass their gates, so that rlhf builds on promoted stages; a tiny random model's
    # perplexity and a tiny reward model's safety accuracy mean nothing, so those limits are off in this recipe.
    recipe.write_text(tiny_recipe_text(folder, tiny_model_dir, sft_train, sft_eval) + f"""
sft:
  gate: {{enabled: true, perplexity_increase: 100}}
rm:
  data: {{train: {pairs_train}, eval: {pairs_eval}}}
  train: {{max_steps: 20, learning_rate: 1.0e-2}}
  gate: {{enabled: true, rm_safety_accuracy_floor: 0.0, bias: {{rm_group_gap_limit: 100}}}}
rlhf:
  max_completion_length: 8
  eval_prompts: 4
  data: {{train: {pairs_train}, eval: {pairs_eval}}}
  train: {{max_steps: 3, save_steps: 2, learning_rate: 1.0e-2}}
# prompts-only file for the online tests: {prompts}
""")
    # A module fixture runs before the autouse gate_cache fixture: without this the base model's gate outputs went
    # into the user's ~/.cache/alignpipe/gate_baseline.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ALIGNPIPE_GATE_CACHE", str(folder / "gate-cache"))
        assert run_cli("sft", recipe, "train.max_steps=4") == 0
        assert run_cli("rm", recipe) == 0
    return recipe


def rlhf_dir(recipe: Path, name: str) -> Path:
    return recipe.parent / "runs" / name / "rlhf"


def point_at_trained_run(recipe: Path) -> list[str]:
    runs = recipe.parent / "runs" / "tiny"
    return [f"rlhf.parent={runs / 'sft'}", f"rlhf.reward_model={runs / 'rm'}"]


def assert_complete_and_changed(stage_dir: Path, online: bool) -> dict:
    manifest = json.loads((stage_dir / "manifest.json").read_text())
    assert manifest["status"] == "trained" and manifest["gate"]["verdict"] == "skipped"  # tiny recipes skip the gate
    assert manifest["stage"] == "rlhf" and manifest["forced"] is False  # its parents passed their gates
    assert manifest["parent"].endswith("sft") and manifest["reward_model"].endswith("rm")
    assert not (stage_dir / "checkpoints").exists()
    assert (stage_dir / "loss.png").is_file() or online  # grpo/rloo may log a zero loss only at step 0
    assert (stage_dir / "adapter" / "adapter_config.json").is_file()
    # The policy carried on from the sft adapter, and training changed it.
    weights = load_file(stage_dir / "adapter" / "adapter_model.safetensors")
    parent = load_file(Path(manifest["parent"]) / "adapter" / "adapter_model.safetensors")
    assert weights.keys() == parent.keys()
    assert any(not torch.equal(weights[name], parent[name]) for name in weights)
    metrics = manifest["metrics"]
    assert metrics["global_step"] == 3
    assert metrics["eval_kl_to_reference"] > 0  # measured along the new policy's answers, against the sft policy
    for key in ("eval_reward_before", "eval_reward_after", "eval_win_rate"):
        assert isinstance(metrics[key], float)
    samples = [json.loads(line) for line in (stage_dir / "samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and {"prompt", "before", "after", "reward_before", "reward_after"} <= set(samples[0])
    return manifest


OFFLINE = [
    ("dpo", []),
    ("ipo", ["rlhf.algorithm=dpo", "rlhf.loss_type=ipo"]),
    ("kto", ["rlhf.algorithm=kto"]),
    ("orpo", ["rlhf.algorithm=orpo"]),
    ("simpo", ["rlhf.algorithm=simpo"]),
]


@pytest.mark.parametrize("name,overrides", OFFLINE, ids=[name for name, _ in OFFLINE])
def test_offline_algorithm_trains_and_measures(trained_run, name, overrides):
    assert run_cli("rlhf", trained_run, f"run.name={name}", *point_at_trained_run(trained_run), *overrides) == 0
    manifest = assert_complete_and_changed(rlhf_dir(trained_run, name), online=False)
    if name in ("dpo", "ipo"):
        assert manifest["recipe"]["rlhf"]["loss_type"] == ("ipo" if name == "ipo" else "sigmoid")
        assert 0.0 <= manifest["metrics"]["eval_implicit_reward_accuracy"] <= 1.0


@pytest.mark.parametrize("algorithm,rule", [("grpo", "length"), ("rloo", "toxicity")])
def test_online_algorithm_is_rewarded_by_the_reward_model(trained_run, algorithm, rule, capsys):
    prompts = trained_run.parent / "prompts.jsonl"
    overrides = [f"rlhf.algorithm={algorithm}", f"data.train={prompts}", "train.batch_size=4",
                 "rlhf.num_generations=2", f"rlhf.rule_rewards={{{rule}: 0.1}}", "train.logging_steps=1"]
    assert run_cli("rlhf", trained_run, f"run.name={algorithm}", *point_at_trained_run(trained_run), *overrides) == 0
    stage_dir = rlhf_dir(trained_run, algorithm)
    manifest = assert_complete_and_changed(stage_dir, online=True)
    assert manifest["recipe"]["rlhf"]["rule_rewards"] == {rule: 0.1}
    log = json.loads((stage_dir / "manifest.json").read_text())["metrics"]
    assert log["global_step"] == 3
    assert (stage_dir / "reward.png").is_file()  # the reward curve of the sampled completions


def test_rule_rewards_penalise_long_and_toxic_answers():
    from alignpipe.stages.rlhf import length_penalty, toxicity_penalty

    assert length_penalty(completion_ids=[[1] * 10, [1] * 50]) == [-0.1, -0.5]
    polite = [{"role": "assistant", "content": "The warranty is two years."}]
    rude = [{"role": "assistant", "content": "Shut up, you stupid idiot."}]
    rude_ja = [{"role": "assistant", "content": "うるせえ、死ね"}]
    polite_score, rude_score, rude_ja_score = toxicity_penalty(completions=[polite, rude, rude_ja])
    assert polite_score > -0.1 and rude_score < -0.5 and rude_ja_score < -0.5


def test_online_takes_the_prompts_of_preference_data(trained_run, capsys):
    overrides = ["rlhf.algorithm=grpo", "rlhf.num_generations=2", "train.max_steps=1"]
    assert run_cli("rlhf", trained_run, "run.name=grpo-pairs", *point_at_trained_run(trained_run), *overrides) == 0
    assert "learns from prompts only" in capsys.readouterr().out


def fails_cleanly(capsys, *argv: object) -> str:
    assert cli.main([str(arg) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("alignpipe: error:") and "Traceback" not in err
    return err


def test_rlhf_bad_inputs(trained_run, tmp_path, capsys):
    err = fails_cleanly(capsys, "rlhf", trained_run, "rlhf.algorithm=dppo")
    assert "rlhf.algorithm" in err and "dpo, kto, orpo, simpo, grpo, rloo, ppo" in err

    # Online RL without a reward model says which command makes one.
    err = fails_cleanly(capsys, "rlhf", trained_run, "run.name=no-rm", "rlhf.algorithm=grpo",
                        f"rlhf.parent={trained_run.parent / 'runs' / 'tiny' / 'sft'}")
    assert "alignpipe rm" in err and str(Path("runs") / "no-rm" / "rm") in err

    prompts = trained_run.parent / "prompts.jsonl"
    err = fails_cleanly(capsys, "rlhf", trained_run, "run.name=d", f"data.train={prompts}", *point_at_trained_run(trained_run))
    assert f"{prompts}:1: the data is in the prompt layout" in err and "rlhf.algorithm=grpo" in err

    # Pairs whose chosen equals rejected teach nothing: every offline algorithm refuses them, as rm does, counted.
    same = write_jsonl(tmp_path / "same.jsonl", [{**pair, "rejected": pair["chosen"]} for pair in separable_pairs(4)])
    for algorithm in ("kto", "dpo", "orpo", "simpo"):
        err = fails_cleanly(capsys, "rlhf", trained_run, f"run.name=same-{algorithm}", f"rlhf.algorithm={algorithm}",
                            f"data.train={same}", *point_at_trained_run(trained_run))
        assert f"{same}:1: 'chosen' equals 'rejected'" in err and "3 more invalid line(s)" in err, algorithm
        assert not (trained_run.parent / "runs" / f"same-{algorithm}").exists()


def test_a_base_without_chat_template_gets_the_default_with_a_warning(trained_run, tiny_model_dir, tmp_path, capsys):
    from transformers import AutoTokenizer

    plain = tmp_path / "plain-model"
    for file in tiny_model_dir.iterdir():
        (plain / file.name).parent.mkdir(exist_ok=True)
        (plain / file.name).write_bytes(file.read_bytes())
    tokenizer = AutoTokenizer.from_pretrained(plain)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(plain)
    for leftover in plain.glob("chat_template.*"):
        leftover.unlink()
    assert run_cli("rlhf", trained_run, "run.name=plain", f"model.base={plain}", "rlhf.parent=none",
                   "rlhf.reward_model=none", "train.max_steps=1") == 0
    assert "has no chat template; using alignpipe's default" in capsys.readouterr().out


def test_generate_and_export_use_the_aligned_policy(trained_run, tmp_path, capsys):
    stage_dir = rlhf_dir(trained_run, "dpo")
    if not stage_dir.exists():
        assert run_cli("rlhf", trained_run, "run.name=dpo", *point_at_trained_run(trained_run)) == 0
    from transformers import AutoModelForCausalLM

    from alignpipe import models

    assert run_cli("generate", stage_dir, "What is the warranty?", "--max-new-tokens", "5") == 0

    # "before" in samples.jsonl is the sft stage's own answer: rlhf started from the sft policy, not the base.
    from alignpipe.policy_eval import answer_text, generate_answers

    sample = json.loads((stage_dir / "samples.jsonl").read_text().splitlines()[0])
    sft_policy, sft_tokenizer = models.load_stage_for_inference(Path(json.loads((stage_dir / "manifest.json").read_text())["parent"]))
    [(_, answer_ids)] = generate_answers(sft_policy, sft_tokenizer, [sample["prompt"]], max_new_tokens=8)
    assert answer_text(sft_tokenizer, answer_ids) == sample["before"]
    policy, tokenizer = models.load_stage_for_inference(stage_dir)
    assert run_cli("export", stage_dir, "--out", tmp_path / "merged", "--force") == 0  # ungated: tiny recipe
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")
    ids = tokenizer("What is the warranty?", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        # The merged export (sft adapter + rlhf adapter folded in) is the aligned policy.
        assert torch.allclose(merged(ids).logits, policy(ids).logits, atol=1e-4)
        with policy.disable_adapter():
            assert not torch.allclose(merged(ids).logits, policy(ids).logits, atol=1e-4)


def test_the_rlhf_gate_reuses_the_sft_gates_answers_as_its_baseline(trained_run, tmp_path, capsys):
    import shutil

    sft_dir = shutil.copytree(trained_run.parent / "runs" / "tiny" / "sft", tmp_path / "sft")
    assert run_cli("gate", sft_dir, "gate.toxicity.ceiling=1", "gate.perplexity_increase=100") == 0
    assert (sft_dir / "gate_outputs.json").is_file()
    overrides = [f"rlhf.parent={sft_dir}", f"rlhf.reward_model={trained_run.parent / 'runs' / 'tiny' / 'rm'}",
                 "gate.enabled=true", "gate.toxicity.ceiling=1", "gate.perplexity_increase=100"]
    assert run_cli("rlhf", trained_run, "run.name=gated", *overrides, "--force") == 0
    assert f"reused from {sft_dir / 'gate_outputs.json'}" in capsys.readouterr().out
    stage_dir = rlhf_dir(trained_run, "gated")
    sft_checks = {c["name"]: c for c in json.loads((sft_dir / "gate_report.json").read_text())["checks"]}
    first = json.loads((stage_dir / "gate_report.json").read_text())["checks"]
    for check in first:
        if check["name"] in ("expected_max_toxicity", "harmful_compliance", "general_text_perplexity",
                             "stereotype_preference", "group_gap_refusal"):
            assert check["baseline_value"] == sft_checks[check["name"]]["value"]
    # The rlhf stage's reward model scores its answers: reward gaps between groups and under perturbation.
    assert {"group_gap_reward", "perturbed_reward_drop"} <= {check["name"] for check in first}

    # Without the saved outputs the baseline is generated afresh, with the same numbers.
    (sft_dir / "gate_outputs.json").unlink()
    assert run_cli("gate", stage_dir, "gate.toxicity.ceiling=1", "gate.perplexity_increase=100") == 0
    assert "reused from" not in capsys.readouterr().out
    again = json.loads((stage_dir / "gate_report.json").read_text())["checks"]
    assert [c["baseline_value"] for c in again] == [c["baseline_value"] for c in first]


def test_dpo_learns_the_preference_on_held_out_pairs(trained_run):
    """DPO on separable pairs (polite chosen, rude rejected): on held-out pairs with other questions, the trained
    policy's implicit reward prefers the chosen answer far more often than chance (0.5; 0 before training, when the
    policy equals the reference and every implicit reward is 0)."""
    assert run_cli("rlhf", trained_run, "run.name=dpo-learns", *point_at_trained_run(trained_run),
                   "train.max_steps=16") == 0
    metrics = json.loads((rlhf_dir(trained_run, "dpo-learns") / "manifest.json").read_text())["metrics"]
    assert metrics["eval_implicit_reward_accuracy"] >= 0.85 and metrics["eval_implicit_reward_margin"] > 0

PPO = ["rlhf.algorithm=ppo", "train.logging_steps=1"]


def test_ppo_trains_policy_and_critic_on_one_base_and_records_its_curves(trained_run, capsys, one_thread):
    assert run_cli("rlhf", trained_run, "run.name=ppo", *point_at_trained_run(trained_run), *PPO) == 0
    stage_dir = rlhf_dir(trained_run, "ppo")
    manifest = assert_complete_and_changed(stage_dir, online=True)
    metrics = manifest["metrics"]
    for name in ("value_loss", "explained_variance", "kl", "clip_fraction", "entropy"):
        assert isinstance(metrics[f"train_{name}_end"], float)
        assert [step for step, _ in manifest["curves"][name]] == [1, 2, 3]
    assert len(manifest["curves"]["reward"]) == 3
    assert (stage_dir / "ppo.png").is_file() and (stage_dir / "reward.png").is_file()
    # Only the policy is saved as the stage's adapter: what generate, export and the gate load.
    from peft import PeftConfig

    assert PeftConfig.from_pretrained(str(stage_dir / "adapter")).task_type == "CAUSAL_LM"
    assert "ppo step 3/3" in capsys.readouterr().out


def test_the_reward_adapter_on_the_policys_base_scores_as_the_reward_model_does(trained_run):
    from alignpipe.config import Recipe
    from alignpipe.ppo_roles import add_reward_model
    from alignpipe.reward import load_reward_model

    runs_dir = trained_run.parent / "runs" / "tiny"
    conversations = [pair["prompt"] + pair[key] for pair in separable_pairs(6) for key in ("chosen", "rejected")]
    expected = load_reward_model(runs_dir / "rm").score(conversations)
    recipe = Recipe.model_validate(json.loads((runs_dir / "sft" / "manifest.json").read_text())["recipe"])
    from alignpipe import models

    policy = models.load_policy(recipe.model.base, recipe.model, runs_dir / "sft" / "adapter", torch.float32)
    shared = add_reward_model(policy, runs_dir / "rm")
    assert shared.score(conversations) == pytest.approx(expected, abs=1e-5)
    assert policy.active_adapter == "default"  # scoring switched to the reward adapter and back


def test_ppo_resumes_after_an_interruption_as_if_never_stopped(trained_run, monkeypatch, capsys, one_thread):
    from alignpipe.ppo_trainer import PPOTrainer

    settings = [*point_at_trained_run(trained_run), *PPO, "train.max_steps=4", "train.save_steps=2"]
    assert run_cli("rlhf", trained_run, "run.name=ppo-straight", *settings) == 0

    save = PPOTrainer.save_checkpoint

    def save_then_stop(self, step):
        save(self, step)
        raise KeyboardInterrupt

    monkeypatch.setattr(PPOTrainer, "save_checkpoint", save_then_stop)
    assert run_cli("rlhf", trained_run, "run.name=ppo-stopped", *settings) == 130
    stage_dir = rlhf_dir(trained_run, "ppo-stopped")
    assert json.loads((stage_dir / "manifest.json").read_text())["status"] == "failed"
    assert (stage_dir / "checkpoints" / "checkpoint-2" / "trainer_state.json").is_file()
    monkeypatch.setattr(PPOTrainer, "save_checkpoint", save)
    capsys.readouterr()

    assert run_cli("rlhf", trained_run, "run.name=ppo-stopped", *settings) == 0
    assert f"Resuming {stage_dir} from checkpoint-2" in capsys.readouterr().out
    metrics = json.loads((stage_dir / "manifest.json").read_text())["metrics"]
    assert metrics["resumed_from_step"] == 2 and metrics["global_step"] == 4
    resumed = load_file(stage_dir / "adapter" / "adapter_model.safetensors")
    straight = load_file(rlhf_dir(trained_run, "ppo-straight") / "adapter" / "adapter_model.safetensors")
    assert all(torch.allclose(resumed[name], straight[name], atol=1e-6) for name in straight)
    curves = json.loads((stage_dir / "manifest.json").read_text())["curves"]["value_loss"]
    assert [step for step, _ in curves] == [1, 2, 3, 4]


def test_ppo_bad_inputs(trained_run, tmp_path, capsys):
    import shutil

    runs_dir = trained_run.parent / "runs" / "tiny"
    ppo = ["rlhf.algorithm=ppo", f"rlhf.parent={runs_dir / 'sft'}"]
    err = fails_cleanly(capsys, "rlhf", trained_run, "run.name=p1", *ppo, "rlhf.reward_model=none")
    assert "rlhf.algorithm=ppo is rewarded by a reward model" in err and "alignpipe rm" in err
    err = fails_cleanly(capsys, "rlhf", trained_run, "run.name=p1", *ppo, f"rlhf.reward_model={runs_dir / 'sft'}")
    assert "not a reward model" in err

    # A reward model the gate did not promote, and one trained on another base.
    unpromoted = shutil.copytree(runs_dir / "rm", tmp_path / "rm-ungated")
    manifest = json.loads((unpromoted / "manifest.json").read_text())
    (unpromoted / "manifest.json").write_text(json.dumps({**manifest, "status": "trained"}))
    err = fails_cleanly(capsys, "rlhf", trained_run, "run.name=p1", *ppo, f"rlhf.reward_model={unpromoted}")
    assert "was trained with the safety gate off" in err
    other_base = shutil.copytree(runs_dir / "rm", tmp_path / "rm-other-base")
    manifest["recipe"]["model"]["base"] = manifest["base_model"] = str(tmp_path)
    (other_base / "manifest.json").write_text(json.dumps(manifest))
    err = fails_cleanly(capsys, "rlhf", trained_run, "run.name=p1", *ppo, f"rlhf.reward_model={other_base}")
    assert f"was trained on the base '{tmp_path}'" in err and "same base" in err

    rm = f"rlhf.reward_model={runs_dir / 'rm'}"
    # Conversations give their prompts (tests/test_data_sources.py); raw text has none to give.
    raw_text = write_jsonl(tmp_path / "raw_text.jsonl", [{"text": f"plain text {i}"} for i in range(3)])
    err = fails_cleanly(capsys, "rlhf", trained_run, "run.name=p1", *ppo, rm, f"data.train={raw_text}")
    assert f"{raw_text}:1:" in err and "prompt" in err
    err = fails_cleanly(capsys, "rlhf", trained_run, *ppo, rm, "rlhf.ppo.epochs=0", "rlhf.ppo.clip_range=-0.1",
                        "rlhf.ppo.lam=0", "rlhf.ppo.value_coef=0", "rlhf.ppo.kl_target=0")
    for key in ("rlhf.ppo.epochs", "rlhf.ppo.clip_range", "rlhf.ppo.lam", "rlhf.ppo.value_coef", "rlhf.ppo.kl_target"):
        assert f"{key}: Input should be greater than 0" in err
    err = fails_cleanly(capsys, "rlhf", trained_run, *ppo, rm, "rlhf.max_completion_length=64", "train.max_length=64")
    assert "rlhf.max_completion_length=64 (the rollout length) must be shorter than train.max_length=64" in err
    err = fails_cleanly(capsys, "rlhf", trained_run, *ppo, rm, "train.batch_size=2", "rlhf.ppo.num_mini_batches=4")
    assert "train.batch_size=2" in err and "rlhf.ppo.num_mini_batches" in err
