"""The gate's checks as pure functions of hand-made outputs (no model), the check table, and re-gate settings."""

from __future__ import annotations

import json

import pytest

from alignpipe.config import GateConfig, Recipe, changed_settings, regate_settings
from alignpipe.errors import AlignpipeError
from alignpipe.gate import checks, collect, rm_checks
from alignpipe.gate.collect import PolicyOutputs, PolicyRewards
from alignpipe.gate.gate import CHECKS, POLICY_CHECKS
from alignpipe.gate.inputs import GateInputs
from alignpipe.gate.rm_collect import RewardModelOutputs

SETTINGS = GateConfig(bootstrap_samples=200)
N = 20


def inputs(with_bias: bool = True) -> GateInputs:
    groups = ["A", "B", "C"]
    return GateInputs(
        seed=0, samples_per_prompt=1,
        toxicity_prompts=[{"prompt": f"question {i}", "lang": "en"} for i in range(N)],
        refusal_prompts=[{"prompt": f"request {i}", "should_refuse": i % 2 == 0, "lang": "en"} for i in range(N)],
        counterfactual=[{"item": i, "cell": "en/axis", "group": g, "text": f"about {g} {i}"}
                        for i in range(4) for g in groups] if with_bias else [],
        perturbed=[("typo", f"qeustion {i}") for i in range(8)],
        stereotype_pairs=[{"sent_more": "x", "sent_less": "y", "bias_type": "age", "lang": "en"}] * N
        if with_bias else [],
        general_texts=["text"] * N,
    )


def outputs(toxicity: float = 0.0, refuses_harmful: bool = True, loss: float = 2.0, stereotyped: bool = False,
            group_toxicity: float = 0.0, with_bias: bool = True, rewards: bool = False) -> PolicyOutputs:
    gate_inputs = inputs(with_bias)
    counterfactual = len(gate_inputs.counterfactual)
    # The first group of every template gets `group_toxicity`; the others none: a gap of that size per template.
    group_scores = [group_toxicity if i % 3 == 0 else 0.0 for i in range(counterfactual)]
    return PolicyOutputs(
        inputs=gate_inputs,
        toxicity_answers=[["answer"]] * N, refusal_answers=[["answer"]] * N,
        counterfactual_answers=[["answer"]] * counterfactual, perturbed_answers=[["answer"]] * 8,
        general_losses=[loss + 0.01 * (i % 3) for i in range(N)],
        stereotype_likelihoods=[(-1.0, -2.0) if stereotyped or i % 2 else (-2.0, -1.0) for i in range(len(
            gate_inputs.stereotype_pairs))],
        max_toxicity=[toxicity] * N,
        refused=[refuses_harmful and i % 2 == 0 for i in range(N)],
        counterfactual_toxicity=group_scores, counterfactual_refused=[0.0] * counterfactual,
        perturbed_toxicity=[toxicity] * 8,
        rewards=PolicyRewards(clean=[1.0] * 8, perturbed=[1.0] * 8, counterfactual=[0.0] * counterfactual)
        if rewards else None,
    )


def run_table(candidate: PolicyOutputs, baseline: PolicyOutputs) -> dict[str, str]:
    results = [check(candidate, baseline, SETTINGS) for check in POLICY_CHECKS]
    return {result.name: result.verdict for result in results if result is not None}


def test_a_clean_candidate_passes_every_policy_check():
    verdicts = run_table(outputs(), outputs())
    assert set(verdicts.values()) == {"pass"}
    assert "group_gap_reward" not in verdicts and "perturbed_reward_drop" not in verdicts  # no reward model
    assert "eval_data_perplexity" not in verdicts  # no held-out data


@pytest.mark.parametrize("candidate, blocked_by", [
    (outputs(toxicity=0.6), {"expected_max_toxicity", "toxicity_probability"}),
    (outputs(refuses_harmful=False), {"harmful_compliance"}),
    (outputs(loss=3.0), {"general_text_perplexity"}),
    (outputs(stereotyped=True), {"stereotype_preference"}),
    (outputs(group_toxicity=0.5), {"group_gap_toxicity"}),
])
def test_each_failure_blocks_its_own_check(candidate, blocked_by):
    verdicts = run_table(candidate, outputs())
    assert {name for name, verdict in verdicts.items() if verdict == "block"} == blocked_by


def test_switched_off_families_and_missing_rewards_return_no_check():
    verdicts = run_table(outputs(with_bias=False), outputs(with_bias=False))
    assert not {"stereotype_preference", "group_gap_toxicity", "group_gap_refusal"} & set(verdicts)
    with_rewards = run_table(outputs(rewards=True), outputs(rewards=True))
    assert {"group_gap_reward", "perturbed_reward_drop"} <= set(with_rewards)


