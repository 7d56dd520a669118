"""Compare learned toxicity scorers on the same training lines and the same held-out sets: ROC AUC and speed.

    python bench/compare_toxicity_models.py            # n-gram variants (word+char, char only, word only), lexicon
    python bench/compare_toxicity_models.py --probe    # + a probe on the embedded SmolLM2 (about 15 min on 2 cores)

Every learned variant is fitted here on bench/train_toxicity.py's training lines with the L2 strength that script
chose for the shipped model; nothing is fitted on a held-out set. The probe is a logistic regression on the mean of
the embedded model's (SmolLM2-135M-Instruct) last-layer hidden states over a text's tokens, standardised, fitted on
every `--probe-every`th training line (3: all 27,015 took over 20 minutes to embed on 2 cores). Speed is
texts per second on this machine's 2 cores (shared with other jobs: say so when quoting it), scoring the held-out
texts in one call, features included.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_toxicity import L2_GRID, design_matrix, fit_logistic, row_weights, training_rows  # noqa: E402

from alignpipe.gate.learned_toxicity import DefaultToxicityScorer, LearnedToxicityScorer, shipped_weights  # noqa: E402
from alignpipe.gate.toxicity import LexiconToxicityScorer, _normalize_with_breaks  # noqa: E402
from alignpipe.gate.toxicity_sets import held_out_sets, roc_auc  # noqa: E402


def ngram_variant(char_ngrams: tuple[int, ...], words: bool) -> Callable[[list[str]], list[float]]:
    """Logits of a model fitted on the training lines with only some of the n-gram families."""
    rows = training_rows()
    labels = np.array([row["label"] for row in rows], dtype=float)
    l2 = float(shipped_weights()["l2"][0])
    coef, bias = fit_logistic(design_matrix([row["text"] for row in rows], char_ngrams, words), labels,
                              row_weights(rows), l2)
    return lambda texts: (design_matrix(texts, char_ngrams, words) @ coef + bias).tolist()


def probe_variant(every: int):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from alignpipe.embedded import embedded_model_dir

    torch.set_num_threads(2)
    directory = embedded_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()

    def embed(texts: list[str]) -> np.ndarray:
        out = []
        for start in range(0, len(texts), 32):
            batch = tokenizer(texts[start:start + 32], padding=True, truncation=True, max_length=64, return_tensors="pt")
            with torch.no_grad():
                hidden = model(**batch, output_hidden_states=True).hidden_states[-1]
            mask = batch["attention_mask"].unsqueeze(-1).float()
            out.append(((hidden * mask).sum(1) / mask.sum(1)).numpy())
        return np.concatenate(out)

    rows = training_rows()[::every]  # every line took over 20 min on 2 cores
    features = embed([r["text"] for r in rows])
    mean, std = features.mean(0), features.std(0) + 1e-6
    coef, bias = fit_logistic((features - mean) / std, np.array([r["label"] for r in rows], float), row_weights(rows),
                              1e-3)
    return lambda texts: (((embed(texts) - mean) / std) @ coef + bias).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probe", action="store_true", help="also the SmolLM2 hidden-state probe (heavy: use flock)")
    parser.add_argument("--probe-every", type=int, default=3, help="fit the probe on every Nth training line")
    args = parser.parse_args()
    print(f"(L2 grid searched by train_toxicity.py: {L2_GRID})")
    variants = {"lexicon": LexiconToxicityScorer().score, "learned (word+char, shipped)": LearnedToxicityScorer().score,
                "default (learned+lexicon, shipped)": DefaultToxicityScorer().score,
                "char 1-4 only": ngram_variant((1, 2, 3, 4), words=False),
                "word 1-2 only": ngram_variant((), words=True)}
    if args.probe:
        variants[f"SmolLM2 probe (1 in {args.probe_every} training lines)"] = probe_variant(args.probe_every)
    sets = {name: rows for name, rows in held_out_sets().items() if len({r["label"] for r in rows}) == 2}
    print("| scorer | " + " | ".join(sets) + " | texts/s |")
    print("|---" * (len(sets) + 2) + "|")
    for name, score in variants.items():
        cells, seconds, count = [], 0.0, 0
        _normalize_with_breaks.cache_clear()  # each variant normalises from scratch, as in a fresh process
        for rows in sets.values():
            start = time.perf_counter()
            scores = score([row["text"] for row in rows])
            seconds, count = seconds + time.perf_counter() - start, count + len(rows)
            cells.append(f"{roc_auc(scores, [row['label'] for row in rows]):.3f}")
        print(f"| {name} | " + " | ".join(cells) + f" | {count / seconds:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
