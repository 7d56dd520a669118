"""Supervised instruction tuning (SFT) with LoRA on a 4-bit, 8-bit or full-precision base, on TRL's SFTTrainer.

    alignpipe sft recipes/demo.yaml
    alignpipe sft recipes/demo.yaml train.max_steps=3 run.name=try

Reads like a recipe: check the target, load tokenizer and data, load the base model, build the trainer,
measure the base on held-out data, train (resuming when a checkpoint exists), measure again, save, record.
"""

from __future__ import annotations

import math
from pathlib import Path

from trl import SFTConfig, SFTTrainer

from alignpipe import data, models, runs, sft_tokens, template_check
from alignpipe.config import Recipe
from alignpipe.training import (TORCH_DTYPES, common_training_arguments, keep_trainable_weights_in_run_precision,
                                train_and_record)

STAGE = "sft"


def run(recipe: Recipe) -> Path:
    runs.refuse_finished(runs.stage_dir_for(recipe, STAGE))

    # Tokenizer and data first: they are cheap, and most user errors live there.
    base_path = models.resolve_base(recipe.model.base)
    tokenizer = models.load_tokenizer(base_path, recipe.model.chat_template)
    train_records, eval_records, data_lineage = data.load_train_and_eval(recipe.data, recipe.run.seed, "sft")
    assistant_only = recipe.sft.assistant_only_loss and "messages" in train_records[0]
    template_check.preflight(tokenizer, train_records, assistant_only, source=str(recipe.data.train))
    max_length = recipe.train.max_length
    train_dataset = sft_tokens.tokenize_sft(train_records, tokenizer, assistant_only, max_length)
    eval_dataset = sft_tokens.tokenize_sft(eval_records, tokenizer, assistant_only, max_length) if len(eval_records) else None
    print(f"Data: {len(train_dataset)} training and {len(eval_records)} held-out examples", flush=True)

    model = models.load_causal_lm(base_path, recipe.model, dtype=TORCH_DTYPES[recipe.train.precision])

    with runs.stage_run(recipe, STAGE, parent=None, data_lineage=data_lineage,
                        title=f"{recipe.run.name}: sft") as run:
        trainer = SFTTrainer(
            model=model,
            # The dataset arrives tokenized, with our own assistant mask (sft_tokens.tokenize_sft).
            args=SFTConfig(**common_training_arguments(recipe, run.dir, has_eval=eval_dataset is not None),
                           packing=recipe.sft.packing, padding_free=recipe.sft.padding_free),
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            peft_config=models.lora_config(recipe.lora, task_type="CAUSAL_LM"),
        )
        keep_trainable_weights_in_run_precision(trainer.model, recipe.train.precision)
        metrics = run.metrics
        # A fresh LoRA adapter starts at zero (B = 0), so before training the model *is* the base model:
        # its held-out loss now is the baseline the trained adapter must beat.
        if eval_dataset is not None and "eval_loss_base" not in metrics:
            metrics["eval_loss_base"] = trainer.evaluate()["eval_loss"]
            metrics["eval_perplexity_base"] = math.exp(metrics["eval_loss_base"])
            runs.write_manifest(run.dir, run.manifest)
        train_and_record(trainer, run.resume_checkpoint, metrics)
        if eval_dataset is not None:
            metrics["eval_loss"] = trainer.evaluate()["eval_loss"]
            metrics["eval_perplexity"] = math.exp(metrics["eval_loss"])
        trainer.save_model(str(run.dir / "adapter"))  # adapter weights + config + tokenizer with its chat template
        run.log_history = trainer.state.log_history

    print_summary(run.dir, metrics)
    return run.dir


def print_summary(stage_dir: Path, metrics: dict[str, float]) -> None:
    print(f"\nSFT finished: {stage_dir} (status trained)")
    if "eval_loss" in metrics:
        print(
            f"  held-out loss {metrics['eval_loss_base']:.3f} (base) -> {metrics['eval_loss']:.3f} (trained); "
            f"perplexity {metrics['eval_perplexity_base']:.1f} -> {metrics['eval_perplexity']:.1f}"
        )
    print(f"  adapter: {stage_dir / 'adapter'}   curves: {stage_dir / 'loss.png'}", flush=True)
