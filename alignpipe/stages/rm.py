"""Reward-model (RM) training: a one-score head with LoRA on the SFT model, on TRL's RewardTrainer.

    alignpipe rm recipes/demo.yaml            # after `alignpipe sft recipes/demo.yaml`
    alignpipe rm recipes/demo.yaml rm.parent=none train.max_steps=5

Reads like a recipe: find the parent (this run's sft stage, or the base), load tokenizer and preference pairs,
load the base with a fresh score head and the parent's adapter (trainable: it carries on, not merged), measure the
untrained head on held-out pairs, train with the Bradley-Terry loss, measure again, save adapter + head + tokenizer, record.
"""

from __future__ import annotations

from pathlib import Path

from transformers import set_seed
from trl import RewardConfig, RewardTrainer

from alignpipe import data, models, runs, template_check
from alignpipe.config import Recipe
from alignpipe.errors import AlignpipeError
from alignpipe.reward import pair_metrics, score_pairs
from alignpipe.training import (TORCH_DTYPES, common_training_arguments, keep_trainable_weights_in_run_precision,
                                train_and_record)

STAGE = "rm"


def run(recipe: Recipe) -> Path:
    runs.refuse_finished(runs.stage_dir_for(recipe, STAGE))
    parent = runs.resolve_parent(recipe, STAGE, recipe.rm.parent)

    base_path = models.resolve_base(recipe.model.base)
    tokenizer = models.parent_or_base_tokenizer(parent, recipe.model)
    train_pairs, eval_pairs, data_lineage = data.load_train_and_eval(recipe.data, recipe.run.seed, "pairs")
    template_check.preflight(tokenizer, train_pairs, assistant_only_loss=False, source=str(recipe.data.train))
    print(f"Data: {len(train_pairs)} training and {len(eval_pairs)} held-out preference pairs", flush=True)

    set_seed(recipe.run.seed)  # the score head is initialised at load time
    parent_adapter = parent / "adapter" if parent is not None else None
    model = models.load_sequence_classifier(
        base_path, recipe.model, tokenizer, parent_adapter, dtype=TORCH_DTYPES[recipe.train.precision]
    )

    with runs.stage_run(recipe, STAGE, parent=parent, data_lineage=data_lineage,
                        title=f"{recipe.run.name}: rm") as run:
        args = RewardConfig(
            **common_training_arguments(recipe, run.dir, has_eval=bool(eval_pairs)),
            center_rewards_coefficient=recipe.rm.center_rewards_coefficient,
        )
        trainer = RewardTrainer(
            model=model,
            args=args,
            train_dataset=train_pairs,
            eval_dataset=eval_pairs if len(eval_pairs) else None,
            processing_class=tokenizer,
            # A fresh adapter only without a parent; SEQ_CLS trains the score head in full.
            peft_config=None if parent_adapter else models.lora_config(recipe.lora, task_type="SEQ_CLS"),
        )
        keep_trainable_weights_in_run_precision(trainer.model, recipe.train.precision)
        refuse_dropped_pairs(len(train_pairs), len(trainer.train_dataset), recipe.train.max_length)
        metrics = run.metrics
        # Scoring is per process (no collective): rank 0 measures, the others only train.
        if eval_pairs and "eval_accuracy_base" not in metrics and runs.is_main_process():
            # The untrained head is the baseline: a random direction, about 50% pairwise accuracy.
            metrics["eval_accuracy_base"] = pair_metrics(*score_pairs(trainer.model, tokenizer, eval_pairs))["accuracy"]
            runs.write_manifest(run.dir, run.manifest)
        train_and_record(trainer, run.resume_checkpoint, metrics)
        if runs.is_main_process():
            # Without eval pairs the training pairs give the normalisation statistics RLHF needs.
            measured = pair_metrics(*score_pairs(trainer.model, tokenizer, eval_pairs or train_pairs))
            measured_on = "eval" if eval_pairs else "train"
            metrics[f"{measured_on}_accuracy"] = measured["accuracy"]
            metrics[f"{measured_on}_margin_mean"] = measured["margin_mean"]
            metrics["reward_mean"] = measured["reward_mean"]
            metrics["reward_std"] = measured["reward_std"]
        trainer.save_model(str(run.dir / "adapter"))  # LoRA + full score head + tokenizer
        run.log_history = trainer.state.log_history

    stage_dir = run.dir
    if not runs.is_main_process():
        return stage_dir
    print(f"\nReward model finished: {stage_dir} (status trained)")
    if "eval_accuracy" in metrics:
        print(f"  held-out pairwise accuracy {metrics['eval_accuracy_base']:.3f} (untrained head) -> "
              f"{metrics['eval_accuracy']:.3f}; mean margin {metrics['eval_margin_mean']:.2f}")
    print(f"  reward mean {metrics['reward_mean']:.3f}, std {metrics['reward_std']:.3f}; adapter: {stage_dir / 'adapter'}")
    return stage_dir


def refuse_dropped_pairs(given: int, kept: int, max_length: int) -> None:
    """TRL drops pairs longer than max_length; say so rather than train on fewer, or fail inside the data loader."""
    if kept == given:
        return
    message = (f"{given - kept} of {given} training pairs are longer than train.max_length={max_length} tokens and "
               "are left out")
    if kept == 0:
        raise AlignpipeError(message + "; raise train.max_length.")
    print(f"warning: {message}.", flush=True)
