"""The PPO loop of ppo.py as a trainer the rlhf stage drives as it drives TRL's: train(), state.log_history, model.

Each step: sample answers (rollout), score them, advantages, rlhf.ppo.epochs of updates, log, checkpoint. Sizes:
train.batch_size answers per step (one per prompt), split into rlhf.ppo.num_mini_batches optimizer steps per
epoch, each split into train.gradient_accumulation_steps micro-batches for memory. The learning rate follows
train.lr_scheduler over the steps. A checkpoint (checkpoints/checkpoint-N) holds the trained adapters and value
head, optimizer, scheduler, beta and the log; each step's sampling and mini-batch order are seeded by run.seed
and the step number, so a resumed run draws exactly what an uninterrupted one would have.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable

import torch

from alignpipe import models, runs
from alignpipe.algorithms import ALGORITHMS
from alignpipe.config import Recipe
from alignpipe.errors import AlignpipeError
from alignpipe.policy_eval import answer_text, keep_reference_adapter
from alignpipe.ppo import (KLController, Rollout, answer_logprobs, answer_values, clipped_policy_loss,
                           clipped_value_loss, explained_variance, generalized_advantages, masked_mean, masked_whiten,
                           per_token_rewards)
from alignpipe.ppo_roles import CRITIC, POLICY, REFERENCE, acting_as, add_critic, disable_dropout
from alignpipe.reward import RewardModel

# The training curves: in the manifest (`curves`), summarised in its metrics, and plotted in ppo.png.
CURVES = ("reward", "kl", "value_loss", "explained_variance", "clip_fraction", "entropy")

RewardFunction = Callable[..., list[float]]  # TRL's convention: f(prompts=, completions=, completion_ids=) -> rewards


def check_recipe(recipe: Recipe) -> None:
    """Refuse sizes that cannot work, before anything is loaded."""
    settings, train = recipe.rlhf, recipe.train
    if settings.max_completion_length >= train.max_length:
        raise AlignpipeError(f"rlhf.max_completion_length={settings.max_completion_length} (the rollout length) must be "
                             f"shorter than train.max_length={train.max_length}, which holds prompt and answer.")
    parts = settings.ppo.num_mini_batches * train.gradient_accumulation_steps
    if train.batch_size < parts:
        raise AlignpipeError(f"train.batch_size={train.batch_size} answers per step cannot be split into "
                             f"rlhf.ppo.num_mini_batches x train.gradient_accumulation_steps = {parts} parts.")
    if runs.world_size() > 1:
        raise AlignpipeError("rlhf.algorithm=ppo runs in one process; drop --nproc.")


def build_trainer(recipe: Recipe, model: Any, tokenizer: Any, stage_dir: Path, train_records: list[dict[str, Any]],
                  reward_model: RewardModel | None, reward_functions: list[RewardFunction],
                  reward_weights: list[float]) -> PPOTrainer:
    """Give the policy (adapter "default") its reference and critic, and the loop that trains them."""
    disable_dropout(model)  # N+ details: the ratio of the first PPO epoch must be exactly 1
    keep_reference_adapter(model)
    value_head = add_critic(model, recipe.rlhf.ppo.critic_init, reward_model)
    model.set_adapter(POLICY)
    if recipe.model.uses_gradient_checkpointing():
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    prompts = [record["prompt"] for record in train_records]
    return PPOTrainer(model, value_head, tokenizer, prompts, reward_functions, reward_weights, recipe, stage_dir)


def curves(log_history: list[dict[str, Any]]) -> dict[str, list[list[float]]]:
    """[step, value] pairs of each curve, as logged."""
    return {name: [[entry["step"], entry[name]] for entry in log_history if name in entry] for name in CURVES}


def curve_summary(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """Each curve's mean over the first and the last quarter of the logged steps (the first and last entry when
    fewer than four were logged): train_value_loss_start, train_value_loss_end, ..."""
    summary = {}
    for name, points in curves(log_history).items():
        if name == "reward" or not points:  # the reward's trend is training_reward_trend's, as for grpo and rloo
            continue
        quarter = max(1, len(points) // 4)
        summary[f"train_{name}_start"] = sum(value for _, value in points[:quarter]) / quarter
        summary[f"train_{name}_end"] = sum(value for _, value in points[-quarter:]) / quarter
    return summary


@dataclass
class TrainState:
    global_step: int = 0
    max_steps: int = 0
    log_history: list[dict[str, Any]] = field(default_factory=list)


class PPOTrainer:
    def __init__(self, model: Any, value_head: torch.nn.Linear, tokenizer: Any, prompts: list[list[dict[str, str]]],
                 reward_functions: list[RewardFunction], reward_weights: list[float], recipe: Recipe,
                 stage_dir: Path) -> None:
        self.model, self.value_head, self.tokenizer = model, value_head, tokenizer
        self.reward_functions, self.reward_weights = reward_functions, reward_weights
        self.recipe, self.settings, self.train_settings = recipe, recipe.rlhf.ppo, recipe.train
        self.temperature, self.seed = recipe.rlhf.temperature, recipe.run.seed
        self.checkpoints = runs.checkpoints_dir(stage_dir)
        self.prompts, self.prompt_ids = self.prompts_that_fit(prompts)
        self.stop_ids = sorted(models.stop_token_ids(model, tokenizer))
        batch = recipe.train.batch_size
        self.micro_batch_size = max(1, batch // (self.settings.num_mini_batches * recipe.train.gradient_accumulation_steps))
        steps = recipe.train.max_steps
        if steps <= 0:  # train.max_steps=-1: train.epochs passes over the prompts
            steps = math.ceil(len(self.prompts) * recipe.train.epochs / batch)
        self.state = TrainState(max_steps=steps)
        beta = recipe.rlhf.beta if recipe.rlhf.beta is not None else ALGORITHMS["ppo"].default_beta
        self.kl = KLController(beta, self.settings.kl_target, self.settings.kl_horizon)
        self.trainables = {name: parameter for name, parameter in model.named_parameters()
                           if f".{POLICY}." in name or f".{CRITIC}." in name}
        self.trainables |= {f"value_head.{name}": parameter for name, parameter in value_head.named_parameters()}
        for parameter in self.trainables.values():
            parameter.requires_grad_(True)
        self.optimizer, self.scheduler = self.optimizer_and_scheduler()

    def prompts_that_fit(self, prompts: list[list[dict[str, str]]]) -> tuple[list[Any], list[list[int]]]:
        """Prompts with room for a whole answer in train.max_length; the others are left out, and said so."""
        room = self.train_settings.max_length - self.recipe.rlhf.max_completion_length
        kept, ids = [], []
        for prompt in prompts:
            text = self.tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            tokens = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(tokens) <= room:
                kept.append(prompt)
                ids.append(tokens)
        if not kept:
            raise AlignpipeError(f"Every prompt is longer than train.max_length - rlhf.max_completion_length = {room} "
                                 "tokens; raise train.max_length.")
        if len(kept) < len(prompts):
            print(f"warning: {len(prompts) - len(kept)} of {len(prompts)} prompts leave no room for a "
                  f"{self.recipe.rlhf.max_completion_length}-token answer in train.max_length and are left out.")
        return kept, ids

    def optimizer_and_scheduler(self) -> tuple[Any, Any]:
        """train.optimizer and train.lr_scheduler by their transformers names, as every other stage gets them."""
        from transformers import Trainer, TrainingArguments, get_scheduler

        train = self.train_settings
        args = TrainingArguments(output_dir=str(self.checkpoints), optim=train.optimizer, learning_rate=train.learning_rate,
                                 weight_decay=train.weight_decay, warmup_steps=train.warmup_steps, report_to=[],
                                 use_cpu=not torch.cuda.is_available())
        optimizer_class, optimizer_arguments = Trainer.get_optimizer_cls_and_kwargs(args)
        optimizer = optimizer_class(list(self.trainables.values()), **optimizer_arguments)
        scheduler = get_scheduler(train.lr_scheduler, optimizer, num_training_steps=self.state.max_steps,
                                  num_warmup_steps=args.get_warmup_steps(self.state.max_steps))
        return optimizer, scheduler

    def autocast(self) -> Any:
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.train_settings.precision)
        return torch.autocast(self.model.device.type, dtype=dtype, enabled=dtype is not None)

    def train(self, resume_from_checkpoint: str | None = None) -> SimpleNamespace:
        first = self.load_checkpoint(Path(resume_from_checkpoint)) + 1 if resume_from_checkpoint else 1
        losses: list[float] = []
        window: list[dict[str, float]] = []
        started = time.perf_counter()
        for step in range(first, self.state.max_steps + 1):
            rollout, stats = self.rollout(step)
            stats |= self.update(rollout, torch.Generator().manual_seed(self.seed + step))
            stats["loss"] = stats["policy_loss"] + self.settings.value_coef * stats["value_loss"]
            stats["beta"], stats["learning_rate"] = self.kl.beta, self.scheduler.get_last_lr()[0]
            self.kl.update(stats["kl"], len(rollout.sequences))
            self.scheduler.step()
            self.state.global_step = step
            losses.append(stats["loss"])
            window.append(stats)
            if step % self.train_settings.logging_steps == 0 or step == self.state.max_steps:
                self.log(step, window, time.perf_counter() - started)
                window = []
            if step % self.train_settings.save_steps == 0 and step < self.state.max_steps:
                self.save_checkpoint(step)
        self.model.set_adapter(POLICY)
        return SimpleNamespace(training_loss=sum(losses) / max(len(losses), 1), global_step=self.state.global_step)

    def batch_indices(self, step: int) -> list[int]:
        """The prompts of a step: consecutive slices of seeded permutations, one permutation per pass."""
        count, size = len(self.prompts), self.train_settings.batch_size
        indices = []
        for position in range((step - 1) * size, step * size):
            permutation = torch.randperm(count, generator=torch.Generator().manual_seed(self.seed + position // count))
            indices.append(int(permutation[position % count]))
        return indices

    @torch.no_grad()
    def rollout(self, step: int) -> tuple[Rollout, dict[str, float]]:
        """Sample answers, score them, and compute the advantages and returns the PPO epochs train on."""
        indices = self.batch_indices(step)
        self.model.eval()
        sequences, attention_mask, width = self.sample([self.prompt_ids[i] for i in indices], seed=self.seed + step)
        answers = sequences[:, width:]
        is_stop = torch.isin(answers, torch.tensor(self.stop_ids, device=answers.device))
        mask = ((is_stop.int().cumsum(1) - is_stop.int()) == 0).float()  # up to and including the first EOS
        has_eos = is_stop.any(1)
        rollout = Rollout(sequences, attention_mask, width, mask, logprobs=torch.zeros_like(mask),
                          values=torch.zeros_like(mask), advantages=torch.zeros_like(mask), returns=torch.zeros_like(mask))
        ref_logprobs = torch.zeros_like(mask)
        # Micro-batches, as in training: the vocabulary-wide logits of a whole rollout would not fit on a GPU.
        for rows in torch.arange(len(sequences), device=sequences.device).split(self.micro_batch_size):
            part = rollout.rows(rows)
            with self.autocast():
                rollout.logprobs[rows] = answer_logprobs(self.model, part, self.temperature)[0]
                with acting_as(self.model, REFERENCE):
                    ref_logprobs[rows] = answer_logprobs(self.model, part, self.temperature)[0]
                with acting_as(self.model, CRITIC):
                    rollout.values[rows] = answer_values(self.model, self.value_head, part).float()
        scores = self.score([self.prompts[i] for i in indices], answers, mask, has_eos)
        rewards, kl = per_token_rewards(scores, rollout.logprobs, ref_logprobs, mask, self.kl.beta)
        advantages, rollout.returns = generalized_advantages(rewards, rollout.values, mask, self.settings.gamma,
                                                             self.settings.lam)
        rollout.advantages = masked_whiten(advantages, mask) if self.settings.whiten_advantages else advantages
        stats = {"reward": scores.mean().item(), "kl": kl.mean().item(), "answer_length": mask.sum(1).mean().item(),
                 "eos_rate": has_eos.float().mean().item(),
                 "explained_variance": explained_variance(rollout.values, rollout.returns, mask)}
        return rollout, stats

    def sample(self, prompt_ids: list[list[int]], seed: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Left-padded prompts and the policy's sampled answers: plain sampling at the recipe's temperature."""
        width = max(len(ids) for ids in prompt_ids)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(prompt_ids), width), pad, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(prompt_ids):
            input_ids[row, width - len(ids):] = torch.tensor(ids)
            attention_mask[row, width - len(ids):] = 1
        input_ids, attention_mask = input_ids.to(self.model.device), attention_mask.to(self.model.device)
        torch.manual_seed(seed)
        with self.autocast():
            sequences = self.model.generate(
                input_ids=input_ids, attention_mask=attention_mask, do_sample=True, temperature=self.temperature,
                top_k=0, top_p=1.0, repetition_penalty=1.0, max_new_tokens=self.recipe.rlhf.max_completion_length,
                eos_token_id=self.stop_ids, pad_token_id=pad,
            )
        answer_mask = torch.ones_like(sequences[:, width:])
        return sequences, torch.cat([attention_mask, answer_mask], dim=1), width

    def score(self, prompts: list[Any], answers: torch.Tensor, mask: torch.Tensor, has_eos: torch.Tensor) -> torch.Tensor:
        """The weighted rewards of the answers (reward model first), less the penalty for answers cut off."""
        ids = [row[: int(length)].tolist() for row, length in zip(answers, mask.sum(1))]
        completions = [[{"role": "assistant", "content": answer_text(self.tokenizer, row)}] for row in ids]
        total = torch.zeros(len(ids))
        for function, weight in zip(self.reward_functions, self.reward_weights):
            total += weight * torch.tensor(function(prompts=prompts, completions=completions, completion_ids=ids),
                                           dtype=torch.float32)
        total -= self.settings.missing_eos_penalty * (~has_eos).float().cpu()
        return total.to(answers.device)

    def update(self, rollout: Rollout, generator: torch.Generator) -> dict[str, float]:
        """rlhf.ppo.epochs passes over shuffled mini-batches, one optimizer step each; the mean statistics."""
        self.model.train()
        micro_batches = self.train_settings.gradient_accumulation_steps  # per mini-batch
        totals: dict[str, float] = {}
        count = 0
        for _ in range(self.settings.epochs):
            order = torch.randperm(len(rollout.sequences), generator=generator).to(rollout.sequences.device)
            for mini_batch in order.chunk(self.settings.num_mini_batches):
                for micro in mini_batch.chunk(micro_batches):
                    for name, value in self.backward(rollout.rows(micro), micro_batches).items():
                        totals[name] = totals.get(name, 0.0) + value
                    count += 1
                torch.nn.utils.clip_grad_norm_(list(self.trainables.values()), self.train_settings.max_grad_norm)
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
        return {name: value / count for name, value in totals.items()}

    def backward(self, part: Rollout, micro_batches: int) -> dict[str, float]:
        """Gradients of the clipped policy loss (policy adapter) and the clipped value loss (critic) of a micro-batch.

        Each backward pass runs while its role is active: leaving a role freezes its adapter (requires_grad=False),
        and autograd drops the gradient of a parameter frozen before the backward pass reaches it.
        """
        with acting_as(self.model, POLICY):
            with self.autocast():
                logprobs, entropy = answer_logprobs(self.model, part, self.temperature, with_entropy=True)
                policy_loss, policy_stats = clipped_policy_loss(logprobs, part.logprobs, part.advantages, part.mask,
                                                                self.settings.clip_range)
            (policy_loss / micro_batches).backward()
        with acting_as(self.model, CRITIC):
            with self.autocast():
                values = answer_values(self.model, self.value_head, part).float()
                value_loss, value_stats = clipped_value_loss(values, part.values, part.returns, part.mask,
                                                             self.settings.value_clip_range)
            (self.settings.value_coef * value_loss / micro_batches).backward()
        return {"policy_loss": policy_loss.item(), "value_loss": value_loss.item(),
                "entropy": masked_mean(entropy.detach(), part.mask).item(), **policy_stats, **value_stats}

    def log(self, step: int, window: list[dict[str, float]], seconds: float) -> None:
        entry = {name: sum(stats[name] for stats in window) / len(window) for name in window[0]}
        entry["step"] = step
        self.state.log_history.append(entry)
        print(f"ppo step {step}/{self.state.max_steps}: reward {entry['reward']:.3f}, kl {entry['kl']:.3f}, "
              f"value loss {entry['value_loss']:.4f}, explained variance {entry['explained_variance']:.2f}, "
              f"clip {entry['clip_fraction']:.2f}, entropy {entry['entropy']:.2f} ({seconds:.0f} s)", flush=True)

    def save_checkpoint(self, step: int) -> None:
        """Written beside its final name, then renamed: a run killed while saving leaves no half checkpoint."""
        from safetensors.torch import save_file

        final, temporary = self.checkpoints / f"checkpoint-{step}", self.checkpoints / f".checkpoint-{step}.tmp"
        shutil.rmtree(temporary, ignore_errors=True)
        temporary.mkdir(parents=True)
        save_file({name: value.detach().cpu().contiguous() for name, value in self.trainables.items()},
                  temporary / "trainable.safetensors")
        torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()},
                   temporary / "optimizer.pt")
        state = {"global_step": step, "max_steps": self.state.max_steps, "beta": self.kl.beta,
                 "log_history": self.state.log_history}
        (temporary / "trainer_state.json").write_text(json.dumps(state, indent=1), encoding="utf-8")
        temporary.rename(final)
        saved = sorted(self.checkpoints.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
        for old in saved[: -self.train_settings.save_total_limit]:
            shutil.rmtree(old, ignore_errors=True)

    def load_checkpoint(self, folder: Path) -> int:
        from safetensors.torch import load_file

        weights = load_file(folder / "trainable.safetensors")
        for name, parameter in self.trainables.items():
            parameter.data.copy_(weights[name].to(parameter.device))
        saved = torch.load(folder / "optimizer.pt", map_location=self.model.device, weights_only=True)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        self.kl.beta, self.state.log_history = state["beta"], state["log_history"]
        self.state.global_step = state["global_step"]
        return state["global_step"]
