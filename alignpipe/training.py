"""The Trainer settings every stage shares, from the recipe's `train` section (TRL configs add their own), and
the checks of those settings that transformers itself makes only once training starts (run at recipe load)."""

from __future__ import annotations

import difflib
import importlib.util
import time
from pathlib import Path
from typing import Any

import torch

from alignpipe import models, runs
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
        "gradient_checkpointing": models.uses_gradient_checkpointing(recipe.model),
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


# Learning-rate schedules that need lr_scheduler_kwargs, which recipes do not pass.
SCHEDULERS_NEEDING_KWARGS = ("cosine_with_min_lr", "cosine_warmup_with_min_lr", "warmup_stable_decay")
# Optimizers that need an optional package (transformers imports it only when training starts) or settings recipes do
# not pass (GaLore and APOLLO need optim_target_modules).
# The first marker found in the name decides.
OPTIMIZER_PACKAGES = {"adamw_torch_4bit": "torchao", "adamw_torch_8bit": "torchao", "bnb": "bitsandbytes",
                      "8bit": "bitsandbytes", "paged_": "bitsandbytes", "lion": "bitsandbytes",
                      "ademamix": "bitsandbytes", "schedule_free": "schedulefree", "grokadamw": "grokadamw", "stable_adamw": "optimi",
                      "lomo": "lomo_optim", "xla": "torch_xla", "npu": "torch_npu", "anyprecision": "torchdistx"}


def training_problems(recipe: Recipe) -> list[str]:
    """What transformers would reject only once training starts, after the stage directory exists: found at load.

    The names come from transformers itself, so that every name it accepts is accepted here.
    """
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    train, problems = recipe.train, []
    optimizers = [name.value for name in OptimizerNames]
    if train.optimizer not in optimizers:
        problems.append(_unknown_name("train.optimizer", train.optimizer, optimizers))
    elif train.optimizer.startswith(("galore", "apollo")):
        problems.append(f"train.optimizer: {train.optimizer} needs optim_target_modules, which alignpipe does not "
                        "pass yet; use adamw_torch, adamw_8bit or paged_adamw_8bit")
    else:
        needed = [package for marker, package in OPTIMIZER_PACKAGES.items() if marker in train.optimizer]
        problems += [f"train.optimizer: {train.optimizer} needs the {package} package, which is not installed "
                     f"(pip install {package}, or use adamw_torch)" for package in needed[:1]
                     if not _installed(package)]
    schedulers = [name.value for name in SchedulerType]
    if train.lr_scheduler not in schedulers:
        problems.append(_unknown_name("train.lr_scheduler", train.lr_scheduler, schedulers))
    elif train.lr_scheduler in SCHEDULERS_NEEDING_KWARGS:
        problems.append(f"train.lr_scheduler: {train.lr_scheduler} needs lr_scheduler_kwargs, which recipes do not "
                        "pass; use cosine, linear or constant_with_warmup")
    elif train.lr_scheduler == "reduce_lr_on_plateau" and train.eval_steps is None:
        problems.append("train.lr_scheduler: reduce_lr_on_plateau needs periodic evaluation: set train.eval_steps")
    trackers = ["none", "all", *INTEGRATION_TO_CALLBACK]
    problems += [_unknown_name("train.report_to", tracker, trackers) for tracker in train.report_to
                 if tracker not in trackers]
    return problems


def _unknown_name(key: str, value: str, valid: list[str]) -> str:
    guess = difflib.get_close_matches(value, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {guess[0]}?" if guess else ""
    return f"{key}: unknown name {value!r}{hint} (transformers accepts: {', '.join(valid)})"


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(package) is not None
    except (ImportError, ValueError):  # ValueError: a module blocked in sys.modules (None)
        return False
