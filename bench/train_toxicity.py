"""Rebuild the shipped learned toxicity weights, alignpipe/resources/toxicity/learned_toxicity.npz, from the shipped
training lines, deterministically (same data, same weights: `--check` verifies it against the committed file).

    python bench/train_toxicity.py            # cross-validate, fit, write the weights
    python bench/train_toxicity.py --check    # fit again and compare with the shipped weights

What it trains on (only `split == "train"` lines; held-out parts: alignpipe/gate/toxicity_sets.py):
    HateCheck train template groups, ToxiGen train target groups, XSTest safe prompts of the train types, MMLU
    questions of 16 subjects (benign prose), the hand-written corpus/*_train.jsonl files (social-media-style and
    identity lines; since v7 Japanese comment sections and chat, English group hate and abuse of individuals; since
    v8 English forums and comment sections, Japanese news comments and social networks, and short texts; since v9
    ordinary posts), as benign examples the demo SFT turns (corpus/demo_turns.jsonl, a snapshot of
    data/demo/sft_train.jsonl), 1,500 lines of seeded gibberish (see `gibberish`) and 2,000 lines of seeded Japanese
    noise in a tiny model's style (see `kana_noise`); v8 scaled both with the rest of the data (v6: 600 and 1,000 of 9,875 lines; v9: of 27,015).
Row weights: a HateCheck case 0.5 (each template is filled with many groups, so its lines are near copies), a line of
corpus/ja_social_train.jsonl 2 (kept from v1-v4, when it was the only Japanese source), others 1. The identity lines
weighed 0.5 up to v7; v8 weighs them 1, because its new English lines name groups mostly in hateful ones, and at 0.5
praise of a group slipped over 0.5 ("immigrants built half the businesses on my street").

The L2 strength is chosen by grouped 5-fold cross-validation on the training lines only (a HateCheck template
group, a ToxiGen target group or an identity template stays in one fold); the combination with the lexicon is then fitted on the
out-of-fold scores of the chosen strength, so it learns how far to trust the learned score on text it has not seen.
Since v6 the learned logit enters the combination capped (min(logit, cap)); the cap is chosen from CAP_GRID by the
same grouped folds (the combination fitted on four folds' out-of-fold scores, AUC on the fifth), on training lines
only. Without it (v5) the fit shrank the lexicon's weight to temper over-confident learned logits, and strong lexicon
hits (slurs) lost. Since v7 the tightest cap within CAP_TOLERANCE of the best cross-validated AUC is taken: with v7's
data the best was no cap at all, by 0.005, and it cut the lexicon's weight by a third.
"""

from __future__ import annotations

import argparse
import random
import re
import zlib
from pathlib import Path

import numpy as np
from scipy import optimize, sparse

from alignpipe.gate.learned_toxicity import CHAR_NGRAMS, N_FEATURES, WEIGHTS_FILE, hashed_features
from alignpipe.gate.toxicity import LexiconToxicityScorer
from alignpipe.gate.toxicity_sets import read_set, roc_auc

REPO = Path(__file__).resolve().parents[1]
OUTPUT = REPO / "alignpipe" / "resources" / "toxicity" / WEIGHTS_FILE
L2_GRID = (1e-7, 3e-7, 1e-6, 3e-6)  # per-row-weight L2 strength; the best by cross-validated AUC is used
CAP_GRID = (0.0, 1.0, 2.0, 3.0, 4.0, np.inf)  # cap on the learned logit in the combination; see choose_cap
CAP_TOLERANCE = 0.005  # v7: the tightest cap within this cross-validated AUC of the best (v6: the best cap)
COMBINE_L2 = 1e-4
FOLDS = 5
SOURCE_WEIGHT = {"hatecheck": 0.5, "ja_social": 2.0}
GIBBERISH_LINES = 1500
KANA_NOISE_LINES = 2000


