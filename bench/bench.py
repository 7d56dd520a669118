"""alignpipe against a plain TRL script doing the same work: step time, setup time, peak RSS, loss.

    make bench                                        # tiny model: sft, dpo, grpo; embedded model: sft, dpo
    python bench/bench.py --repeats 5 --steps 12      # steadier numbers on a quiet machine
    python bench/bench.py --models embedded --tasks sft,dpo,grpo --repeats 3
    python bench/bench.py --models tiny --tasks sft --repeats 2      # a quick check of the benchmark itself
    python bench/bench.py --quantization none                        # 4-bit against bf16 weights: run both

For each model and task, alignpipe (`alignpipe sft|rlhf`, the command users run) and bench/trl_baseline.py (TRL,
transformers and peft called directly) run the same settings in fresh processes, interleaved and alternating
which goes first, so that a noisy neighbour slows both alike. Reported: seconds per step (the training loop as a
whole, divided by its steps, the same measurement on both sides), the alignpipe/TRL ratio per repeat (median and
range), setup seconds (process start to first step), peak RSS, and the training loss under the same seed. On a
GPU also tokens/s, peak `max_memory_allocated` and MFU. Writes bench/results.json and the table in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "bench" / "results.json"
DEFAULT_TASKS = {"tiny": ["sft", "dpo", "grpo"], "embedded": ["sft", "dpo"]}
# The demo recipe's settings (recipes/demo.yaml); the tiny model takes the same.
LEARNING_RATE = {"sft": 5e-4, "dpo": 1.5e-4, "grpo": 1e-5}


def settings_for(task: str, model_dir: str, data_dir: Path, steps: int, output_dir: Path,
                 quantization: str) -> dict[str, Any]:
    return {
        "model": model_dir, "quantization": quantization, "precision": "bf16", "gradient_checkpointing": False,
        "lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
        "train": str(data_dir / ("sft_train.jsonl" if task == "sft" else "pref_train.jsonl")),
        "max_steps": steps, "batch_size": 4, "max_length": 256, "learning_rate": LEARNING_RATE[task],
        "lr_scheduler": "cosine", "warmup_steps": 0.05, "optimizer": "adamw_torch", "logging_steps": 5, "seed": 42,
        "beta": 0.1 if task == "dpo" else 0.04, "num_generations": 4, "max_completion_length": 16,
        "output_dir": str(output_dir),
    }


def recipe_for(task: str, settings: dict[str, Any], name: str, output_root: Path, reward_stage: Path | None) -> str:
    """The alignpipe recipe with exactly the settings the TRL script gets."""
    algorithm = "grpo" if task == "grpo" else "dpo"
    return f"""
run: {{name: {name}, output_root: {output_root}, seed: {settings['seed']}}}
model: {{base: {settings['model']}, quantization: {settings['quantization']}, gradient_checkpointing: false}}
lora: {{r: {settings['lora_r']}, alpha: {settings['lora_alpha']}, dropout: {settings['lora_dropout']}}}
data: {{train: {settings['train']}}}
train: {{max_steps: {settings['max_steps']}, batch_size: {settings['batch_size']}, max_length: {settings['max_length']},
        learning_rate: {settings['learning_rate']}, lr_scheduler: {settings['lr_scheduler']},
        warmup_steps: {settings['warmup_steps']}, optimizer: {settings['optimizer']}, precision: {settings['precision']},
        logging_steps: {settings['logging_steps']}, save_steps: 100000}}
gate: {{enabled: false}}
sft: {{assistant_only_loss: false}}   # TRL's default: loss on every token
rlhf: {{algorithm: {algorithm}, parent: none, reward_model: {reward_stage or 'none'}, eval_prompts: 0,
       beta: {settings['beta']}, num_generations: {settings['num_generations']},
       max_completion_length: {settings['max_completion_length']}}}
