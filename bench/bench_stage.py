"""Benchmark: seconds per step and peak memory of a demo stage (sft, rm or rlhf), with and without 4-bit.

    make bench-sft                      # 10 steps each on the embedded model
    make bench-rm                       # the reward model, from the base model (rm.parent=none)
    make bench-rlhf                     # DPO from the base model (rlhf.parent=none), no before/after evaluation
    python bench/bench_stage.py sft 30  # more steps, steadier numbers

Each run is a separate process, so its peak RSS (CPU) is its own; on a GPU the peak CUDA memory is printed too.
Numbers are printed, not asserted: speed targets live here, never in unit tests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_once(stage: str, quantization: str, steps: int, output_root: Path) -> dict[str, float]:
    name = f"bench-{quantization}"
    command = [
        sys.executable, "-m", "alignpipe.cli", stage, "recipes/demo.yaml",
        f"model.quantization={quantization}", f"train.max_steps={steps}",
        "train.save_steps=100000", "data.eval=null", f"run.output_root={output_root}", f"run.name={name}",
    ]
    if stage == "rm":
        command.append("rm.parent=none")
    if stage == "rlhf":
        command += ["rlhf.parent=none", "rlhf.reward_model=none", "rlhf.eval_prompts=0"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise SystemExit(f"{quantization} run failed:\n{process.stderr.read()[-3000:]}")
    metrics = json.loads((output_root / name / stage / "manifest.json").read_text())["metrics"]
    return {
        "seconds_per_step": metrics["train_seconds"] / metrics["global_step"],
        "peak_rss_gb": usage.ru_maxrss / 1024**2,  # Linux reports KiB
    }


def main() -> None:
    stage = sys.argv[1] if len(sys.argv) > 1 else "sft"
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    print(f"Demo {stage} on the embedded SmolLM2-135M, {steps} steps, batch 4, max_length 256 (recipes/demo.yaml)")
    with tempfile.TemporaryDirectory() as output_root:
        results = {q: run_once(stage, q, steps, Path(output_root)) for q in ("4bit", "none")}
    print(f"{'quantization':<14}{'s/step':>10}{'peak RSS GB':>14}")
    for quantization, result in results.items():
        print(f"{quantization:<14}{result['seconds_per_step']:>10.2f}{result['peak_rss_gb']:>14.2f}")


if __name__ == "__main__":
    main()