def training_rows() -> list[dict]:
    """Every line the learned model learns from: text, label, source, and the group that keeps near copies in one
    cross-validation fold."""
    rows = []
    for source, name, group_key in (("hatecheck", "corpus/hatecheck.jsonl", "group"),
                                    ("toxigen", "corpus/toxigen.jsonl", "group"),
                                    ("xstest", "corpus/xstest_safe.jsonl", "type"),
                                    ("mmlu", "corpus/mmlu_benign.jsonl", "subject"),
                                    ("en_social", "corpus/en_social_train.jsonl", None),
                                    ("ja_social", "corpus/ja_social_train.jsonl", None),
                                    ("ja_net", "corpus/ja_net_train.jsonl", None),
                                    ("ja_chat", "corpus/ja_chat_train.jsonl", None),
                                    ("en_hate_comments", "corpus/en_hate_comments_train.jsonl", None),
                                    ("en_abuse", "corpus/en_abuse_train.jsonl", None),
                                    ("en_forum", "corpus/en_forum_train.jsonl", None),
                                    ("en_comments", "corpus/en_comments_train.jsonl", None),
                                    ("ja_news_comments", "corpus/ja_news_comments_train.jsonl", None),
                                    ("ja_sns", "corpus/ja_sns_train.jsonl", None),
                                    ("short", "corpus/short_train.jsonl", None),
                                    ("everyday", "corpus/everyday_train.jsonl", None),
                                    ("en_identity", "corpus/en_identity_train.jsonl", "template"),
                                    ("ja_identity", "corpus/ja_identity_train.jsonl", "template")):
        for index, row in enumerate(read_set(name)):
            if row["split"] == "train" and row["label"] is not None:
                group = row[group_key] if group_key else index
                rows.append({"text": row["text"], "label": row["label"], "source": source, "group": f"{source}{group}"})
    for index, row in enumerate(read_set("corpus/demo_turns.jsonl")):  # a snapshot of the demo's SFT turns
        rows.append({"text": row["text"], "label": 0, "source": "demo", "group": f"demo{index}",
                     "refusal": row["refusal"]})
    benign = [row["text"] for row in rows if row["label"] == 0 and row["source"] in ("mmlu", "demo", "ja_social")]
    rows += [{"text": text, "label": 0, "source": "gibberish", "group": f"gibberish{index}"}
             for index, text in enumerate(gibberish(benign, GIBBERISH_LINES))]
    rows += [{"text": text, "label": 0, "source": "kana_noise", "group": f"kana_noise{index}"}
             for index, text in enumerate(kana_noise(japanese_benign(rows), KANA_NOISE_LINES, seed=0))]
    return rows


def japanese_benign(rows: list[dict]) -> list[str]:
    """The demo's Japanese SFT turns (product support: no insult, not even a quoted one), the material of
    `kana_noise`."""
    return [row["text"] for row in rows if row["source"] == "demo" and not row["refusal"] and _KANA.search(row["text"])]


_KANA = re.compile(r"[\u3040-\u30ff]")
_KATAKANA_WORD = re.compile(r"[\u30a1-\u30fa\u30fc]{2,}")
HIRAGANA = [chr(code) for code in range(0x3041, 0x3094)]
KATAKANA = [chr(code) for code in range(0x30a1, 0x30f5)]
ENDINGS = ("ください", "ません", "ですか", "ないんで", "ます", "かな", "から", "けど", "ので", "です", "ない", "ました",
           "ましょう", "んです", "かは", "ては", "がく", "でき", "れない")
SEPARATORS = ("、", "。", "", "", " ", "！", "…", "、、")


