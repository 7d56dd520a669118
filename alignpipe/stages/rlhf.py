"""RLHF: align the SFT policy with preferences, offline (DPO family) or online against the reward model (GRPO,
RLOO, PPO).

    alignpipe rlhf recipes/demo.yaml                       # dpo, after `alignpipe sft` and `alignpipe rm`
    alignpipe rlhf recipes/demo-grpo.yaml                  # online: sample, score with the rm stage, reinforce
    alignpipe rlhf recipes/demo-ppo.yaml                   # actor-critic PPO, all roles on one base
    alignpipe rlhf recipes/demo.yaml rlhf.algorithm=dpo rlhf.loss_type=ipo run.name=ipo

Reads like a recipe: find the parent policy and the reward model, load data in the algorithm's format, load the
base with the parent's adapter as the trainable policy (a frozen copy of it is the reference: no second copy of
the model), build the trainer (TRL's; ours for PPO, which TRL removed: ppo.py), train, then answer held-out
prompts before and after and score both with the reward model, save, record. The algorithms are listed in
alignpipe/algorithms.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from accelerate.utils import is_peft_model
from datasets import Dataset
from transformers import set_seed

from alignpipe import data, models, ppo_roles, ppo_trainer, runs, template_check
from alignpipe.algorithms import ALGORITHMS
from alignpipe.config import Recipe
from alignpipe.plots import REWARD_SERIES, save_curve_panels, save_training_curves
from alignpipe.policy_eval import compare_before_after, keep_reference_adapter, write_samples
from alignpipe.reward import RewardModel, load_reward_model
from alignpipe.training import (TORCH_DTYPES, common_training_arguments, keep_trainable_weights_in_run_precision,
                                train_and_record)

STAGE = "rlhf"

def run(recipe: Recipe) -> Path:
    settings = recipe.rlhf
    algorithm = ALGORITHMS[settings.algorithm]
    online = algorithm.online
    if algorithm.critic:
        ppo_trainer.check_recipe(recipe)
    runs.refuse_finished(runs.stage_dir_for(recipe, STAGE))
    parent = runs.resolve_parent(recipe, STAGE, settings.parent)
    reward_stage = runs.resolve_reward_model(recipe, settings.reward_model, settings.algorithm if online else None)
    if algorithm.critic and reward_stage is not None:
        ppo_roles.check_reward_model(recipe, reward_stage)

    base_path = models.resolve_base(recipe.model.base)
    tokenizer = models.parent_or_base_tokenizer(parent, recipe.model)
    train_records, eval_records, data_lineage = data.load_train_and_eval(
        recipe.data, recipe.run.seed, ALGORITHMS[settings.algorithm].data
    )
    template_check.preflight(tokenizer, train_records, assistant_only_loss=False, source=str(recipe.data.train))
    eval_prompts = held_out_prompts(eval_records, settings.eval_prompts)
    print(f"Data: {len(train_records)} training examples, {len(eval_prompts)} held-out prompts "
          f"for the before/after comparison", flush=True)

    # PPO keeps all four roles on one base: its reward model is an adapter of the policy's model (ppo_roles.py).
    shared_base = algorithm.critic
    reward_model = load_reward_model(reward_stage) if reward_stage is not None and not shared_base else None
    set_seed(recipe.run.seed)
    parent_adapter = parent / "adapter" if parent is not None else None
    model = models.load_policy(base_path, recipe.model, parent_adapter, dtype=TORCH_DTYPES[recipe.train.precision])
    if shared_base:
        model = ppo_roles.with_policy_adapter(model, recipe.lora)
        reward_model = ppo_roles.add_reward_model(model, reward_stage) if reward_stage is not None else None

    title = f"{recipe.run.name}: rlhf ({settings.algorithm})"
    with runs.stage_run(recipe, STAGE, parent=parent, data_lineage=data_lineage, title=title,
                        reward_model=str(reward_stage) if reward_stage is not None else None,
                        **runs.parent_standing([parent, reward_stage])) as run:
        trainer = build_trainer(recipe, model, tokenizer, run.dir, train_records, eval_records, reward_model)
        keep_trainable_weights_in_run_precision(trainer.model, recipe.train.precision)
        if parent is not None:
            keep_reference_adapter(trainer.model)
        metrics = run.metrics
        train_and_record(trainer, run.resume_checkpoint, metrics)
        run.log_history = log = trainer.state.log_history
        if online:
            metrics.update(training_reward_trend(log))
        if algorithm.critic:
            metrics.update(ppo_trainer.curve_summary(log))
        if not online and eval_records:
            metrics.update(implicit_reward_metrics(trainer.evaluate()))
        if runs.is_main_process():  # generation is per process: rank 0 measures, saves and draws
            if eval_prompts:
                evidence, samples = compare_before_after(
                    trainer.model, tokenizer, eval_prompts, reward_model, settings.max_completion_length
                )
                metrics.update(evidence)
                write_samples(run.dir, samples)
            # Only the policy: the reference adapter is the parent's, saved there already.
            trainer.model.save_pretrained(str(run.dir / "adapter"), selected_adapters=["default"])
            tokenizer.save_pretrained(str(run.dir / "adapter"))
            save_training_curves(log, run.dir / "reward.png", title=title, names=REWARD_SERIES)
            if algorithm.critic:
                save_curve_panels(log, run.dir / "ppo.png", title=title, names=ppo_trainer.CURVES)
                runs.update_manifest(run.dir, curves=ppo_trainer.curves(log))

    if runs.is_main_process():
        print_summary(run.dir, settings.algorithm, metrics)
    return run.dir


def held_out_prompts(eval_records: Dataset | list, limit: int) -> list[list[dict[str, str]]]:
    """Distinct prompts of the held-out data, in file order (pair and KTO files repeat prompts)."""
    prompts: list[list[dict[str, str]]] = []
    for record in eval_records:
        if record["prompt"] and record["prompt"] not in prompts:
            prompts.append(record["prompt"])
    return prompts[:limit]


def build_trainer(
    recipe: Recipe,
    model: Any,
    tokenizer: Any,
    stage_dir: Path,
    train_records: Dataset,
    eval_records: Dataset | list,
    reward_model: RewardModel | None,
) -> Any:
    """The algorithm's trainer (TRL's; ppo_trainer's for ppo), training the parent's adapter (or a fresh one on the bare
    base)."""
    settings = recipe.rlhf
    algorithm = settings.algorithm
    beta = settings.beta if settings.beta is not None else ALGORITHMS[algorithm].default_beta
    # Evaluation runs once, after training (implicit rewards + the before/after comparison), not periodically.
    common = common_training_arguments(recipe, stage_dir, has_eval=False)
    datasets = {
        "train_dataset": train_records,
        "eval_dataset": eval_records if len(eval_records) and not ALGORITHMS[algorithm].online else None,
        "processing_class": tokenizer,
        # With a parent the model carries its adapter already (TRL keeps a frozen copy as the reference);
        # from the bare base a fresh adapter is made, and the reference is the base with it disabled.
        "peft_config": None if is_peft_model(model) else models.lora_config(recipe.lora, task_type="CAUSAL_LM"),
    }
    if algorithm == "dpo":
        from trl import DPOConfig, DPOTrainer

        loss_type = [settings.loss_type] if isinstance(settings.loss_type, str) else settings.loss_type
        args = DPOConfig(
            **common, beta=beta, loss_type=loss_type, precompute_ref_log_probs=settings.precompute_ref_log_probs
        )
        return DPOTrainer(model=model, args=args, **datasets)
    if algorithm == "kto":
        from trl import KTOConfig, KTOTrainer

        return KTOTrainer(model=model, args=KTOConfig(**common, beta=beta), **datasets)
    if algorithm == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOTrainer(model=model, args=ORPOConfig(**common, beta=beta), **datasets)
    if algorithm == "simpo":
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        # SimPO is CPO's trainer with the SimPO loss and no behaviour-cloning term (TRL's documented recipe).
        args = CPOConfig(**common, beta=beta, loss_type="simpo", cpo_alpha=0.0, simpo_gamma=settings.simpo_gamma)
        return CPOTrainer(model=model, args=args, **datasets)

    # Online: grpo or rloo. They generate, so they bound completions, not whole sequences.
    assert reward_model is not None  # resolve_reward_model refused to go on without one
    del common["max_length"]
    reward_functions = [reward_model_reward(reward_model)] + [RULE_REWARDS[name] for name in settings.rule_rewards]
    if algorithm == "ppo":
        return ppo_trainer.build_trainer(recipe, model, tokenizer, stage_dir, train_records, reward_model,
                                         reward_functions, [1.0, *settings.rule_rewards.values()])
    online = {
        "beta": beta,
        "num_generations": settings.num_generations,
        "max_completion_length": settings.max_completion_length,
        "temperature": settings.temperature,
        "reward_weights": [1.0, *settings.rule_rewards.values()],
    }
    if algorithm == "grpo":
        from trl import GRPOConfig, GRPOTrainer

        return GRPOTrainer(model=model, reward_funcs=reward_functions, args=GRPOConfig(**common, **online), **datasets)
    from trl import RLOOConfig, RLOOTrainer

    return RLOOTrainer(model=model, reward_funcs=reward_functions, args=RLOOConfig(**common, **online), **datasets)


def reward_model_reward(reward_model: RewardModel) -> Any:
    """A TRL reward function: the rm stage's score of prompt + completion, normalised by its training statistics."""

    def reward_model_score(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        conversations = [
            data.as_messages(prompt, "user") + data.as_messages(completion, "assistant")
            for prompt, completion in zip(prompts, completions)
        ]
        return reward_model.normalized(conversations)

    return reward_model_score


def length_penalty(completion_ids: list[list[int]], **_: Any) -> list[float]:
    """-(tokens / 100): with a weight, pulls against the long answers reward models tend to prefer."""
    return [-len(ids) / 100 for ids in completion_ids]


def toxicity_penalty(completions: list[Any], **_: Any) -> list[float]:
    """-(toxicity in [0, 1]) of each answer, by the gate's offline EN/JA toxicity scorer."""
    from alignpipe.gate.toxicity import LexiconToxicityScorer

    texts = [completion if isinstance(completion, str) else completion[-1]["content"] for completion in completions]
    return [-score for score in LexiconToxicityScorer().score(texts)]


RULE_REWARDS = {"length": length_penalty, "toxicity": toxicity_penalty}


def training_reward_trend(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """Mean reward of the sampled completions over the first and the last quarter of the logged steps."""
    rewards = [entry["reward"] for entry in log_history if "reward" in entry]
    if len(rewards) < 4:
        return {}
    quarter = len(rewards) // 4
    return {"train_reward_start": sum(rewards[:quarter]) / quarter, "train_reward_end": sum(rewards[-quarter:]) / quarter}


def implicit_reward_metrics(evaluation: dict[str, float]) -> dict[str, float]:
    """DPO-family implicit rewards on the held-out pairs: how often chosen beats rejected, and by how much."""
    names = {"eval_rewards/accuracies": "eval_implicit_reward_accuracy", "eval_rewards/margins": "eval_implicit_reward_margin"}
    return {ours: evaluation[theirs] for theirs, ours in names.items() if theirs in evaluation}


def print_summary(stage_dir: Path, algorithm: str, metrics: dict[str, float]) -> None:
    print(f"\nRLHF ({algorithm}) finished: {stage_dir} (status trained)")
    if "eval_reward_before" in metrics:
        print(f"  held-out reward (rm score) {metrics['eval_reward_before']:.3f} (before) -> "
              f"{metrics['eval_reward_after']:.3f} (after); win rate {metrics['eval_win_rate']:.2f}")
    if "train_reward_start" in metrics:
        print(f"  reward of sampled answers while training {metrics['train_reward_start']:.3f} (first quarter) -> "
              f"{metrics['train_reward_end']:.3f} (last quarter)")
    if "eval_kl_to_reference" in metrics:
        print(f"  KL to the reference {metrics['eval_kl_to_reference']:.3f} per answer; "
              f"answers changed {metrics['eval_answers_changed']:.0%}")
    if "eval_implicit_reward_accuracy" in metrics:
        print(f"  implicit reward accuracy on held-out pairs {metrics['eval_implicit_reward_accuracy']:.3f}, "
              f"margin {metrics['eval_implicit_reward_margin']:.3f}")
    print(f"  samples: {stage_dir / 'samples.jsonl'}   curves: {stage_dir / 'loss.png'}, {stage_dir / 'reward.png'}",
          flush=True)
