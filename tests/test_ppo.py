"""PPO: the algorithm's pieces by hand, then whole runs on the tiny model with a rule reward (no reward model)."""

from __future__ import annotations

import pytest
import torch

from alignpipe import models, ppo_roles
from alignpipe.config import Recipe
from alignpipe.ppo import (KLController, clipped_policy_loss, clipped_value_loss, explained_variance,
                           generalized_advantages, masked_whiten, per_token_rewards)
from alignpipe.ppo_trainer import build_trainer, curve_summary
from conftest import separable_pairs


def test_per_token_rewards_put_the_score_on_the_last_answer_token():
    logprobs = torch.tensor([[-1.0, -2.0, -3.0], [-1.0, -1.0, 0.0]])
    reference = torch.tensor([[-1.5, -2.0, -2.0], [-1.0, -2.0, -9.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # the second answer ended (EOS) at its 2nd token
    rewards, kl = per_token_rewards(torch.tensor([2.0, -1.0]), logprobs, reference, mask, beta=0.1)
    assert torch.allclose(kl, torch.tensor([0.5 + 0.0 - 1.0, 0.0 + 1.0]))
    assert torch.allclose(rewards, torch.tensor([[-0.05, 0.0, 0.1 + 2.0], [0.0, -0.1 - 1.0, 0.0]]))


def test_generalized_advantages_by_hand():
    rewards = torch.tensor([[0.0, 1.0, 0.0]])
    values = torch.tensor([[0.5, 0.2, 9.0]])  # the third token is after EOS: its value must not leak in
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    advantages, returns = generalized_advantages(rewards, values, mask, gamma=0.9, lam=0.5)
    delta_1 = 1.0 + 0.9 * 0.0 - 0.2
    delta_0 = 0.0 + 0.9 * 0.2 - 0.5
    assert torch.allclose(advantages, torch.tensor([[delta_0 + 0.9 * 0.5 * delta_1, delta_1, 0.0]]))
    assert torch.allclose(returns, advantages + values * mask)
    # gamma = lam = 1: the advantage is the return to the end minus the value (Monte Carlo)
    advantages, returns = generalized_advantages(rewards, values, mask, gamma=1.0, lam=1.0)
    assert torch.allclose(returns, torch.tensor([[1.0, 1.0, 0.0]]))


def test_whitening_is_over_answer_tokens_only():
    values = torch.tensor([[1.0, 2.0, 100.0], [3.0, 4.0, 5.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0]])
    whitened = masked_whiten(values, mask)
    kept = whitened[mask.bool()]
    assert kept.mean().abs() < 1e-6 and (kept.pow(2).mean() - 1).abs() < 1e-4 and whitened[0, 2] == 0


def test_clipped_losses():
    old = torch.zeros(1, 2)
    advantages, mask = torch.tensor([[1.0, -1.0]]), torch.ones(1, 2)
    loss, stats = clipped_policy_loss(old, old, advantages, mask, clip_range=0.2)
    assert loss.item() == 0.0 and stats["clip_fraction"] == 0.0  # ratio 1: the first epoch's gradient is plain PG
    # The ratio 2 on a positive advantage is clipped at 1.2; on a negative one the unclipped term is the larger loss.
    new = torch.log(torch.tensor([[2.0, 2.0]]))
    loss, stats = clipped_policy_loss(new, old, advantages, mask, clip_range=0.2)
    assert loss.item() == pytest.approx((-1.2 + 2.0) / 2) and stats["clip_fraction"] == 0.5
    values, returns = torch.tensor([[1.0, 0.1]]), torch.tensor([[1.0, 1.0]])
    loss, stats = clipped_value_loss(values, torch.zeros(1, 2), returns, mask, clip_range=0.2)
    # token 1: clipped value 0.2, error (0.2-1)^2 = 0.64 > 0 unclipped; token 2: 0.81 both
    assert loss.item() == pytest.approx(0.5 * (0.64 + 0.81) / 2) and stats["value_clip_fraction"] == 0.5


def test_explained_variance():
    target, mask = torch.tensor([[1.0, 2.0, 3.0, 4.0]]), torch.ones(1, 4)
    assert explained_variance(target, target, mask) == pytest.approx(1.0)
    assert explained_variance(torch.full_like(target, 7.0), target, mask) == pytest.approx(0.0)  # a constant
    assert explained_variance(-target, target, mask) < 0


def test_adaptive_kl_controller_follows_its_target():
    fixed = KLController(beta=0.1)
    fixed.update(kl_per_answer=50.0, answers=100)
    assert fixed.beta == 0.1
    adaptive = KLController(beta=0.1, target=6.0, horizon=1000)
    adaptive.update(kl_per_answer=12.0, answers=100)  # error clipped to +20%, over a tenth of the horizon
    assert adaptive.beta == pytest.approx(0.1 * 1.02)
    adaptive.update(kl_per_answer=3.0, answers=100)
    assert adaptive.beta == pytest.approx(0.1 * 1.02 * 0.98)


# A rule reward in place of a reward model: the share of answer tokens from a keyword set (40 of the 400 byte-level
# tokens, so about 0.1 for the untrained model), plus 1.0 for the Japanese prompt. The bonus depends only on the
# prompt, as part of a reward model's score does: the critic can learn it before the answer is written.
KEYWORD_IDS = set(range(3, 43))
PROMPTS = [{"prompt": pair["prompt"]} for pair in separable_pairs(4)]


def keyword_reward(prompts: list, completion_ids: list[list[int]], **_: object) -> list[float]:
    shares = [sum(token in KEYWORD_IDS for token in ids) / len(ids) for ids in completion_ids]
    bonus = [1.0 if any(ord(char) > 127 for char in prompt[-1]["content"]) else 0.0 for prompt in prompts]
    return [share + extra for share, extra in zip(shares, bonus)]


def rule_reward_trainer(model_dir, stage_dir, beta: float, steps: int):
    recipe = Recipe.model_validate({
        "run": {"seed": 0},
        "model": {"base": str(model_dir), "quantization": "none"},
        # The tiny random model's LM head makes nearly uniform logits; an adapter on it lets the policy move.
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj", "lm_head"]},
        "train": {"max_steps": steps, "batch_size": 16, "max_length": 64, "learning_rate": 5e-3, "precision": "fp32",
                  "warmup_steps": 0, "lr_scheduler": "constant", "logging_steps": 1, "save_steps": 1000},
        "rlhf": {"algorithm": "ppo", "beta": beta, "max_completion_length": 4,
                 "ppo": {"critic_init": "policy", "missing_eos_penalty": 0.0}},
    })
    torch.manual_seed(0)
    base = models.load_causal_lm(str(model_dir), recipe.model, torch.float32)
    model = ppo_roles.with_policy_adapter(base, recipe.lora)
    tokenizer = models.load_tokenizer(str(model_dir))
    return build_trainer(recipe, model, tokenizer, stage_dir, PROMPTS, None, [keyword_reward], [1.0])


def adapter_weights(model, name: str) -> dict[str, torch.Tensor]:
    return {key.replace(f".{name}.", "."): value.detach().clone() for key, value in model.named_parameters()
            if f".{name}." in key}


def test_ppo_raises_a_rule_reward_and_its_critic_learns(tiny_model_dir, tmp_path, one_thread):
    trainer = rule_reward_trainer(tiny_model_dir, tmp_path, beta=0.05, steps=16)
    reference_before = adapter_weights(trainer.model, "ref")
    policy_before = adapter_weights(trainer.model, "default")
    assert all(torch.equal(reference_before[key], policy_before[key]) for key in policy_before)  # ref = start
    trainer.train()
    history = trainer.state.log_history
    summary = curve_summary(history)
    rewards = [entry["reward"] for entry in history]
    assert sum(rewards[-4:]) / 4 > sum(rewards[:4]) / 4 + 0.1  # measured: 0.35 -> 0.66
    assert summary["train_value_loss_end"] < summary["train_value_loss_start"]  # measured: 0.062 -> 0.020
    assert summary["train_explained_variance_end"] > 0  # measured: 0.85
    # The KL-regularised optimum gains at most its reward range over KL/beta, so KL <= range / beta = 20 nats.
    assert max(entry["kl"] for entry in history) < 1.0 / 0.05  # measured: 6.4
    # The reference is the starting policy, frozen; the policy moved.
    assert all(torch.equal(value, reference_before[key]) for key, value in adapter_weights(trainer.model, "ref").items())
    assert any(not torch.equal(value, policy_before[key]) for key, value in adapter_weights(trainer.model, "default").items())
    assert trainer.model.active_adapter == "default"  # what is saved and evaluated is the policy


def test_a_strong_kl_penalty_keeps_the_policy_near_its_reference(tiny_model_dir, tmp_path, one_thread):
    strong = rule_reward_trainer(tiny_model_dir, tmp_path / "strong", beta=1.0, steps=8)
    weak = rule_reward_trainer(tiny_model_dir, tmp_path / "weak", beta=0.05, steps=8)
    strong.train()
    weak.train()
    strong_kl = [entry["kl"] for entry in strong.state.log_history]
    weak_kl = [entry["kl"] for entry in weak.state.log_history]
    assert max(strong_kl) < 1.0 / 1.0  # the bound above with beta = 1; measured 0.44
    assert sum(strong_kl) < sum(weak_kl) / 3  # measured: 0.84 against 4.9