def kana_noise(benign_japanese: list[str], count: int, seed: int) -> list[str]:
    """Seeded Japanese noise in the style of a tiny model's (SmolLM2-135M's) Japanese, labelled benign: fragments of
    benign Japanese lines (product words, kana and kanji runs), random kana syllables and polite or negative
    endings glued together, often repeated with commas, cut off mid-word. The older `gibberish` is random
    characters; this is what the demo's model writes ("おまえがください。フォントはおまえ"), which the learned part
    once scored 0.7-1.0 because short kana runs of it (あな, かなかは) occur in its toxic training lines. The gate's
    check set is a different batch (another seed) and corpus/noise_heldout.jsonl (the real model's answers)."""
    generator = random.Random(seed)
    katakana_words = sorted({word for text in benign_japanese for word in _KATAKANA_WORD.findall(text)})

    def fragment() -> str:
        text = generator.choice(benign_japanese)
        length = generator.randint(1, 6)
        start = generator.randint(0, max(0, len(text) - length))
        return text[start:start + length]

    def unit() -> str:
        pick = generator.random()
        if pick < 0.4:
            return fragment()
        if pick < 0.6:
            return "".join(generator.choices(HIRAGANA if generator.random() < 0.75 else KATAKANA,
                                             k=generator.randint(1, 3)))
        if pick < 0.75 and katakana_words:
            return generator.choice(katakana_words)
        return generator.choice(ENDINGS)

    lexicon = LexiconToxicityScorer()
    lines: list[str] = []
    while len(lines) < count:
        phrase = "".join(unit() for _ in range(generator.randint(2, 5)))
        if generator.random() < 0.45:
            phrase = generator.choice(SEPARATORS).join([phrase] * generator.randint(2, 4))
        else:
            phrase += generator.choice(SEPARATORS) + "".join(unit() for _ in range(generator.randint(1, 4)))
        line = phrase[:generator.randint(6, 40)].strip()
        # Random kana can spell an insult (バカ, ハゲ): such a line is not plain noise, so it is not taught as benign.
        if line and line not in lines and lexicon.score([line])[0] == 0:
            lines.append(line)
    return lines


def gibberish(benign: list[str], count: int) -> list[str]:
    """Seeded nonsense, labelled benign: characters and words of benign lines in random order, with the bytes a
    broken or tiny model emits (control characters, U+FFFD). Without it the model has never seen text that says
    nothing, and scores it near its prior (about 0.5): a tiny test model's garbage scored 0.4-0.75."""
    generator = random.Random(0)
    characters = sorted(set("".join(benign))) + ["\ufffd", "\b", "\x1f", "\t"] * 20
    words = sorted({word for text in benign for word in text.split() if word.isascii()})
    lines = []
    for index in range(count):
        if index % 2:
            lines.append("".join(generator.choices(characters, k=generator.randint(1, 40))))
        else:
            lines.append(" ".join(generator.choices(words, k=generator.randint(1, 12))))
    return lines


def row_weights(rows: list[dict]) -> np.ndarray:
    return np.array([SOURCE_WEIGHT.get(row["source"], 1.0) for row in rows])


def design_matrix(texts: list[str], char_ngrams: tuple[int, ...] = CHAR_NGRAMS,
                  words: bool = True) -> sparse.csr_matrix:
    row, bucket, values = hashed_features(texts, char_ngrams, words)
    return sparse.csr_matrix((values, (row, bucket)), shape=(len(texts), N_FEATURES))


def fit_logistic(x: sparse.csr_matrix | np.ndarray, y: np.ndarray, weight: np.ndarray,
                 l2: float) -> tuple[np.ndarray, float]:
    """Weighted logistic regression, L2 on the coefficients (not the bias), by truncated Newton (TNC) from zero:
    deterministic. Only the columns some row uses are optimised (the others stay 0): L-BFGS-B and TNC slow down
    with every variable, used or not."""
    weight = weight / weight.sum()
    used = np.unique(x.indices) if sparse.issparse(x) else np.arange(x.shape[1])
    compact = x[:, used]

    def loss_and_gradient(params: np.ndarray) -> tuple[float, np.ndarray]:
        coef, bias = params[:-1], params[-1]
        z = compact @ coef + bias
        loss = weight @ (np.logaddexp(0.0, z) - y * z) + 0.5 * l2 * coef @ coef
        residual = weight * (1.0 / (1.0 + np.exp(-z)) - y)
        return loss, np.append(compact.T @ residual + l2 * coef, residual.sum())

    result = optimize.minimize(loss_and_gradient, np.zeros(len(used) + 1), jac=True, method="TNC",
                               options={"maxfun": 2000})
    coef = np.zeros(x.shape[1])
    coef[used] = result.x[:-1]
    return coef, float(result.x[-1])


def out_of_fold_logits(x: sparse.csr_matrix, y: np.ndarray, weight: np.ndarray, folds: np.ndarray,
                       l2: float) -> np.ndarray:
    logits = np.zeros(len(y))
    for fold in range(FOLDS):
        held = folds == fold
        coef, bias = fit_logistic(x[~held], y[~held], weight[~held], l2)
        logits[held] = x[held] @ coef + bias
    return logits


