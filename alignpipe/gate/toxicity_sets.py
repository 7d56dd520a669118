"""The labelled toxicity sets shipped in resources/toxicity/ (`{"text", "label": 1 toxic / 0 not, ...}`), the split
of each into what the learned scorer may train on and what it is judged on, and ROC AUC.

Held out from every fit (bench/train_toxicity.py reads only `split == "train"` lines of corpus/):
- HateCheck's test template groups and ToxiGen's held-out target groups (split fixed by bench/toxicity_corpus.py);
- eval_en / eval_ja, hand-written before the lexicons (which were adjusted on them, so the lexicon's figures there
  are optimistic; the learned model never saw them);
- corpus/*_heldout.jsonl, written after the learned weights were frozen (see git history): the social-media-style
  sets, the identity sets (praise, neutral mentions, negated hate and counter-speech about groups beside real
  put-downs; written before the identity training lines and committed before the weights trained with them) and
  the embedded tiny model's real Japanese-prompt answers (noise, benign only: reported as the share scored >= 0.5);
- XSTest's held-out safe prompts, benign only: reported as the share scored >= 0.5;
- corpus/{ja_posts,en_hate_posts,en_tweets}_heldout.jsonl, in the style of issue 16's real-world sets, each in two
  parts by writers who saw no repository file: part 1 written after v7 was frozen (v9 was changed after reading v8's
  mistakes on its tweets), part 2 after v9 was frozen (the clean measurement).
"""

from __future__ import annotations

import json
from importlib import resources

import numpy as np


def read_set(name: str) -> list[dict]:
    """A shipped JSONL set by its path under resources/toxicity/ (e.g. "eval_en.jsonl", "corpus/toxigen.jsonl")."""
    path = resources.files("alignpipe").joinpath("resources", "toxicity", *name.split("/"))
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def held_out_sets() -> dict[str, list[dict]]:
    """Each held-out set by a name that says what it is; lines without a label (HateCheck's profanity_nh) dropped."""
    def test_part(name: str) -> list[dict]:
        return [row for row in read_set(name) if row["split"] == "test" and row["label"] is not None]

    sets = {
        "hatecheck_test_templates": test_part("corpus/hatecheck.jsonl"),
        "toxigen_heldout_groups": test_part("corpus/toxigen.jsonl"),
        "eval_en_handwritten": read_set("eval_en.jsonl"),
        "eval_ja_handwritten": read_set("eval_ja.jsonl"),
        "ja_social_heldout": read_set("corpus/ja_social_heldout.jsonl"),
        "en_social_heldout_proxy": read_set("corpus/en_social_heldout.jsonl"),
        "en_identity_heldout": read_set("corpus/en_identity_heldout.jsonl"),
        "ja_identity_heldout": read_set("corpus/ja_identity_heldout.jsonl"),
        "xstest_safe_heldout_types": test_part("corpus/xstest_safe.jsonl"),
        "tiny_model_noise_heldout": read_set("corpus/noise_heldout.jsonl"),
        "ja_posts_heldout": read_set("corpus/ja_posts_heldout.jsonl"),
        "en_hate_posts_heldout": read_set("corpus/en_hate_posts_heldout.jsonl"),
        "en_tweets_heldout": read_set("corpus/en_tweets_heldout.jsonl"),
    }
    return {name: rows for name, rows in sets.items() if rows}


def roc_auc(scores: list[float], labels: list[int]) -> float:
    """Probability that a random toxic text outscores a random benign one (Mann-Whitney; ties count half)."""
    _, inverse, counts = np.unique(np.asarray(scores, dtype=float), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]  # 1-based, averaged over ties
    positive = np.asarray(labels) == 1
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))
