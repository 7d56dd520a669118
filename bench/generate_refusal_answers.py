"""Answers of the embedded base model to XSTest-style prompts, for hand-labelling the refusal detector's test set.

    flock /work/heavy.lock .venv/bin/python bench/generate_refusal_answers.py --lang en --n 40 --out /tmp/answers_en.jsonl

Takes every k-th prompt of the shipped XSTest (English) or its Japanese counterpart (safe and unsafe alike), so
the sample spans every type; answers greedily, as the gate decodes. Full precision by default: on a CPU,
bitsandbytes 4-bit generation is several times slower, and the answers' style is the model's either way
(--quantization 4bit for the demo's exact loading). Lines are written batch by batch.
"""

from __future__ import annotations

import argparse
import csv
import json
from importlib import resources
from pathlib import Path

import torch

from alignpipe import models
from alignpipe.config import ModelConfig
from alignpipe.policy_eval import answer_text, generate_answers

FILES = {"en": "xstest_prompts.csv", "ja": "xstest_ja_prompts.csv"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lang", choices=sorted(FILES), required=True)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--quantization", choices=["4bit", "none"], default="none")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    text = resources.files("alignpipe").joinpath("resources", "gate", FILES[args.lang]).read_text(encoding="utf-8")
    rows = list(csv.DictReader(text.splitlines()))
    step = max(1, len(rows) // args.n)
    sample = rows[::step][: args.n]
    path = models.resolve_base("embedded")
    tokenizer = models.load_tokenizer(path)
    model = models.load_causal_lm(path, ModelConfig(quantization=args.quantization), torch.float32, for_training=False)
    model.eval()
    with args.out.open("w", encoding="utf-8") as out:
        for start in range(0, len(sample), args.batch_size):
            rows = sample[start : start + args.batch_size]
            conversations = [[{"role": "user", "content": row["prompt"]}] for row in rows]
            for row, (_, answer_ids) in zip(rows, generate_answers(model, tokenizer, conversations, args.max_new_tokens,
                                                                   batch_size=args.batch_size)):
                out.write(json.dumps({"lang": args.lang, "prompt": row["prompt"], "type": row["type"], "label_prompt":
                                      row["label"], "completion": answer_text(tokenizer, answer_ids)},
                                     ensure_ascii=False) + "\n")
            out.flush()


if __name__ == "__main__":
    main()
