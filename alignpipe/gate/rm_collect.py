"""Collect once for a reward-model stage: its rewards on the gate's shipped pairs, group items and perturbed pairs.

A reward model has no baseline in the gate (an untrained head scores noise): its checks hold it to absolute floors
and limits, or compare it with itself on clean inputs (`rm_checks.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignpipe import runs
from alignpipe.config import GateConfig, Recipe
from alignpipe.gate.bias import fill_templates
from alignpipe.gate.inputs import held_out_pairs, shipped
from alignpipe.gate.robustness import perturb, perturbations

Messages = list[dict[str, str]]


@dataclass
class RewardModelOutputs:
    seed: int
    safety_pairs: list[dict[str, Any]]  # shipped safe/toxic answers: {"prompt", "chosen" (safe), "rejected" (toxic)}
    safe_rewards: list[float]
    toxic_rewards: list[float]
    held_out_pairs: list[dict[str, Any]] = field(default_factory=list)  # the rm's own data.eval
    held_out_correct: list[float] = field(default_factory=list)
    held_out_accuracy_base: float | None = None  # the untrained head on all of data.eval (the rm stage's metrics)
    group_filled: list[dict[str, Any]] = field(default_factory=list)  # fill_templates() of the shipped group items
    group_rewards: list[float] = field(default_factory=list)  # in reward standard deviations
    perturbed_kinds: list[str] = field(default_factory=list)  # per pair of safety_pairs + held_out_pairs
    perturbed_correct: list[float] = field(default_factory=list)

    def clean_correct(self) -> list[float]:
        """Pairwise correctness on the shipped safety pairs, then on the held-out pairs."""
        return [float(s > t) for s, t in zip(self.safe_rewards, self.toxic_rewards)] + self.held_out_correct


def collect_reward_model(stage_dir: Path, recipe: Recipe, settings: GateConfig) -> RewardModelOutputs:
    from alignpipe.reward import load_reward_model

    reward_model = load_reward_model(stage_dir)
    pairs = shipped("rm_safety_pairs.jsonl")
    safe_rewards, toxic_rewards = reward_model.score_pairs(pairs)
    outputs = RewardModelOutputs(seed=recipe.run.seed, safety_pairs=pairs, safe_rewards=safe_rewards,
                                 toxic_rewards=toxic_rewards)
    if settings.bias.enabled:
        items = shipped("rm_bias_items.jsonl")[: settings.bias.templates]
        outputs.group_filled = fill_templates(items, "response")
        conversations = [[{"role": "user", "content": items[entry["item"]]["prompt"]},
                          {"role": "assistant", "content": entry["text"]}] for entry in outputs.group_filled]
        # Gaps between groups, in the rm's standard deviations (the mean cancels in a gap).
        outputs.group_rewards = reward_model.normalized(conversations, batch_size=16)
    # A reward model's capability: its pairwise accuracy on its own held-out pairs (shown in the report).
    outputs.held_out_pairs = held_out_pairs(recipe, settings.prompts)
    if outputs.held_out_pairs:
        chosen, rejected = reward_model.score_pairs(outputs.held_out_pairs)
        outputs.held_out_correct = [float(c > r) for c, r in zip(chosen, rejected)]
        outputs.held_out_accuracy_base = runs.read_manifest(stage_dir).get("metrics", {}).get("eval_accuracy_base")
    if settings.robustness.enabled:
        measure_perturbed_pairs(reward_model, outputs, settings.robustness.typo_rate)
    return outputs


def measure_perturbed_pairs(reward_model: Any, outputs: RewardModelOutputs, rate: float) -> None:
    """Each pair's user turn and both answers perturbed the same way (one kind per pair, cycled per language)."""
    pairs = outputs.safety_pairs + outputs.held_out_pairs
    seed = outputs.seed
    kinds = [kind for kind, _ in perturbations([pair["prompt"][-1]["content"] for pair in pairs], seed)]

    def perturbed(messages: Messages, kind: str) -> Messages:
        return [{**message, "content": perturb(message["content"], kind, seed, rate)} for message in messages]

    chosen = reward_model.score([perturbed(p["prompt"] + p["chosen"], kind) for p, kind in zip(pairs, kinds)])
    rejected = reward_model.score([perturbed(p["prompt"] + p["rejected"], kind) for p, kind in zip(pairs, kinds)])
    outputs.perturbed_kinds = kinds
    outputs.perturbed_correct = [float(c > r) for c, r in zip(chosen, rejected)]
