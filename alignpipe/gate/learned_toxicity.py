"""The learned toxicity scorers, offline and numpy-only: a logistic regression on hashed word and character n-grams
(`LearnedToxicityScorer`), and its combination with the lexicon (`DefaultToxicityScorer`, the gate's default).

Why this model (measurements: bench/compare_toxicity_models.py, README "Toxicity"): character n-grams read Japanese
without a word segmenter and survive misspellings; word uni/bigrams carry English phrases ("go back to", "those
people"); a linear model on them is a few hundred KB, loads in milliseconds and scores thousands of texts a second on
one core. A probe on the embedded SmolLM2's hidden states ranked English implicit hate a little better but scores a
few dozen texts a second and reads Japanese poorly, so it is a comparison in bench/, not a scorer here.

Texts go through the lexicon's `normalize` first (leetspeak, masks, stretched letters, width and kana folding), so
"f4ck", "ｼﾈ" and "シネ" share features. Each n-gram is hashed (xxh32, stable across runs and machines) into
N_FEATURES buckets with a sign bit, counts are log-scaled, and the row is L2-normalised.

The default combines the two: sigmoid(a * logit(learned) + b * lexicon + c * [lexicon > 0] + d), with a..d fitted on
out-of-fold learned scores of the training data, so that the lexicon's strength on slurs and disguised profanity is
kept, the learned part sees put-downs without bad words, and 0.5 means "toxic" on held-out data (bench/ reliability
plot). Weights: resources/toxicity/learned_toxicity.npz, rebuilt by `python bench/train_toxicity.py`; the data each
part saw is listed in resources/toxicity/LICENSES.md.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from importlib import resources

import numpy as np
import xxhash

from alignpipe.gate.toxicity import LexiconToxicityScorer, normalize

N_FEATURES = 1 << 18  # 262,144 buckets: float16 weights are 512 KB; fewer buckets collide more on Japanese n-grams
CHAR_NGRAMS = (1, 2, 3, 4)  # 1-grams matter in Japanese (死, 殺); 5-grams added nothing in cross-validation
WEIGHTS_FILE = "learned_toxicity.npz"
_WORD = re.compile(r"[a-z0-9']+")  # Latin words only: a Japanese run of \w is a whole clause, not a word


def ngrams(normalized: str, char_ngrams: tuple[int, ...] = CHAR_NGRAMS, words: bool = True) -> Counter[str]:
    """The word uni/bigrams and character n-grams of a normalised text, with their counts (bench/ compares the
    families by switching them off)."""
    words = _WORD.findall(normalized) if words else []
    grams = Counter(f"w {word}" for word in words)
    grams.update(f"b {first} {second}" for first, second in zip(words, words[1:]))
    padded = f" {normalized} "
    for n in char_ngrams:
        grams.update(padded[i:i + n] for i in range(len(padded) - n + 1))
    grams.pop(" ", None)
    return grams


def hashed_features(text: str, char_ngrams: tuple[int, ...] = CHAR_NGRAMS,
                    words: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(bucket indices, values) of one text: signed feature hashing of its n-grams, log counts, unit L2 norm."""
    buckets: dict[int, float] = {}
    for gram, count in ngrams(normalize(text), char_ngrams, words).items():
        code = xxhash.xxh32_intdigest(gram.encode())
        index = code & (N_FEATURES - 1)
        buckets[index] = buckets.get(index, 0.0) + (1.0 + math.log(count)) * (1.0 if code >> 31 else -1.0)
    indices = np.fromiter(buckets.keys(), dtype=np.int64, count=len(buckets))
    values = np.fromiter(buckets.values(), dtype=np.float64, count=len(buckets))
    norm = float(np.sqrt(values @ values))
    return indices, values / norm if norm > 0 else values


@functools.cache
def shipped_weights() -> dict[str, np.ndarray]:
    with resources.files("alignpipe").joinpath("resources", "toxicity", WEIGHTS_FILE).open("rb") as file:
        stored = np.load(file)
        return {name: stored[name].astype(np.float64) for name in stored.files}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


class LearnedToxicityScorer:
    """`gate.toxicity.model: learned`: the n-gram logistic regression alone, without the lexicon."""

    def __init__(self) -> None:
        weights = shipped_weights()
        self.coef, self.bias = weights["coef"], float(weights["bias"][0])

    def logits(self, texts: list[str]) -> np.ndarray:
        return np.array([float(self.coef[indices] @ values) for indices, values in map(hashed_features, texts)])\
            + self.bias

    def score(self, texts: list[str]) -> list[float]:
        return _sigmoid(self.logits(texts)).tolist()


class DefaultToxicityScorer:
    """The gate's default: the learned scorer and the lexicon, combined by a fitted logistic (module docstring)."""

    def __init__(self) -> None:
        self.learned, self.lexicon = LearnedToxicityScorer(), LexiconToxicityScorer()
        self.combine = shipped_weights()["combine"]  # a, b, c, d

    def score(self, texts: list[str]) -> list[float]:
        a, b, c, d = self.combine
        lexicon = np.asarray(self.lexicon.score(texts))
        return _sigmoid(a * self.learned.logits(texts) + b * lexicon + c * (lexicon > 0) + d).tolist()
