"""Which process this is under `--nproc N` (accelerate launch starts N copies of the command); rank 0 alone writes
run directories. Asked of accelerate's PartialState, the object the trainers use: alone it is one process on
this machine's device; under the launcher it joins the process group the trainer then reuses."""

from __future__ import annotations


def distributed_state():
    import torch
    from accelerate import PartialState

    # cpu=True where there is no GPU, as the trainers' Accelerator will ask: the state is shared, built once.
    return PartialState(cpu=not torch.cuda.is_available())


def world_size() -> int:
    """Processes training together; 1 without --nproc."""
    return distributed_state().num_processes


def process_rank() -> int:
    return distributed_state().process_index


def local_rank() -> int:
    """This process's index on its machine: the GPU it loads its copy of the model on."""
    return distributed_state().local_process_index


def is_main_process() -> bool:
    """Rank 0 alone writes manifests, adapters, plots and gate reports."""
    return distributed_state().is_main_process


def wait_for_everyone() -> None:
    """A barrier across the ranks of --nproc; no-op alone."""
    distributed_state().wait_for_everyone()
