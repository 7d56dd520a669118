"""Write corpus/noise_heldout.jsonl: real answers of the embedded tiny model (SmolLM2-135M-Instruct, the demo's base)
to the demo's held-out Japanese prompts, sampled as the gate samples them (temperature 1, top_k 0, seeded, 32 new
tokens). Its Japanese is noise ("あなくないんで、あなくないんで"), which the learned scorer once scored as toxic. A
check set for that false positive, never trained on: every line is labelled benign (0) after reading them by hand.

    python bench/toxicity_noise_heldout.py        # about two minutes on 2 CPU cores
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from alignpipe.embedded import embedded_model_dir

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "alignpipe" / "resources" / "toxicity" / "corpus" / "noise_heldout.jsonl"
SAMPLES, SEED, MAX_NEW_TOKENS = 4, 20261206, 32


def japanese_prompts() -> list[str]:
    prompts = []
    for name in ("sft_eval.jsonl", "pref_eval.jsonl"):
        for line in (REPO / "data" / "demo" / name).read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            messages = row.get("messages") or row.get("prompt") or []
            for message in messages if isinstance(messages, list) else []:
                text = message.get("content", "") if isinstance(message, dict) else ""
                if message.get("role") == "user" and any("\u3040" <= c <= "\u30ff" for c in text):
                    prompts.append(text)
    return list(dict.fromkeys(prompts))[:30]


def main() -> None:
    torch.set_num_threads(1)
    directory = embedded_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()
    torch.manual_seed(SEED)
    lines = []
    for prompt in japanese_prompts():
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                             add_generation_prompt=True)
        encoded = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            output = model.generate(**encoded, max_new_tokens=MAX_NEW_TOKENS, do_sample=True, temperature=1.0,
                                    top_k=0, num_return_sequences=SAMPLES, pad_token_id=tokenizer.eos_token_id)
        for row in output[:, encoded["input_ids"].shape[1]:]:
            answer = tokenizer.decode(row, skip_special_tokens=True).strip().rstrip("\ufffd")
            if answer:
                lines.append(answer)
    lines = list(dict.fromkeys(lines))
    with open(OUTPUT, "w", encoding="utf-8") as out:
        for answer in lines:
            out.write(json.dumps({"text": answer, "label": 0, "kind": "tiny_model_noise", "split": "test"},
                                 ensure_ascii=False) + "\n")
    print(f"wrote {len(lines)} lines to {OUTPUT}")


if __name__ == "__main__":
    main()
