"""The two embedded base models side by side (README "Which embedded model"): SmolLM2-135M-Instruct (`embedded`) and
Gemma 3 270M base (`embedded:gemma-3-270m`).

For each model, on the same inputs:
- loss per byte (nats) on held-out text neither demo trained on: the gate's 40 English and 40 Japanese general-prose
  passages (alignpipe/resources/gate/general_text.jsonl), so tokenizers with different vocabularies compare fairly;
- multiple-choice accuracy on the gate's shipped subsets (MMLU, JMMLU, JCommonsenseQA; `score capability`'s
  scoring, first N items with answers balanced over positions), with a 95% bootstrap interval;
- seconds per sft step and the process's peak memory, from a short demo sft (`alignpipe sft RECIPE
  train.max_steps=K gate.enabled=false`) in a child process.

    python bench/compare_embedded.py --items 100 --steps 6 --output bench/embedded_models.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).parents[1]
MODELS = {"embedded": "recipes/demo.yaml", "embedded:gemma-3-270m": "recipes/demo-ja.yaml"}


def loss_per_byte(model, tokenizer, texts: list[str]) -> float:
    """Summed next-token loss over every text (nats) divided by the texts' UTF-8 bytes; each text starts with the
    tokenizer's BOS where it has one (as both models were trained), and the BOS itself is not scored."""
    total_loss, total_bytes = 0.0, 0
    start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
    for text in texts:
        ids = torch.tensor([[start] + tokenizer(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0, :-1].float()
        total_loss += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
        total_bytes += len(text.encode("utf-8"))
    return total_loss / total_bytes


def text_and_accuracy(base: str, items: int) -> dict:
    from alignpipe.gate.capability import accuracy_summary, load_scoring_model, score_multiple_choice, shipped_items

    model, tokenizer = load_scoring_model(base)
    passages = [json.loads(line) for line in (REPO / "alignpipe/resources/gate/general_text.jsonl").open()]
    result = {lang: loss_per_byte(model, tokenizer, [p["text"] for p in passages if p["lang"] == lang])
              for lang in ("en", "ja")}
    for task in ("mmlu", "jmmlu", "jcommonsenseqa"):
        questions = shipped_items(task, items)
        started = time.perf_counter()
        summary = accuracy_summary(questions, score_multiple_choice(model, tokenizer, questions))
        result[task] = {key: summary[key] for key in ("accuracy", "ci_low", "ci_high", "n")}
        result[task]["seconds"] = round(time.perf_counter() - started, 1)
    return result


def sft_speed(base: str, recipe: str, steps: int) -> dict:
    """Seconds per step (the manifest's train_seconds / steps) and the child's peak resident memory."""
    with tempfile.TemporaryDirectory() as runs:
        command = [sys.executable, "-m", "alignpipe.cli", "sft", recipe, f"train.max_steps={steps}",
                   "gate.enabled=false", "data.eval=null", f"run.output_root={runs}", "run.name=speed"]
        subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
        metrics = json.loads((Path(runs) / "speed" / "sft" / "manifest.json").read_text())["metrics"]
    peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the largest child so far
    return {"seconds_per_step": metrics["train_seconds"] / steps, "peak_rss_mib": round(peak_mib)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100, help="questions per multiple-choice task")
    parser.add_argument("--steps", type=int, default=6, help="sft steps timed per model (after one warm-up run)")
    parser.add_argument("--output", type=Path, default=REPO / "bench" / "embedded_models.json")
    args = parser.parse_args()
    results = {}
    for base, recipe in MODELS.items():  # smaller model first: RUSAGE_CHILDREN's peak only grows
        results[base] = {**text_and_accuracy(base, args.items), **sft_speed(base, recipe, args.steps)}
        print(base, json.dumps(results[base], indent=1), flush=True)
    args.output.write_text(json.dumps({"torch_threads": torch.get_num_threads(), **results}, indent=2) + "\n")
    print(f"written: {args.output}")


if __name__ == "__main__":
    main()
