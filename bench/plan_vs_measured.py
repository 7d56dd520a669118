"""How far `alignpipe plan` is from measured memory: peak RSS growth of SFT on the embedded model, on CPU.

    python bench/plan_vs_measured.py            # 3 settings x 2 steps, a few minutes on 2 cores

Each setting runs in a fresh process. The weights are compared as bytes of the loaded model's tensors. The
training part (adapter, gradients, optimizer states, activations, logits) is compared with the growth of RSS from
the loaded model to the process's peak: reading RSS before loading would also count what loading leaves in host
memory (the mmapped safetensors file, dtype conversions), which on a GPU is not GPU memory. Rows are full length
(long texts truncated at max_length), the plan's assumption.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETTINGS = [  # (quantization, precision, gradient checkpointing); bf16 matmuls are slow on CPUs without AMX
    ("none", "fp32", False),
    ("none", "fp32", True),
    ("4bit", "bf16", False),
]
COMMON = ["train.batch_size=2", "train.max_length=128", "train.max_steps=2", "train.save_steps=1000",
          "gate.enabled=false", "data.eval=null", "lora.r=16", "lora.dropout=0.05"]


def worker(folder: str, overrides: list[str]) -> None:
    """In a fresh process: RSS once the model is loaded, train, report the peak and the model's own bytes."""
    import psutil

    from alignpipe import models
    from alignpipe.cli import quiet_libraries
    from alignpipe.recipe_loading import load_recipe
    from alignpipe.stages import sft

    quiet_libraries()
    recipe = load_recipe(REPO / "recipes" / "demo.yaml", "sft", overrides)
    measured: dict[str, int] = {}
    load_causal_lm = models.load_causal_lm

    def load_and_measure(*args, **kwargs):  # the stage's own loader, with a reading after it
        model = load_causal_lm(*args, **kwargs)
        measured["after_load"] = psutil.Process().memory_info().rss
        tensors = list(model.parameters()) + list(model.buffers())
        measured["weights"] = sum(tensor.numel() * tensor.element_size() for tensor in tensors)
        return model

    models.load_causal_lm = load_and_measure
    sft.run(recipe)
    measured["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    Path(folder, "rss.json").write_text(json.dumps(measured))


def main() -> None:
    from alignpipe.recipe_loading import load_recipe
    from alignpipe.plan import GIB, plan_stage

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        texts = Path(folder, "long.jsonl")
        line = "The Kumo K2 kettle boils water, keeps it warm and answers in English and Japanese. " * 30
        texts.write_text("\n".join(json.dumps({"text": line}) for _ in range(64)) + "\n", encoding="utf-8")
        for index, (quantization, precision, checkpointing) in enumerate(SETTINGS):
            overrides = COMMON + [f"data.train={texts}", f"run.output_root={folder}", f"run.name=m{index}",
                                  f"model.quantization={quantization}", f"train.precision={precision}",
                                  f"model.gradient_checkpointing={str(checkpointing).lower()}"]
            subprocess.run([sys.executable, __file__, "--worker", folder, *overrides], cwd=REPO, check=True,
                           stdout=subprocess.DEVNULL)
            rss = json.loads(Path(folder, "rss.json").read_text())
            measured_training = (rss["peak"] - rss["after_load"]) / GIB
            estimate = plan_stage(load_recipe(REPO / "recipes" / "demo.yaml", "sft", overrides), "sft", "rtx4090")
            parts = estimate["components_gb"]
            planned_training = estimate["peak_memory_gb"] - parts["weights"] - parts["cuda_overhead"]
            rows.append({"quantization": quantization, "precision": precision, "gradient_checkpointing": checkpointing,
                         "planned_weights_gb": parts["weights"], "measured_weights_gb": round(rss["weights"] / GIB, 4),
                         "planned_training_gb": round(planned_training, 3),
                         "measured_training_gb": round(measured_training, 3),
                         "training_error": round(planned_training / measured_training - 1, 3)})
            print(rows[-1], flush=True)
    print(f"\n{'quant':<6}{'prec':<6}{'ckpt':<6}{'weights plan/meas GB':>22}{'training plan/meas GB':>23}{'error':>8}")
    for row in rows:
        print(f"{row['quantization']:<6}{row['precision']:<6}{str(row['gradient_checkpointing']):<6}"
              f"{row['planned_weights_gb']:>11.3f}/{row['measured_weights_gb']:<10.3f}"
              f"{row['planned_training_gb']:>12.3f}/{row['measured_training_gb']:<10.3f}{row['training_error']:>+8.0%}")
    Path(REPO, "bench", "plan_vs_measured.json").write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3:])
    else:
        main()