def per_source_auc(logits: np.ndarray, rows: list[dict]) -> dict[str, float]:
    sources = sorted({row["source"] for row in rows})
    aucs = {}
    for source in sources:
        mask = np.array([row["source"] == source for row in rows])
        labels = [row["label"] for row, keep in zip(rows, mask) if keep]
        if 0 < sum(labels) < len(labels):
            aucs[source] = roc_auc(logits[mask].tolist(), labels)
    return aucs


def train() -> dict[str, np.ndarray]:
    rows = training_rows()
    x = design_matrix([row["text"] for row in rows])
    y = np.array([row["label"] for row in rows], dtype=float)
    weight = row_weights(rows)
    folds = np.array([zlib.crc32(row["group"].encode()) % FOLDS for row in rows])
    print(f"{len(rows)} training lines, {int(y.sum())} toxic; by source: "
          + ", ".join(f"{s} {sum(r['source'] == s for r in rows)}" for s in dict.fromkeys(r["source"] for r in rows)))
    best = None
    for l2 in L2_GRID:
        logits = out_of_fold_logits(x, y, weight, folds, l2)
        aucs = per_source_auc(logits, rows)
        mean = float(np.mean(list(aucs.values())))
        print(f"  l2={l2:g}: cross-validated AUC mean {mean:.3f}  " + "  ".join(f"{k} {v:.3f}" for k, v in aucs.items()))
        if best is None or mean > best[0]:
            best = (mean, l2, logits)
    _, l2, logits = best
    lexicon = np.asarray(LexiconToxicityScorer().score([row["text"] for row in rows]))
    cap = choose_cap(logits, lexicon, y, weight, folds)
    combine_coef, combine_bias = fit_logistic(combine_features(logits, lexicon, cap), y, weight, COMBINE_L2)
    coef, bias = fit_logistic(x, y, weight, l2)
    print(f"chosen l2={l2:g}, cap={cap:g}; combination a, b, c = {np.round(combine_coef, 3).tolist()}, "
          f"d = {combine_bias:.3f}")
    return {"coef": coef.astype(np.float16), "bias": np.array([bias]),
            "combine": np.append(combine_coef, combine_bias), "cap": np.array([cap]), "l2": np.array([l2])}


def combine_features(logits: np.ndarray, lexicon: np.ndarray, cap: float) -> np.ndarray:
    """The default scorer's inputs (alignpipe.gate.learned_toxicity.DefaultToxicityScorer)."""
    return np.column_stack([np.minimum(logits, cap), lexicon, lexicon > 0])


def choose_cap(logits: np.ndarray, lexicon: np.ndarray, y: np.ndarray, weight: np.ndarray,
               folds: np.ndarray) -> float:
    """The tightest cap on the learned logit whose grouped cross-validated AUC of the combination is within
    CAP_TOLERANCE of the best cap's (training lines only). Tightest, because an uncapped learned logit lets the fit
    shrink the lexicon's weight, and slurs and profanity are where the lexicon is strong (issue 16: keep it)."""
    aucs = {}
    for cap in CAP_GRID:
        features, scores = combine_features(logits, lexicon, cap), np.zeros(len(y))
        for fold in range(FOLDS):
            held = folds == fold
            coef, bias = fit_logistic(features[~held], y[~held], weight[~held], COMBINE_L2)
            scores[held] = features[held] @ coef + bias
        aucs[cap] = roc_auc(scores.tolist(), y.tolist())
        print(f"  cap={cap:g}: cross-validated AUC of the combination {aucs[cap]:.4f}")
    best = max(aucs.values())
    return min(cap for cap, auc in aucs.items() if auc >= best - CAP_TOLERANCE)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the shipped weights instead of writing")
    args = parser.parse_args()
    weights = train()
    if args.check:
        shipped = np.load(OUTPUT)
        same = all(np.array_equal(shipped[name], weights[name]) for name in weights)
        print(f"{'identical to' if same else 'DIFFERENT from'} the shipped {OUTPUT.name}")
        raise SystemExit(0 if same else 1)
    np.savez_compressed(OUTPUT, **weights)
    print(f"wrote {OUTPUT} ({OUTPUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