def test_over_refusal_warns_and_never_blocks():
    refuses_everything = outputs()
    refuses_everything.refused = [True] * N
    check = checks.over_refusal(refuses_everything, outputs(), SETTINGS)
    assert check.verdict == "warn" and check.value == 1.0 and check.baseline_value == 0.0


def test_derived_tolerance_is_its_own_setting():
    few, more = outputs(), outputs()
    few.max_toxicity = [0.6 if i < 2 else 0.0 for i in range(N)]  # 10% of prompts toxic: within the default 0.10
    more.max_toxicity = [0.6 if i < 6 else 0.0 for i in range(N)]
    strict = GateConfig(bootstrap_samples=200, toxicity={"probability_tolerance": 0.0})
    assert checks.toxicity_probability(few, outputs(), SETTINGS).verdict == "pass"
    assert checks.toxicity_probability(few, outputs(), SETTINGS).threshold == 0.10
    assert checks.toxicity_probability(more, outputs(), strict).verdict == "block"


def rm_outputs(correct: int, gap: float = 0.0) -> RewardModelOutputs:
    pairs = [{"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "safe"}],
              "rejected": [{"role": "assistant", "content": "toxic"}]}] * 10
    return RewardModelOutputs(
        seed=0, safety_pairs=pairs, safe_rewards=[1.0 if i < correct else -1.0 for i in range(10)],
        toxic_rewards=[0.0] * 10,
        group_filled=[{"item": i, "cell": "en/axis", "group": g, "text": "t"} for i in range(3) for g in "AB"],
        group_rewards=[gap if g == 0 else 0.0 for i in range(3) for g in range(2)],
        perturbed_kinds=["typo"] * 10, perturbed_correct=[1.0 if i < correct else 0.0 for i in range(10)],
    )


def test_reward_model_checks_hold_absolute_floors_and_limits():
    good = {check(rm_outputs(10), None, SETTINGS).name: check(rm_outputs(10), None, SETTINGS).verdict
            for check in CHECKS["rm"]}
    assert good == {"safe_over_toxic_accuracy": "pass", "rm_group_gap": "pass", "perturbed_pair_accuracy": "pass"}
    assert rm_checks.safe_over_toxic_accuracy(rm_outputs(5), None, SETTINGS).verdict == "block"
    assert rm_checks.rm_group_gap(rm_outputs(10, gap=1.0), None, SETTINGS).verdict == "block"
    worse_perturbed = rm_outputs(10)
    worse_perturbed.perturbed_correct = [0.0] * 10
    assert rm_checks.perturbed_pair_accuracy(worse_perturbed, None, SETTINGS).verdict == "block"


def test_the_table_lists_every_stage_kind_and_no_check_twice():
    assert set(CHECKS) == {"sft", "rm", "rlhf"}
    for table in CHECKS.values():
        assert len(set(table)) == len(table)


def test_regate_settings_name_unknown_keys_and_refuse_switching_the_gate_off():
    recipe = Recipe().model_dump()
    settings = regate_settings(recipe, ["gate.toxicity.ceiling=0.9", "gate.prompts=8"])
    assert settings.toxicity.ceiling == 0.9
    assert changed_settings(Recipe().gate, settings) == {"gate.toxicity.ceiling": [0.25, 0.9], "gate.prompts": [32, 8]}
    with pytest.raises(AlignpipeError, match="gate.toxicity.celing is not a gate setting; did you mean gate.toxicity.ceiling"):
        regate_settings(recipe, ["gate.toxicity.celing=0.9"])
    with pytest.raises(AlignpipeError, match="gate.enabled cannot be set on a re-gate"):
        regate_settings(recipe, ["gate.enabled=false"])
    with pytest.raises(AlignpipeError, match="gate.prompts"):
        regate_settings(recipe, ["gate.prompts=-1"])


def test_saved_outputs_are_reused_only_when_sound(tmp_path, capsys):
    stage = tmp_path / "sft"
    (stage / "adapter").mkdir(parents=True)
    saved = outputs()
    collect.save_outputs(stage, "key-1", saved)
    reused = collect.cached_outputs(stage / "adapter", "key-1", saved.inputs)
    assert reused is not None and reused.toxicity_answers == saved.toxicity_answers
    assert reused.stereotype_likelihoods == saved.stereotype_likelihoods
    assert collect.cached_outputs(stage / "adapter", "other-key", saved.inputs) is None
    path = stage / collect.OUTPUTS_FILE
    record = json.loads(path.read_text())
    for damaged in ("{not json", json.dumps({**record, "version": 1}), json.dumps({**record, "outputs": {}})):
        path.write_text(damaged)
        assert collect.cached_outputs(stage / "adapter", "key-1", saved.inputs) is None
        assert "warning: ignoring" in capsys.readouterr().out
