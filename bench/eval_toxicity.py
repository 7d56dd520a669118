"""Benchmark the toxicity scorers on the held-out sets: ROC AUC per set, HateCheck accuracy per functionality,
a reliability plot, load time and speed.

    python bench/eval_toxicity.py                          # lexicon, learned and default side by side
    python bench/eval_toxicity.py --model PATH_OR_HUB_ID   # a Hugging Face classifier beside them
    python bench/eval_toxicity.py --worst 10               # the default scorer's worst mistakes per set

Held-out sets and what each scorer saw: alignpipe/gate/toxicity_sets.py and resources/toxicity/LICENSES.md. AUC is
rank-based (Mann-Whitney, ties count half); accuracy and the reliability plot (bench/toxicity_reliability.png) read
the score as a probability with 0.5 = toxic. Speed: short texts (the held-out lines, 40 characters on average),
one call, normalisation included, on however many cores this machine has (2 here, shared: say so when quoting).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from alignpipe.gate.toxicity import ToxicityScorer, _normalize_with_breaks
from alignpipe.gate.toxicity_scorers import load_toxicity_scorer
from alignpipe.gate.toxicity_sets import held_out_sets, read_set, roc_auc

PLOT = Path(__file__).resolve().parent / "toxicity_reliability.png"


def auc_table(scorers: dict[str, ToxicityScorer], sets: dict[str, list[dict]]) -> dict[str, dict[str, list[float]]]:
    """Print ROC AUC (and accuracy at 0.5) per set and scorer; return the scores."""
    print("| held-out set | n (toxic) | " + " | ".join(f"{name} AUC / acc" for name in scorers) + " |")
    print("|---|---|" + "---|" * len(scorers))
    scores: dict[str, dict[str, list[float]]] = defaultdict(dict)
    for set_name, rows in sets.items():
        labels = [row["label"] for row in rows]
        cells = []
        for name, scorer in scorers.items():
            scores[name][set_name] = scorer.score([row["text"] for row in rows])
            accuracy = np.mean([(score >= 0.5) == label for score, label in zip(scores[name][set_name], labels)])
            auc = roc_auc(scores[name][set_name], labels)
            cells.append(f"{auc:.3f} / {accuracy:.2f}" if not np.isnan(auc) else f"- / {accuracy:.2f}")
        print(f"| {set_name} | {len(rows)} ({sum(labels)}) | " + " | ".join(cells) + " |")
    return scores


def functionality_table(scorers: dict[str, ToxicityScorer]) -> None:
    """HateCheck accuracy per functionality on the test templates, against HateCheck's own gold label (as in its
    paper), so abuse of individuals / non-protected groups and plain profanity count as "non-hateful"."""
    rows = [row for row in read_set("corpus/hatecheck.jsonl") if row["split"] == "test"]
    by_functionality: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        by_functionality[row["functionality"]].append(row)
    predictions = {name: scorer.score([row["text"] for row in rows]) for name, scorer in scorers.items()}
    index = {id(row): i for i, row in enumerate(rows)}
    print("\n| HateCheck functionality (test templates) | gold | n | " + " | ".join(scorers) + " |")
    print("|---|---|---|" + "---|" * len(scorers))
    for functionality, cases in sorted(by_functionality.items()):
        gold = cases[0]["gold"]
        cells = [f"{np.mean([(predictions[name][index[id(c)]] >= 0.5) == (gold == 'hateful') for c in cases]):.2f}"
                 for name in scorers]
        print(f"| {functionality} | {gold} | {len(cases)} | " + " | ".join(cells) + " |")


def identity_table(scorers: dict[str, ToxicityScorer], sets: dict[str, list[dict]]) -> None:
    """Accuracy at 0.5 per kind of line in the identity held-out sets (praise, negated hate, counter-speech, ...)."""
    print("\n| identity held-out set, kind | label | n | " + " | ".join(scorers) + " |")
    print("|---|---|---|" + "---|" * len(scorers))
    for set_name in ("en_identity_heldout", "ja_identity_heldout"):
        rows = sets.get(set_name, [])
        scores = {name: scorer.score([row["text"] for row in rows]) for name, scorer in scorers.items()}
        for kind in dict.fromkeys(row["kind"] for row in rows):
            keep = [i for i, row in enumerate(rows) if row["kind"] == kind]
            label = rows[keep[0]]["label"]
            cells = [f"{np.mean([(scores[name][i] >= 0.5) == label for i in keep]):.2f}" for name in scorers]
            print(f"| {set_name} {kind} | {label} | {len(keep)} | " + " | ".join(cells) + " |")


# Three answers of the demo's model (SmolLM2-135M) that the default scored 0.76-0.92 (recipes/demo.yaml); a check,
# never trained on.
DEMO_NOISE = ["あなくないんで、あなくないんで、あな", "おかつませんがください。ハゲてから", "おかつは一品作れないかなかは、おか"]


def noise_check(scorers: dict[str, ToxicityScorer]) -> None:
    """Benign noise: the real tiny-model answers (held-out set), a batch of the training generator's kana noise
    with another seed, and the three demo answers: share scored >= 0.5, mean and max."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from train_toxicity import KANA_NOISE_LINES, japanese_benign, kana_noise, training_rows

    seeded = kana_noise(japanese_benign(training_rows()), KANA_NOISE_LINES, seed=1)
    checks = {"tiny_model_noise_heldout": [row["text"] for row in read_set("corpus/noise_heldout.jsonl")],
              "kana noise, seed 1 (training used seed 0)": seeded}
    print("\n| benign noise | n | " + " | ".join(f"{name} >=0.5 / mean / max" for name in scorers) + " |")
    print("|---|---|" + "---|" * len(scorers))
    for check, texts in checks.items():
        cells = []
        for scorer in scorers.values():
            scores = np.asarray(scorer.score(texts))
            cells.append(f"{(scores >= 0.5).mean():.2f} / {scores.mean():.2f} / {scores.max():.2f}")
        print(f"| {check} | {len(texts)} | " + " | ".join(cells) + " |")
    for text in DEMO_NOISE:
        print(f"| {text} | 1 | " + " | ".join(f"{scorer.score([text])[0]:.2f}" for scorer in scorers.values()) + " |")


