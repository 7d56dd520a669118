"""PPO's step time beside GRPO's, same number of sampled answers per step, both as `alignpipe rlhf` runs.

    make bench-ppo                                            # embedded model, 3 steps x 2 repeats (~15 min, 2 cores)
    python bench/ppo_vs_grpo.py --models tiny --repeats 1     # a quick check of the benchmark itself
    python bench/ppo_vs_grpo.py --reward-model runs/ppo-demo/rm --parent runs/ppo-demo/sft

There is no TRL PPO left to compare with (removed in TRL 1.13), so this compares alignpipe's PPO with alignpipe's
GRPO (TRL's GRPOTrainer): the same base, reward model, answers per step (train.batch_size: GRPO 2 prompts x 4
answers, PPO 8 prompts x 1), answer length, learning rate and seed, in fresh processes, interleaved and
alternating which goes first. PPO runs twice: with its default 4 epochs over each batch, and with 1 epoch (one
optimizer step per batch, as GRPO's default num_iterations=1). Reported: seconds per step, setup, peak RSS.
Writes bench/ppo_vs_grpo.json and the table in bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import build_tiny_model, machine, machine_line, run_process, train_reward_stage, write_between_markers

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "bench" / "ppo_vs_grpo.json"
VARIANTS = {"grpo": {"algorithm": "grpo"}, "ppo": {"algorithm": "ppo"}, "ppo-1-epoch": {"algorithm": "ppo", "epochs": 1}}


def recipe_for(variant: str, model_dir: str, data: Path, steps: int, folder: Path, parent: str,
               reward_stage: Path) -> str:
    settings = VARIANTS[variant]
    return f"""
run: {{name: {variant}, output_root: {folder / 'runs'}, seed: 42}}
model: {{base: {model_dir}, quantization: 4bit, gradient_checkpointing: false}}
lora: {{r: 16, alpha: 32, dropout: 0.05}}
data: {{train: {data}}}
train: {{max_steps: {steps}, batch_size: 8, max_length: 256, learning_rate: 1.0e-4, logging_steps: 1,
        save_steps: 100000, precision: bf16}}
gate: {{enabled: false}}
rlhf: {{algorithm: {settings['algorithm']}, parent: {parent}, reward_model: {reward_stage}, eval_prompts: 0,
       num_generations: 4, max_completion_length: 32, ppo: {{epochs: {settings.get('epochs', 4)}}}}}
"""


def run_variant(variant: str, model_dir: str, data: Path, steps: int, folder: Path, parent: str,
                reward_stage: Path) -> dict[str, Any]:
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / f"{variant}.yaml"
    recipe.write_text(recipe_for(variant, model_dir, data, steps, folder, parent, reward_stage), encoding="utf-8")
    # --force: the one-step rm (bench.train_reward_stage) is never gated; speed is measured, not the pipeline.
    rss = run_process([sys.executable, "-m", "alignpipe.cli", "rlhf", str(recipe), "--force"])
    metrics = json.loads((folder / "runs" / variant / "rlhf" / "manifest.json").read_text())["metrics"]
    return {"s_per_step": metrics["train_seconds"] / metrics["global_step"], "setup_seconds": metrics["setup_seconds"],
            "peak_rss_gb": rss}


def write_readme_table(results: dict[str, Any], path: Path) -> None:
    lines = ["| model | algorithm | answers per step | steps x repeats | s/step (median, min-max) | vs grpo | setup s "
             "| peak RSS GB |", "|---|---|---|---|---|---|---|---|"]
    for model, rows in results["models"].items():
        grpo = rows["grpo"]["s_per_step"]
        for variant, row in rows.items():
            lines.append(f"| {model} | {variant} | 8 | {row['steps']} x {row['repeats']} | {row['s_per_step']:.2f} "
                         f"({row['s_per_step_min']:.2f}-{row['s_per_step_max']:.2f}) | {row['s_per_step'] / grpo:.2f} | "
                         f"{row['setup_seconds']:.1f} | {row['peak_rss_gb']:.2f} |")
    write_between_markers(path, "ppo-vs-grpo", lines + ["", machine_line(results["machine"])])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="embedded", help="embedded (default), tiny, or both")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--parent", default="none", help="policy to start from (default: the bare base)")
    parser.add_argument("--reward-model", type=Path, default=None,
                        help="an rm stage on the same base (default: a 1-step one trained here)")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args()
    from alignpipe.embedded import embedded_model_dir

    results: dict[str, Any] = {"machine": machine(), "models": {}}
    with tempfile.TemporaryDirectory(prefix="alignpipe-bench-ppo-") as scratch:
        folder = Path(scratch)
        for model in args.models.split(","):
            if model == "tiny":
                model_dir, data_dir = build_tiny_model(folder)
            else:
                model_dir, data_dir = str(embedded_model_dir()), REPO / "data" / "demo"
            reward_stage = args.reward_model or train_reward_stage(model_dir, data_dir, folder / model)
            runs: dict[str, list[dict[str, Any]]] = {variant: [] for variant in VARIANTS}
            for repeat in range(args.repeats):
                order = list(VARIANTS) if repeat % 2 == 0 else list(reversed(VARIANTS))
                for variant in order:
                    result = run_variant(variant, model_dir, data_dir / "pref_train.jsonl", args.steps,
                                         folder / model / f"{variant}-{repeat}", args.parent, reward_stage.resolve())
                    runs[variant].append(result)
                    print(f"  {model} {variant:<12} repeat {repeat + 1}/{args.repeats}: {result['s_per_step']:.2f} "
                          f"s/step, setup {result['setup_seconds']:.1f} s", flush=True)
            results["models"][model] = {variant: summarize(rows, args.steps) for variant, rows in runs.items()}
    results["machine"]["load_average_at_end"] = os.getloadavg()
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    if args.output == OUTPUT:
        write_readme_table(results, REPO / "bench" / "README.md")
    print(json.dumps({model: {v: row["s_per_step"] for v, row in rows.items()} for model, rows in results["models"].items()}))


def summarize(rows: list[dict[str, Any]], steps: int) -> dict[str, Any]:
    times = [row["s_per_step"] for row in rows]
    return {"s_per_step": round(statistics.median(times), 3), "s_per_step_min": round(min(times), 3),
            "s_per_step_max": round(max(times), 3), "setup_seconds": round(statistics.median(r["setup_seconds"] for r in rows), 2),
            "peak_rss_gb": round(max(row["peak_rss_gb"] for row in rows), 3), "steps": steps, "repeats": len(rows),
            "runs": rows}


if __name__ == "__main__":
    main()
