"""The learned toxicity scorers, offline and numpy-only: a logistic regression on hashed word and character n-grams
(`LearnedToxicityScorer`), and its combination with the lexicon (`DefaultToxicityScorer`, the gate's default).

Why this model (measurements: bench/compare_toxicity_models.py, README "Toxicity"): character n-grams read Japanese
without a word segmenter and survive misspellings; word uni/bigrams carry English phrases ("go back to", "those
people"); a linear model on them is a few hundred KB, loads in milliseconds and scores thousands of texts a second on
one core. Character n-grams alone come close; word n-grams alone cannot read Japanese (AUC about 0.5 there). A probe
on the embedded SmolLM2's hidden states is the heavier alternative compared in bench/ (`--probe`): it needs the
135M-parameter model for every text.

Texts go through the lexicon's `normalize` first (leetspeak, masks, stretched letters, width and kana folding), so
"f4ck", "ｼﾈ" and "シネ" share features. Each n-gram is hashed (xxh32, stable across runs and machines) into
N_FEATURES buckets with a sign bit, counts are log-scaled, and the row is L2-normalised.

The default combines the two: sigmoid(a * min(logit(learned), cap) + b * lexicon + c * [lexicon > 0] + d), with a..d
fitted on out-of-fold learned scores of the training data and the cap chosen there by grouped cross-validation, so
that the lexicon's strength on slurs and disguised profanity is kept, the learned part sees put-downs without bad
words, and 0.5 means "toxic" on held-out data (bench/ reliability plot). The cap (v6) stops a very confident learned
score from outweighing the lexicon: above it the learned part adds nothing, so between two texts the learned part
calls clearly toxic, a strong lexicon hit decides, and the fit no longer has to shrink the lexicon's weight to
temper over-confident learned scores (the training lines say a learned logit of 6 is no more often toxic than 2).
Weights: resources/toxicity/learned_toxicity.npz, rebuilt by `python bench/train_toxicity.py`; the data each part
saw is listed in resources/toxicity/LICENSES.md.
"""

from __future__ import annotations

import functools
import re
from importlib import resources

import numpy as np
import xxhash

from alignpipe.gate.toxicity import LexiconToxicityScorer, normalize

N_FEATURES = 1 << 18  # 262,144 buckets: float16 weights are 512 KB; fewer buckets collide more on Japanese n-grams
CHAR_NGRAMS = (1, 2, 3, 4)  # 1-grams matter in Japanese (死, 殺); 5-grams added nothing in cross-validation
WEIGHTS_FILE = "learned_toxicity.npz"
_WORD = re.compile(r"[a-z0-9']+")
_HAS_WORD = re.compile(r"\w")  # Latin words only: a Japanese run of \w is a whole clause, not a word


_MIX = np.uint64(0x9E3779B97F4A7C15)  # splitmix64 constants: a rolling code becomes a well-spread 64-bit hash
_MIX_1, _MIX_2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_KEY_BITS = 44  # a (text, n-gram) key is text << 44 | the hash's top 44 bits; a batch holds at most 2**20 texts


def _splitmix(codes: np.ndarray) -> np.ndarray:
    codes = (codes + _MIX) * _MIX_1
    codes = (codes ^ (codes >> np.uint64(27))) * _MIX_2
    return codes ^ (codes >> np.uint64(31))


