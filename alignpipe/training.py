"""The Trainer settings every stage shares, from the recipe's `train` section (TRL configs add their own), and
the checks of those settings that transformers itself makes only once training starts (run at recipe load)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from alignpipe import runs

if TYPE_CHECKING:  # config imports this module to check a recipe's training settings
    from alignpipe.config import Recipe

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def common_training_arguments(recipe: Recipe, stage_dir: Path, has_eval: bool) -> dict[str, Any]:
    """Keyword values for any TRL config (SFTConfig, RewardConfig, DPOConfig, ...), all of them explicit."""
    train = recipe.train
    periodic_eval = has_eval and train.eval_steps is not None
    return {
        "output_dir": str(runs.checkpoints_dir(stage_dir)),
        "max_steps": train.max_steps,
        "num_train_epochs": train.epochs,
        "per_device_train_batch_size": train.batch_size,
        "per_device_eval_batch_size": train.batch_size,
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "learning_rate": train.learning_rate,
        "lr_scheduler_type": train.lr_scheduler,
        "warmup_steps": train.warmup_steps,
        "optim": train.optimizer,
        "weight_decay": train.weight_decay,
        "max_grad_norm": train.max_grad_norm,
        "bf16": train.precision == "bf16",
        "fp16": train.precision == "fp16",
        "gradient_checkpointing": recipe.model.uses_gradient_checkpointing(),
        "save_strategy": "steps",
        "save_steps": train.save_steps,
        "save_total_limit": train.save_total_limit,
        "eval_strategy": "steps" if periodic_eval else "no",
        "eval_steps": train.eval_steps if periodic_eval else None,
        "logging_steps": train.logging_steps,
        "report_to": train.report_to,
        "seed": recipe.run.seed,
        "use_cpu": not torch.cuda.is_available(),
        "max_length": train.max_length,
        "use_liger_kernel": train.use_liger_kernel,
        "torch_compile": train.torch_compile,
    }


def keep_trainable_weights_in_run_precision(model: Any, precision: str) -> None:
    """Undo TRL's cast of a 4-bit model's trainable weights (LoRA, a reward model's score head) to bf16.

    TRL's trainers make that cast for QLoRA whatever the run's precision. In an fp32 (or fp16, whose mixed precision
    keeps fp32 master weights) run, it made the reward model's score head bf16 while its inputs were fp32: the first
    score failed with "float != BFloat16". A bf16 run keeps TRL's bf16.
    """
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    for parameter in model.parameters():
        if parameter.requires_grad and parameter.dtype != dtype:
            parameter.data = parameter.data.to(dtype)


def no_checkpoint_at_the_last_step() -> Any:
    """A callback that drops the checkpoint transformers saves after the last step.

    The stage saves its adapter right after training and deletes the checkpoints, so that last checkpoint (adapter,
    optimizer and RNG state) was written only to be removed: measured, it made a 5-step demo-model SFT 10% slower
    per step than the same TRL run without checkpoints (bench/README.md).
    """
    from transformers import TrainerCallback

    class NoCheckpointAtTheLastStep(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.global_step >= state.max_steps:
                control.should_save = False
            return control

    return NoCheckpointAtTheLastStep()


def train_and_record(trainer: Any, resume_checkpoint: Path | None, metrics: dict[str, Any]) -> None:
    """Train, resuming from the checkpoint when there is one, and record steps, loss and time in metrics."""
    import psutil  # accelerate's dependency

    from transformers import Trainer

    if isinstance(trainer, Trainer):  # ours (ppo_trainer.PPOTrainer) never checkpoints its last step
        trainer.add_callback(no_checkpoint_at_the_last_step())
    if resume_checkpoint is not None:
        metrics["resumed_from_step"] = int(resume_checkpoint.name.rsplit("-", 1)[1])
    # From process start to the first step: imports, data, model loading (bench/bench.py compares it with raw TRL).
    metrics["setup_seconds"] = round(time.time() - psutil.Process().create_time(), 2)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    output = trainer.train(resume_from_checkpoint=str(resume_checkpoint) if resume_checkpoint else None)
    metrics["train_loss"] = output.training_loss
    metrics["global_step"] = output.global_step
    metrics["train_seconds"] = round(time.perf_counter() - started, 2)
    if torch.cuda.is_available():
        metrics["peak_gpu_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    if runs.world_size() > 1:  # every rank says it trained: the launcher's log shows all of them
        print(f"rank {runs.process_rank()} of {runs.world_size()}: trained {output.global_step} steps, "
              f"loss {output.training_loss:.4f}", flush=True)


