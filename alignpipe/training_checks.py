"""Checks of a recipe's training settings that transformers itself makes only once training starts (optimizer and
scheduler names, optional packages), run at recipe load. Imports nothing of alignpipe but its errors' neighbours,
so that config can import it without a cycle."""

from __future__ import annotations

import difflib
import importlib.util
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alignpipe.config import Recipe

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
