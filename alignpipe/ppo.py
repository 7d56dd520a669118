"""Actor-critic PPO for RLHF, our own compact implementation (TRL removed its PPOTrainer in 1.13).

    alignpipe rlhf recipes/demo-ppo.yaml          # after the demo's sft and rm stages

The algorithm as InstructGPT (Ouyang et al. 2022) trained it and as Huang et al. 2024, "The N+ Implementation
Details of RLHF with PPO", fixed the details. One step:
  1. rollout: the policy samples one answer per prompt of a batch (temperature, the full distribution);
  2. the reward model scores each answer, normalised by its recorded mean/std; an answer without EOS loses
     rlhf.ppo.missing_eos_penalty; the per-token reward is -beta * (log pi - log pi_ref), the score is added on
     the answer's last token;
  3. the critic gives a value per token; GAE (gamma, lam; Schulman et al. 2016) gives advantages and returns;
     advantages are whitened over the batch;
  4. rlhf.ppo.epochs passes over mini-batches: clipped policy loss, clipped value loss, gradient clipping;
  5. beta stays fixed, or follows the adaptive KL controller of Ziegler et al. 2019 (rlhf.ppo.kl_target).
Policy, reference, critic and reward model are adapters of one loaded base (ppo_roles.py). The losses below are
pure functions of tensors, tested on their own; PPOTrainer runs the loop, logs and checkpoints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from alignpipe.ppo_roles import last_hidden_states


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (values * mask).sum() / mask.sum().clamp(min=1)


def masked_whiten(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean 0 and standard deviation 1 over the answer tokens (N+ details: advantage whitening)."""
    mean = masked_mean(values, mask)
    variance = masked_mean((values - mean) ** 2, mask)
    return (values - mean) * torch.rsqrt(variance + 1e-8) * mask


def per_token_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor,
                      beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(rewards [batch, tokens], KL per answer [batch]): the KL penalty on every token, the score on the last one."""
    kl = (logprobs - ref_logprobs) * mask
    rewards = -beta * kl
    last = (mask.sum(1) - 1).long().clamp(min=0)
    rewards[torch.arange(len(scores)), last] += scores
    return rewards, kl.sum(1)


def generalized_advantages(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float,
                           lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE over the answer tokens, right to left; tokens after EOS have neither reward nor value."""
    values = values * mask
    advantages = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        next_value = values[:, t + 1] if t + 1 < rewards.shape[1] else torch.zeros_like(running)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = delta + gamma * lam * running
        advantages[:, t] = running
    return advantages * mask, (advantages + values) * mask


def clipped_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                        mask: torch.Tensor, clip_range: float) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate (Schulman et al. 2017), averaged over answer tokens."""
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1 - clip_range, 1 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    stats = {"clip_fraction": masked_mean((clipped > unclipped).float(), mask).item(),
             "approx_kl": (0.5 * masked_mean((logprobs - old_logprobs) ** 2, mask)).item()}
    return loss, stats


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                       clip_range: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Squared error to the returns, the update clipped around the rollout's values as the policy's ratio is."""
    clipped_values = old_values + (values - old_values).clamp(-clip_range, clip_range)
    unclipped_error, clipped_error = (values - returns) ** 2, (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped_error, clipped_error), mask)
    return loss, {"value_clip_fraction": masked_mean((clipped_error > unclipped_error).float(), mask).item()}


def explained_variance(predicted: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(target - predicted) / Var(target): 1 = the critic predicts the returns, 0 = no better than their mean."""
    target_mean = masked_mean(target, mask)
    target_variance = masked_mean((target - target_mean) ** 2, mask)
    error = target - predicted
    error_variance = masked_mean((error - masked_mean(error, mask)) ** 2, mask)
    return (1 - error_variance / target_variance.clamp(min=1e-8)).item()


@dataclass
class KLController:
    """beta, fixed (target None) or adaptive: proportional control of the KL per answer toward the target."""

    beta: float
    target: float | None = None
    horizon: int = 10000

    def update(self, kl_per_answer: float, answers: int) -> None:
        if self.target is None:
            return
        # Ziegler et al. 2019, section 2.2: the error is clipped to +-20%, and beta moves by it over `horizon` answers.
        error = min(max(kl_per_answer / self.target - 1, -0.2), 0.2)
        self.beta *= 1 + error * answers / self.horizon


@dataclass
class Rollout:
    """One batch of sampled answers and everything the PPO epochs need; [batch, answer tokens] unless noted."""

    sequences: torch.Tensor  # [batch, prompt + answer]: left-padded prompts, then the answers
    attention_mask: torch.Tensor  # [batch, prompt + answer]
    prompt_width: int
    mask: torch.Tensor  # 1 on answer tokens up to and including EOS
    logprobs: torch.Tensor
    values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor

    def rows(self, index: torch.Tensor) -> Rollout:
        return Rollout(self.sequences[index], self.attention_mask[index], self.prompt_width, self.mask[index],
                       self.logprobs[index], self.values[index], self.advantages[index], self.returns[index])


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that start at 0 on the first real token of a left-padded row, as generation counted them."""
    return (attention_mask.cumsum(1) - 1).clamp(min=0)


def answer_logprobs(model: Any, rollout: Rollout, temperature: float,
                    with_entropy: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(log-probability of each answer token, entropy of each answer position if asked) under the active adapter.

    Logits are divided by the sampling temperature, so that these are the probabilities the answers were drawn
    with (N+ details). Only the answer positions' logits are computed (logits_to_keep): the vocabulary-wide
    logits are the largest tensors of a step.
    """
    answers = rollout.sequences[:, rollout.prompt_width :]
    logits = model(input_ids=rollout.sequences, attention_mask=rollout.attention_mask,
                   position_ids=positions(rollout.attention_mask), logits_to_keep=answers.shape[1] + 1,
                   use_cache=False).logits
    log_probs = torch.log_softmax(logits[:, :-1].float() / temperature, dim=-1)
    token_logprobs = log_probs.gather(-1, answers.unsqueeze(-1)).squeeze(-1)
    entropy = -(log_probs.exp() * log_probs).sum(-1) if with_entropy else None
    return token_logprobs, entropy


def answer_values(model: Any, value_head: torch.nn.Linear, rollout: Rollout) -> torch.Tensor:
    """The critic's value of the state before each answer token (the hidden state of the token before it)."""
    hidden = last_hidden_states(model, rollout.sequences, rollout.attention_mask, positions(rollout.attention_mask))
    hidden = hidden[:, rollout.prompt_width - 1 : -1]
    with torch.autocast(hidden.device.type, enabled=False):  # values in fp32: bf16 keeps 3 digits of a return
        return value_head(hidden.to(value_head.weight.dtype)).squeeze(-1)
