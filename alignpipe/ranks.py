"""Which process this is under `--nproc N` (accelerate launch / torchrun set WORLD_SIZE and RANK); rank 0 alone
writes run directories. Read from the environment: the launcher's contract, and no process group is started
just to ask (PartialState would start one)."""

from __future__ import annotations

import os


def world_size() -> int:
    """Processes training together (torchrun / accelerate launch set WORLD_SIZE); 1 without --nproc."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Rank 0 alone writes manifests, adapters, plots and gate reports."""
    return process_rank() == 0


def wait_for_everyone() -> None:
    """A barrier across the ranks of --nproc (it starts the process group the trainer then uses); no-op alone."""
    if world_size() > 1:
        import torch
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()