"""


def run_process(command: list[str]) -> float:
    """Run in a fresh process and return its peak RSS in GiB (Linux reports KiB); its output only on failure."""
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, text=True,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            log.seek(0)
            raise SystemExit(f"{' '.join(command)} failed:\n{log.read()[-4000:]}")
    return usage.ru_maxrss / 1024**2


def run_alignpipe(task: str, settings: dict[str, Any], folder: Path, name: str, reward_stage: Path | None) -> dict:
    recipe = folder / f"{name}.yaml"
    recipe.write_text(recipe_for(task, settings, name, folder / "runs", reward_stage), encoding="utf-8")
    stage = "sft" if task == "sft" else "rlhf"
    # GRPO builds on the one-step rm of train_reward_stage, which is never gated: --force (recorded) lets it, since
    # what is measured here is speed; without it rlhf refuses an unchecked parent (exit 2).
    force = ["--force"] if stage == "rlhf" else []
    rss = run_process([sys.executable, "-m", "alignpipe.cli", stage, str(recipe), *force])
    metrics = json.loads((folder / "runs" / name / stage / "manifest.json").read_text())["metrics"]
    return {**{key: metrics[key] for key in ("setup_seconds", "train_seconds", "global_step", "train_loss")},
            **({"peak_gpu_memory_gb": metrics["peak_gpu_memory_gb"]} if "peak_gpu_memory_gb" in metrics else {}),
            "peak_rss_gb": rss}


def run_trl(task: str, settings: dict[str, Any], folder: Path, name: str) -> dict:
    settings_file, result_file = folder / f"{name}.settings.json", folder / f"{name}.result.json"
    settings_file.write_text(json.dumps({**settings, "output_dir": str(folder / name)}), encoding="utf-8")
    rss = run_process([sys.executable, str(REPO / "bench" / "trl_baseline.py"), task, str(settings_file),
                          str(result_file)])
    return {**json.loads(result_file.read_text()), "peak_rss_gb": rss}


def bench_task(task: str, model_dir: str, data_dir: Path, steps: int, repeats: int, folder: Path,
               reward_stage: Path | None, quantization: str) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    settings = settings_for(task, model_dir, data_dir, steps, folder / "trl-out", quantization)
    if reward_stage is not None:
        settings["reward_adapter"] = str(reward_stage / "adapter")
    pairs = []
    for repeat in range(repeats):
        order = ("alignpipe", "trl") if repeat % 2 == 0 else ("trl", "alignpipe")  # alternate who goes first
        result = {}
        for side in order:
            name = f"{task}-{side}-{repeat}"
            result[side] = (run_alignpipe(task, settings, folder, name, reward_stage) if side == "alignpipe"
                            else run_trl(task, settings, folder, name))
            result[side]["s_per_step"] = result[side]["train_seconds"] / result[side]["global_step"]
            print(f"  {task} {side:<9} repeat {repeat + 1}/{repeats}: {result[side]['s_per_step']:.3f} s/step, "
                  f"setup {result[side]['setup_seconds']:.1f} s, loss {result[side]['train_loss']:.4f}", flush=True)
        pairs.append(result)
    return summarize(task, pairs, settings)


def summarize(task: str, pairs: list[dict], settings: dict[str, Any]) -> dict[str, Any]:
    def median(side: str, key: str) -> float:
        return statistics.median(pair[side][key] for pair in pairs)

    ratios = [pair["alignpipe"]["s_per_step"] / pair["trl"]["s_per_step"] for pair in pairs]
    summary = {
        "ratio": round(statistics.median(ratios), 3),
        "ratio_min": round(min(ratios), 3),
        "ratio_max": round(max(ratios), 3),
        "alignpipe_s_per_step": round(median("alignpipe", "s_per_step"), 4),
        "trl_s_per_step": round(median("trl", "s_per_step"), 4),
        "alignpipe_setup_s": round(median("alignpipe", "setup_seconds"), 2),
        "trl_setup_s": round(median("trl", "setup_seconds"), 2),
        "alignpipe_peak_rss_gb": round(max(pair["alignpipe"]["peak_rss_gb"] for pair in pairs), 3),
        "trl_peak_rss_gb": round(max(pair["trl"]["peak_rss_gb"] for pair in pairs), 3),
        "alignpipe_loss": pairs[0]["alignpipe"]["train_loss"],
        "trl_loss": pairs[0]["trl"]["train_loss"],
        "loss_abs_diff": max(abs(pair["alignpipe"]["train_loss"] - pair["trl"]["train_loss"]) for pair in pairs),
        "steps": settings["max_steps"],
        "repeats": len(pairs),
        "runs": pairs,
    }
    if "peak_gpu_memory_gb" in pairs[0]["trl"]:
        summary.update(gpu_figures(task, summary, settings))
    return summary


def gpu_figures(task: str, summary: dict[str, Any], settings: dict[str, Any]) -> dict[str, Any]:
    """Tokens/s (mean tokenized row length x batch / s per step), peak allocated memory, and MFU by plan's FLOPs."""
    import torch

    from alignpipe.recipe_loading import load_recipe
    from alignpipe.plan import GPUS, plan_stage

    tokens_per_step = settings["batch_size"] * mean_row_tokens(task, settings)
    figures: dict[str, Any] = {}
    gpu = plan_gpu_name(torch.cuda.get_device_name())
    flops_per_token = None
    if gpu is not None and task in ("sft", "dpo"):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as recipe:
            recipe.write(recipe_for(task, settings, "plan", Path(tempfile.gettempdir()), None))
        stage = "sft" if task == "sft" else "rlhf"
        flops_per_token = plan_stage(load_recipe(recipe.name, stage, []), stage, gpu)["flops_per_token"]
        # plan counts a DPO pair's tokens per sequence at max_length; rows here count chosen and rejected both
    for side in ("alignpipe", "trl"):
        tokens_per_second = tokens_per_step / summary[f"{side}_s_per_step"]
        figures[f"{side}_tokens_per_s"] = round(tokens_per_second, 1)
        figures[f"{side}_peak_gpu_memory_gb"] = max(pair[side]["peak_gpu_memory_gb"] for pair in summary["runs"])
        if flops_per_token is not None:
            figures[f"{side}_mfu"] = round(tokens_per_second * flops_per_token / (GPUS[gpu][1] * 1e12), 4)
    figures["gpu"] = torch.cuda.get_device_name()
    return figures


