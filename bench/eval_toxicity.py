"""Benchmark: how well a toxicity scorer ranks toxic above benign text, as ROC AUC per language.

    python bench/eval_toxicity.py                          # the offline lexicon scorer on the shipped eval sets
    python bench/eval_toxicity.py --no-allowlist           # the same without its allowlist of known collisions
    python bench/eval_toxicity.py --model PATH_OR_HUB_ID   # a Hugging Face classifier instead
    python bench/eval_toxicity.py --worst 10               # show more of the worst mistakes

The eval sets (alignpipe/resources/toxicity/eval_{en,ja}.jsonl, {"text", "label": 1 toxic / 0 not}) were written by
hand for this purpose, before the lexicons, and nothing in the lexicons is copied from them. AUC is rank-based
(Mann-Whitney, ties count half), so it measures ranking only, not calibration. Numbers are printed, not asserted
here; tests/gate/test_toxicity.py asserts the acceptance thresholds (EN >= 0.85, JA >= 0.80).
"""

from __future__ import annotations

import argparse
import json
import time
from importlib import resources

import numpy as np

from alignpipe.gate.toxicity import LexiconToxicityScorer, ToxicityScorer, load_toxicity_scorer


def roc_auc(scores: list[float], labels: list[int]) -> float:
    """Probability that a random toxic text outscores a random benign one (ties count half)."""
    values, inverse, counts = np.unique(np.asarray(scores, dtype=float), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # 1-based, averaged over ties
    positive = np.asarray(labels) == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def load_eval(language: str) -> list[dict]:
    path = resources.files("alignpipe").joinpath("resources", "toxicity", f"eval_{language}.jsonl")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def report(language: str, scorer: ToxicityScorer, worst: int) -> None:
    rows = load_eval(language)
    start = time.perf_counter()
    scores = scorer.score([row["text"] for row in rows])
    seconds = time.perf_counter() - start
    labels = [row["label"] for row in rows]
    print(f"{language}: ROC AUC {roc_auc(scores, labels):.3f}  (n={len(rows)}: {sum(labels)} toxic, "
          f"{len(rows) - sum(labels)} benign; {seconds * 1000:.0f} ms)")
    explain = getattr(scorer, "explain", None)
    ranked = sorted(zip(scores, labels, [row["text"] for row in rows]), key=lambda item: item[0])
    false_positives = [item for item in reversed(ranked) if item[1] == 0][:worst]
    false_negatives = [item for item in ranked if item[1] == 1][:worst]
    for title, items in (("highest-scored benign", false_positives), ("lowest-scored toxic", false_negatives)):
        print(f"  {title}:")
        for score, _, text in items:
            why = f"  <- {[term for term, _ in explain(text)]}" if explain and score > 0 else ""
            print(f"    {score:.2f}  {text}{why}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a Hugging Face classifier (path or hub id); default: lexicon")
    parser.add_argument("--no-allowlist", action="store_true", help="lexicon scorer without its allowlist")
    parser.add_argument("--worst", type=int, default=5, help="how many worst mistakes to show per language")
    args = parser.parse_args()
    scorer = LexiconToxicityScorer(use_allowlist=False) if args.no_allowlist else load_toxicity_scorer(args.model)
    for language in ("en", "ja"):
        report(language, scorer, args.worst)


if __name__ == "__main__":
    main()