def reliability_plot(scores: dict[str, list[float]], sets: dict[str, list[dict]], name: str) -> None:
    """Observed share of toxic lines per score bin, all held-out sets with both classes pooled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pooled = np.concatenate([scores[s] for s in sets])
    labels = np.concatenate([[row["label"] for row in sets[s]] for s in sets])
    edges = np.linspace(0, 1, 11)
    which = np.clip(np.digitize(pooled, edges) - 1, 0, 9)
    print(f"\nreliability of {name} (pooled held-out, n={len(pooled)}): bin, n, mean score, share toxic")
    centers, observed, counts = [], [], []
    for b in range(10):
        mask = which == b
        if mask.any():
            centers.append(pooled[mask].mean())
            observed.append(labels[mask].mean())
            counts.append(int(mask.sum()))
            print(f"  {edges[b]:.1f}-{edges[b + 1]:.1f}  {counts[-1]:4d}  {centers[-1]:.2f}  {observed[-1]:.2f}")
    above = pooled >= 0.5
    print(f"  scored >= 0.5: {labels[above].mean():.2f} toxic (n={above.sum()}); "
          f"< 0.5: {labels[~above].mean():.2f} toxic (n={(~above).sum()})")
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect calibration")
    axis.plot(centers, observed, marker="o", label=name)
    for x, y, n in zip(centers, observed, counts):
        axis.annotate(str(n), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    axis.set(xlabel="score (bin mean)", ylabel="share toxic", xlim=(0, 1), ylim=(0, 1),
             title=f"Toxicity reliability, held-out sets (n={len(pooled)})")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(PLOT, dpi=120)
    print(f"  plot: {PLOT}")


def speed(scorers: dict[str, ToxicityScorer], texts: list[str]) -> None:
    print(f"\nspeed on {len(texts)} short texts (mean {np.mean([len(t) for t in texts]):.0f} characters), one call:")
    for name, scorer in scorers.items():
        _normalize_with_breaks.cache_clear()  # a fair start: the cache only helps within one call
        start = time.perf_counter()
        scorer.score(texts)
        print(f"  {name}: {len(texts) / (time.perf_counter() - start):,.0f} texts/s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="also a Hugging Face classifier (path or hub id)")
    parser.add_argument("--worst", type=int, default=0, help="show the default scorer's N worst mistakes per set")
    args = parser.parse_args()
    start = time.perf_counter()
    scorers = {name: load_toxicity_scorer(name) for name in ("lexicon", "learned", "default")}
    print(f"loaded the three offline scorers in {time.perf_counter() - start:.2f} s")
    if args.model:
        scorers[args.model] = load_toxicity_scorer(args.model)
    sets = held_out_sets()
    for name, rows in list(sets.items()):  # each part (written after a different frozen version) on its own too
        for part in sorted({row["part"] for row in rows if "part" in row}):
            sets[f"{name} part {part}"] = [row for row in rows if row.get("part") == part]
    scores = auc_table(scorers, sets)
    functionality_table(scorers)
    identity_table(scorers, sets)
    noise_check(scorers)
    two_class = {name: rows for name, rows in held_out_sets().items() if len({row["label"] for row in rows}) == 2}
    reliability_plot(scores["default"], two_class, "default")
    speed(scorers, [row["text"] for rows in held_out_sets().values() for row in rows])
    for set_name, rows in sets.items() if args.worst else ():
        ranked = sorted(zip(scores["default"][set_name], rows), key=lambda item: item[0])
        print(f"\n{set_name}: highest-scored benign / lowest-scored toxic")
        for score, row in [item for item in reversed(ranked) if item[1]["label"] == 0][:args.worst]:
            print(f"  {score:.2f}  {row['text']}")
        for score, row in [item for item in ranked if item[1]["label"] == 1][:args.worst]:
            print(f"  {score:.2f}  {row['text']}")


if __name__ == "__main__":
    main()