def _char_ngram_hashes(normalized: list[str], char_ngrams: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(text index, 64-bit hash) of every character n-gram of every text, each text padded with a space; computed
    for the whole batch at once: the texts are joined with a NUL between them and n-grams holding one are dropped."""
    joined = "\0".join(f" {text} " for text in normalized)
    codes = np.frombuffer(joined.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    text_of = np.cumsum(codes == 0)  # the NULs count the texts before each position
    texts, hashes = [np.zeros(0, np.int64)], [np.zeros(0, np.uint64)]
    for n in char_ngrams:
        count = len(codes) - n + 1
        if count <= 0:
            continue
        rolling, clean = np.full(count, np.uint64(n)), np.ones(count, dtype=bool)
        for offset in range(n):
            window = codes[offset:offset + count]
            rolling = _splitmix(rolling ^ window)
            clean &= window != 0
        if n == 1:
            clean &= codes != 32  # a lone space is in every text
        texts.append(text_of[:count][clean])
        hashes.append(rolling[clean])
    return np.concatenate(texts), np.concatenate(hashes)


def _word_ngram_hashes(normalized: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(text index, 64-bit hash) of the Latin word unigrams and bigrams of every text."""
    texts, hashes = [], []
    for index, text in enumerate(normalized):
        words = _WORD.findall(text)
        grams = [f"w {word}" for word in words] + [f"b {first} {second}" for first, second in zip(words, words[1:])]
        texts += [index] * len(grams)
        hashes += [xxhash.xxh64_intdigest(gram.encode()) for gram in grams]
    return np.asarray(texts, dtype=np.int64), np.asarray(hashes, dtype=np.uint64)


def hashed_features(texts: list[str], char_ngrams: tuple[int, ...] = CHAR_NGRAMS,
                    words: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The feature matrix of a batch as sorted (row, bucket, value) triples: each distinct n-gram of a text is hashed
    into one of N_FEATURES buckets with a sign, weighs 1 + log(count), and each row has unit L2 norm. bench/ compares
    the n-gram families by switching them off."""
    normalized = [normalize(text).replace("\0", " ") for text in texts]  # NUL separates texts in a batch
    char_texts, char_hashes = _char_ngram_hashes(normalized, char_ngrams)
    word_texts, word_hashes = _word_ngram_hashes(normalized) if words else (np.zeros(0, np.int64), np.zeros(0, np.uint64))
    rows = np.concatenate([char_texts.astype(np.int64), word_texts])
    hashes = np.concatenate([char_hashes, word_hashes]) >> np.uint64(64 - _KEY_BITS)
    grams, counts = np.unique((rows.astype(np.uint64) << np.uint64(_KEY_BITS)) | hashes, return_counts=True)
    row = (grams >> np.uint64(_KEY_BITS)).astype(np.int64)
    bucket = (grams & np.uint64(N_FEATURES - 1)).astype(np.int64)
    sign = np.where((grams >> np.uint64(_KEY_BITS - 1)) & np.uint64(1), 1.0, -1.0)
    cells, where = np.unique(row * N_FEATURES + bucket, return_inverse=True)  # two n-grams may share a bucket
    values = np.bincount(where, weights=sign * (1.0 + np.log(counts)), minlength=len(cells))
    row, bucket = cells // N_FEATURES, cells % N_FEATURES
    norms = np.sqrt(np.bincount(row, weights=values * values, minlength=len(texts)))
    return row, bucket, values / np.where(norms > 0, norms, 1.0)[row]


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
        if not texts:
            return np.zeros(0)
        row, bucket, values = hashed_features(texts)
        logits = np.bincount(row, weights=self.coef[bucket] * values, minlength=len(texts)) + self.bias
        # No letter, digit or kana at all (empty, punctuation): nothing to read, not "unknown, so 50:50".
        return np.where([_HAS_WORD.search(text) is not None for text in texts], logits, -np.inf)

    def score(self, texts: list[str]) -> list[float]:
        return _sigmoid(self.logits(texts)).tolist()


class DefaultToxicityScorer:
    """The gate's default: the learned scorer and the lexicon, combined by a fitted logistic (module docstring)."""

    def __init__(self) -> None:
        self.learned, self.lexicon = LearnedToxicityScorer(), LexiconToxicityScorer()
        weights = shipped_weights()
        self.combine = weights["combine"]  # a, b, c, d
        self.cap = float(weights["cap"][0]) if "cap" in weights else np.inf  # weights before v6 have no cap

    def score(self, texts: list[str]) -> list[float]:
        a, b, c, d = self.combine
        lexicon = np.asarray(self.lexicon.score(texts))
        learned = np.minimum(self.learned.logits(texts), self.cap)
        return _sigmoid(a * learned + b * lexicon + c * (lexicon > 0) + d).tolist()
