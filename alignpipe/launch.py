"""`--nproc N`: run a stage in N processes through `accelerate launch` (DDP, FSDP or DeepSpeed ZeRO).

    alignpipe sft recipes/demo.yaml --nproc 2                                  # DDP: gloo on CPU, nccl on GPUs
    alignpipe sft recipes/llama3-8b-qlora-sft.yaml --nproc 4 run.accelerate_config=fsdp

We build no distributed engine: the command re-runs itself under `accelerate launch` (torchrun underneath), one
process per device, with the accelerate config that `run.accelerate_config` names. Each process runs the same
stage; the Trainer shards the batches, and rank 0 alone writes the manifest, the adapter and the gate report.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from importlib import resources
from pathlib import Path

from alignpipe.errors import AlignpipeError

SHIPPED = ("ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3")


def accelerate_config_file(setting: str) -> Path:
    """`run.accelerate_config`: a shipped name (alignpipe/resources/accelerate/NAME.yaml, inside the installed
    package) or the path of a config file."""
    if setting in SHIPPED:
        path = Path(str(resources.files("alignpipe").joinpath("resources", "accelerate", f"{setting}.yaml")))
    else:
        path = Path(setting)
    if not path.is_file():
        raise AlignpipeError(
            f"run.accelerate_config={setting}: no such file {path}. Use one of {', '.join(SHIPPED)} or the path of "
            "an accelerate config file (accelerate config --config_file FILE writes one)."
        )
    return path


def launch_stage(stage: str, items: list[str], force: bool, nproc: int, accelerate_config: str) -> int:
    """Run `alignpipe STAGE ITEMS` in `nproc` processes on this machine and wait; returns their exit status."""
    config_file = accelerate_config_file(accelerate_config)
    if "deepspeed" in config_file.name:
        try:
            import deepspeed  # noqa: F401
        except ImportError:
            raise AlignpipeError(f"{config_file} needs DeepSpeed: pip install deepspeed (on a CUDA machine).") from None
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(config_file),
        "--num_processes", str(nproc),
        "--num_machines", "1",
        "--main_process_port", str(free_port()),  # other runs on this machine may hold the default 29500
        "-m", "alignpipe.cli", stage, *items, *(["--force"] if force else []),
    ]
    print(f"Launching {nproc} processes ({config_file.name}): {' '.join(command[1:])}", flush=True)
    environment = dict(os.environ)
    # accelerate would pick torch's thread count per process; share this machine's cores instead of oversubscribing.
    environment.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.run(command, env=environment).returncode


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