def plan_gpu_name(device_name: str) -> str | None:
    """alignpipe plan's name for a CUDA device name ('NVIDIA GeForce RTX 4090' -> rtx4090), or None."""
    from alignpipe.plan import GPUS

    squeezed = device_name.lower().replace(" ", "").replace("-", "")
    for name in sorted(GPUS, key=len, reverse=True):  # longest first: an A100 is not an A10
        if name.replace("-", "") in squeezed:
            return name
    return None


def mean_row_tokens(task: str, settings: dict[str, Any]) -> float:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(settings["model"])
    rows = [json.loads(line) for line in Path(settings["train"]).read_text(encoding="utf-8").splitlines() if line]
    if task == "sft":
        texts = [row["messages"] for row in rows]
    elif task == "dpo":  # chosen and rejected each with the prompt: two sequences a row
        texts = [row["prompt"] + row[key] for row in rows for key in ("chosen", "rejected")]
    else:
        texts = [row["prompt"] for row in rows]
    lengths = [min(len(tokenizer.apply_chat_template(text, tokenize=True, return_dict=True)["input_ids"]),
                   settings["max_length"]) for text in texts]
    return statistics.mean(lengths) * (2 if task == "dpo" else 1)


def build_tiny_model(folder: Path) -> tuple[str, Path]:
    """The test suite's tiny random Llama and its data (tests/conftest.py), built locally in seconds."""
    sys.path.insert(0, str(REPO / "tests"))
    import conftest
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = conftest.build_tokenizer()
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
    model_dir = folder / "tiny-model"
    LlamaForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data_dir = folder / "tiny-data"
    data_dir.mkdir()
    conftest.write_jsonl(data_dir / "sft_train.jsonl", conftest.support_conversations(64))
    conftest.write_jsonl(data_dir / "pref_train.jsonl", conftest.separable_pairs(64))
    return str(model_dir), data_dir


def train_reward_stage(model_dir: str, data_dir: Path, folder: Path) -> Path:
    """GRPO is rewarded by a reward model: a one-step rm stage, trained once and shared by both sides."""
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / "rm.yaml"
    recipe.write_text(f"""
run: {{name: reward, output_root: {folder / 'runs'}}}
model: {{base: {model_dir}, quantization: 4bit, gradient_checkpointing: false}}
data: {{train: {data_dir / 'pref_train.jsonl'}}}
train: {{max_steps: 1, batch_size: 4, max_length: 256, save_steps: 100000}}
gate: {{enabled: false}}
rm: {{parent: none}}
""", encoding="utf-8")
    run_process([sys.executable, "-m", "alignpipe.cli", "rm", str(recipe)])
    return folder / "runs" / "reward" / "rm"


def machine() -> dict[str, Any]:
    import torch

    from alignpipe.provenance import library_versions

    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "load_average_at_start": os.getloadavg(),
        "versions": library_versions(),
    }


def write_readme_table(results: dict[str, Any], path: Path) -> None:
    lines = [
        "| model | task | steps x repeats | alignpipe s/step | TRL s/step | ratio (min-max) | setup s (alignpipe / TRL) "
        "| peak RSS GB (alignpipe / TRL) | loss (alignpipe / TRL) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, tasks in results["models"].items():
        for task, row in tasks.items():
            lines.append(
                f"| {model} | {task} | {row['steps']} x {row['repeats']} | {row['alignpipe_s_per_step']:.3f} | "
                f"{row['trl_s_per_step']:.3f} | {row['ratio']:.3f} ({row['ratio_min']:.2f}-{row['ratio_max']:.2f}) | "
                f"{row['alignpipe_setup_s']:.1f} / {row['trl_setup_s']:.1f} | "
                f"{row['alignpipe_peak_rss_gb']:.2f} / {row['trl_peak_rss_gb']:.2f} | "
                f"{row['alignpipe_loss']:.4f} / {row['trl_loss']:.4f} |"
            )
    write_between_markers(path, "results", lines + ["", machine_line(results["machine"])])


def machine_line(info: dict[str, Any]) -> str:
    load_start, load_end = (", ".join(f"{load:.1f}" for load in info[key])
                            for key in ("load_average_at_start", "load_average_at_end"))
    return (f"Machine: {info['cpu_count']} CPUs, GPU {info['gpu']}, load average (1, 5, 15 min) {load_start} "
            f"at start and {load_end} at the end; torch {info['versions']['torch']}, "
            f"trl {info['versions']['trl']}, transformers {info['versions']['transformers']}.")


def write_between_markers(path: Path, name: str, lines: list[str]) -> None:
    """Replace what stands between `<!-- name -->` and `<!-- /name -->` in a Markdown file."""
    text = path.read_text(encoding="utf-8")
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    before, _, rest = text.partition(start)
    _, _, after = rest.partition(end)
    path.write_text(before + start + "\n" + "\n".join(lines) + "\n" + end + after, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="tiny,embedded", help="tiny, embedded or both (default)")
    parser.add_argument("--tasks", default=None, help="sft,dpo,grpo (default: all three on tiny, sft,dpo on embedded)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved alignpipe/TRL pairs per task (default 3)")
    parser.add_argument("--steps", type=int, default=5, help="training steps on the embedded model (default 5)")
    parser.add_argument("--tiny-steps", type=int, default=10, help="training steps on the tiny model (default 10)")
    parser.add_argument("--quantization", default="4bit", choices=("4bit", "none"),
                        help="model.quantization on both sides (default 4bit, the demo's; none is faster on CPU)")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    from alignpipe.embedded import embedded_model_dir

    settings = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    results: dict[str, Any] = {"machine": machine(), "settings": settings, "models": {}}
    with tempfile.TemporaryDirectory(prefix="alignpipe-bench-") as scratch:
        folder = Path(scratch)
        for model in args.models.split(","):
            if model == "tiny":
                model_dir, data_dir, steps = *build_tiny_model(folder), args.tiny_steps
            else:
                model_dir, data_dir, steps = str(embedded_model_dir()), REPO / "data" / "demo", args.steps
            tasks = args.tasks.split(",") if args.tasks else DEFAULT_TASKS[model]
            reward_stage = None
            if "grpo" in tasks:
                reward_stage = train_reward_stage(model_dir, data_dir, folder / model)
            results["models"][model] = {}
            for task in tasks:
                print(f"{model} {task}: {steps} steps x {args.repeats} interleaved repeats", flush=True)
                results["models"][model][task] = bench_task(task, model_dir, data_dir, steps, args.repeats,
                                                            folder / model / task, reward_stage, args.quantization)
                save_results(results, args.output)  # after every task: an interrupted run keeps what finished
    print(json.dumps({task: results[task] for task in results["models"].get("embedded") or results["models"]["tiny"]},
                     indent=2))


def save_results(results: dict[str, Any], output: Path) -> None:
    results["machine"]["load_average_at_end"] = os.getloadavg()
    # The headline figures (top-level "sft", "dpo", ...): the embedded model when it ran, else the tiny one.
    headline = results["models"].get("embedded") or results["models"].get("tiny") or {}
    results.update({task: {key: value for key, value in row.items() if key != "runs"} for task, row in headline.items()})
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if output == DEFAULT_OUTPUT:  # a run written elsewhere leaves the published table alone
        write_readme_table(results, REPO / "bench" / "README.md")


if __name__ == "__main__":
    main()
