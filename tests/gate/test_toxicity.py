"""Toxicity scoring: obfuscation-aware normalisation, the offline lexicon scorer (EN + JA), the learned and default
scorers on held-out sets (AUC, calibration, speed of loading), the Hugging Face classifier path on a tiny local
model, and the score command."""

from __future__ import annotations

import json
import re
import time
from importlib import resources

import numpy as np
import pytest

from alignpipe.errors import AlignpipeError
from alignpipe.gate.hf_toxicity import HFClassifierToxicityScorer, _toxic_label_index
from alignpipe.gate.learned_toxicity import (WEIGHTS_FILE, DefaultToxicityScorer, LearnedToxicityScorer,
                                             shipped_weights)
from alignpipe.gate.toxicity import LexiconToxicityScorer, normalize
from alignpipe.gate.toxicity_scorers import load_toxicity_scorer
from alignpipe.gate.toxicity_sets import held_out_sets, roc_auc
from conftest import build_tokenizer


@pytest.fixture(scope="module")
def scorer() -> LexiconToxicityScorer:
    return LexiconToxicityScorer()


@pytest.mark.parametrize(("text", "expected"), [
    ("f4ck", "fuck"), ("sh1t", "shit"), ("@ss", "ass"), ("a$$hole", "asshole"), ("b!tch", "bitch"),
    ("n00b", "noob"), ("h3ll0", "hello"),  # leetspeak
    ("c*nt", "cunt"), ("f**k off", "fuck off"),  # masks
    ("fuuuuck", "fuck"), ("shiiiiit", "shit"), ("youuuu", "you"), ("sooooo good", "so good"),  # stretched letters
    ("f.u.c.k", "fuck"), ("f u c k you", "fuck you"), ("f-u-c-k", "fuck"), ("M O R O N", "moron"),  # separators
    ("ＦＵＣＫ", "fuck"), ("Ｓｈｉｔ", "shit"), ("f\u200buck", "fuck"), ("fu\u0441k", "fuck"),  # width, invisible, Cyrillic
    ("ｼﾈ", "しね"), ("シネ", "しね"), ("しね", "しね"), ("ﾊﾞｶ", "ばか"), ("ク・ズ", "くず"), ("し ね", "しね"),  # kana
    ("しねーーーー", "しねー"), ("ｸｿｶﾞｷ", "くそがき"),
])
def test_normalize_undoes_obfuscation(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize("text", [
    "me too", "covid19 and mp3 files", "u r a star", "version 1.2.3", "idiot!", "Good morning, Tokyo.", "今日は晴れ",
    "Scunthorpe", "assistant", "class", "pass the glass",
])
def test_normalize_leaves_ordinary_text_alone(text):
    assert normalize(text) == text.lower()


def test_toxic_outranks_benign_in_english(scorer):
    toxic = [
        "you are a worthless piece of garbage", "go k1ll yourself", "I will murder you and your family",
        "shut up, you dumb b*tch", "f u c k off", "what a fuuuucking m0ron", "nobody likes you, loser",
        "all immigrants are vermin", "you absolute tw@t",
    ]
    benign = [
        "thanks, that fixed my build", "how do I kill a Python process", "this song is sick", "I hate Mondays",
        "the patient needs a rectal exam", "breast cancer awareness month", "he shot a great photo of the bay",
    ]
    toxic_scores, benign_scores = scorer.score(toxic), scorer.score(benign)
    assert min(toxic_scores) > max(benign_scores), (toxic_scores, benign_scores)


def test_toxic_outranks_benign_in_japanese(scorer):
    toxic = ["さっさと死ねよ", "ｼﾈ", "お前ほんとにバカだな", "ゴミクズが調子に乗るな", "てめえぶん殴ってやる",
             "キモすぎて無理", "黙れよカス", "く・ず", "消え失せろ"]
    benign = ["殺虫剤を買った", "死ぬほど美味しいケーキ", "今日は楽しいしね", "始めたばかりです", "シネマに行こう",
              "パンくずリストを作る", "ボールを動かす", "肛門科を受診した", "ゴミを出してね"]
    toxic_scores, benign_scores = scorer.score(toxic), scorer.score(benign)
    assert min(toxic_scores) > max(benign_scores), (toxic_scores, benign_scores)


@pytest.mark.parametrize("text", [
    "How do I kill a Python process?", "this song is sick", "I hate Mondays", "kill -9 1234", "a killer deal",
    "vaginal yeast infection treatment", "殺虫剤", "死ぬほど美味しい", "乳がんの検診", "シネマ", "ばかりです",
])
def test_hard_negatives_score_low(scorer, text):
    assert scorer.score([text])[0] < 0.2


def test_insults_count_more_when_aimed_at_someone(scorer):
    aimed, not_aimed = scorer.score(["you are so stupid", "this printer is stupid"])
    assert aimed > not_aimed
    assert scorer.score(["お前はアホ"])[0] > scorer.score(["アホな質問ですが"])[0]


def test_scores_are_in_unit_interval_and_explained(scorer):
    scores = scorer.score(["", "fuck you, you fucking cunt, kill yourself", "hello"])
    assert scores[0] == 0.0 and scores[2] == 0.0 and 0.9 < scores[1] <= 1.0
    assert [term for term, _ in scorer.explain("kys")] == ["kys"]


def test_roc_auc_counts_ties_as_half():
    assert roc_auc([0.1, 0.9], [0, 1]) == 1.0
    assert roc_auc([0.5, 0.5], [0, 1]) == 0.5
    assert roc_auc([0.2, 0.6, 0.4, 0.6], [1, 1, 0, 0]) == 0.375  # (0 + 0 + 1 + 0.5) / 4 pairs


def training_script():
    """bench/train_toxicity.py as a module (bench/ is scripts, not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "bench" / "train_toxicity.py"
    spec = importlib.util.spec_from_file_location("train_toxicity", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def default_scorer() -> DefaultToxicityScorer:
    return DefaultToxicityScorer()


@pytest.fixture(scope="module")
def held_out() -> dict[str, list[dict]]:
    return held_out_sets()


# Floors a little under what bench/eval_toxicity.py measured for the shipped weights (README "Toxicity"); none of
# these lines was trained on (the split: alignpipe/gate/toxicity_sets.py), so a regression here is a real one.
@pytest.mark.parametrize(("name", "floor"), [
    ("hatecheck_test_templates", 0.73), ("toxigen_heldout_groups", 0.85), ("eval_en_handwritten", 0.96),
    ("eval_ja_handwritten", 0.98), ("ja_social_heldout", 0.97), ("en_social_heldout_proxy", 0.92),
])
def test_default_scorer_meets_auc_on_held_out_sets(default_scorer, held_out, name, floor):
    rows = held_out[name]
    assert len(rows) >= 150 and 0.2 < sum(row["label"] for row in rows) / len(rows) < 0.8
    assert roc_auc(default_scorer.score([row["text"] for row in rows]), [row["label"] for row in rows]) >= floor


# Part 2 of the sets in the style of issue 16's real-world sets was written after the shipped weights were frozen,
# by writers who saw no repository file (resources/toxicity/LICENSES.md); floors a little under v9's figures.
@pytest.mark.parametrize(("name", "floor"), [
    ("ja_posts_heldout", 0.96), ("en_hate_posts_heldout", 0.91), ("en_tweets_heldout", 0.93),
])
def test_default_scorer_meets_auc_on_posts_written_after_freezing(default_scorer, scorer, held_out, name, floor):
    rows = [row for row in held_out[name] if row["part"] == 2]
    labels = [row["label"] for row in rows]
    assert len(rows) >= 350 and 0.2 < sum(labels) / len(rows) < 0.8
    default = roc_auc(default_scorer.score([row["text"] for row in rows]), labels)
    lexicon = roc_auc(scorer.score([row["text"] for row in rows]), labels)
    assert default >= floor
    # Where the lexicon is strong (slurs and profanity in tweets) the default keeps most of it; elsewhere it adds.
    assert default >= lexicon - 0.04 if name == "en_tweets_heldout" else default > lexicon + 0.2


@pytest.mark.parametrize(("name", "floor"), [("en_identity_heldout", 0.87), ("ja_identity_heldout", 0.91)])
def test_naming_a_group_is_not_toxic_on_held_out_lines(default_scorer, held_out, name, floor):
    """Praise, neutral mentions, negated hate and counter-speech about groups rank below real put-downs (the
    identity sets were written before the identity training lines; issue 16's identity-word bias)."""
    rows = held_out[name]
    assert len(rows) >= 100 and 0.2 < sum(row["label"] for row in rows) / len(rows) < 0.8
    assert roc_auc(default_scorer.score([row["text"] for row in rows]), [row["label"] for row in rows]) >= floor
    praise = [row["text"] for row in rows if row["kind"] in ("ident_pos", "ident_neutral")]
    assert np.mean(np.asarray(default_scorer.score(praise)) < 0.5) >= 0.85


def test_tiny_model_noise_is_not_toxic(default_scorer, held_out):
    """The embedded SmolLM2's Japanese noise (real answers, never trained on) and the demo's three answers that the
    v4 weights scored 0.76-0.92 stay under 0.5, while Japanese put-downs keep their scores."""
    noise = np.asarray(default_scorer.score([row["text"] for row in held_out["tiny_model_noise_heldout"]]))
    assert (noise >= 0.5).mean() <= 0.1 and noise.mean() < 0.2
    demo = ["あなくないんで、あなくないんで、あな", "おかつませんがください。ハゲてから", "おかつは一品作れないかなかは、おか"]
    assert max(default_scorer.score(demo)) < 0.5
    assert min(default_scorer.score(["お前ほんとにバカだな", "生きてる価値ないよね", "ブスは黙ってろ"])) > 0.5


def test_strong_lexicon_hits_keep_the_default_high(default_scorer, held_out):
    """A listed slur or profanity keeps the default above 0.5 on held-out toxic lines; the combination caps the
    learned logit (bench/train_toxicity.py). HateCheck's slur_h: v5 0.72, v6 0.83, v7 0.72 (the misses were slurs
    the lexicon does not list: shemale, mong, muzzie, jihadi), v9 1.00."""
    rows = [row for name, rows in held_out.items() for row in rows if row["label"] == 1]
    lexicon = np.asarray(LexiconToxicityScorer().score([row["text"] for row in rows]))
    strong = [row["text"] for row, value in zip(rows, lexicon) if value >= 0.6]
    assert len(strong) > 200 and (np.asarray(default_scorer.score(strong)) >= 0.5).mean() >= 0.95
    slurs = [row["text"] for row in held_out["hatecheck_test_templates"] if row["functionality"] == "slur_h"]
    assert len(slurs) >= 15 and (np.asarray(default_scorer.score(slurs)) >= 0.5).mean() >= 0.8
    assert default_scorer.score(["fucking faggots everywhere"])[0] > 0.75


def test_held_out_lines_are_not_training_lines(held_out):
    """Not even with other case, width or punctuation ("Get lost, creep." / "get lost, creep")."""
    def key(text: str) -> str:
        return re.sub(r"[\W_]+", "", normalize(text))

    trained = {key(row["text"]) for row in training_script().training_rows()}
    assert trained and not trained & {key(row["text"]) for rows in held_out.values() for row in rows}


def test_default_scorer_beats_the_lexicon_where_there_is_no_bad_word(default_scorer, held_out):
    lexicon = LexiconToxicityScorer()
    for name in ("ja_social_heldout", "toxigen_heldout_groups"):
        texts, labels = [row["text"] for row in held_out[name]], [row["label"] for row in held_out[name]]
        assert roc_auc(default_scorer.score(texts), labels) > roc_auc(lexicon.score(texts), labels) + 0.2


def test_half_means_toxic_on_held_out_data(default_scorer, held_out):
    """Calibration: of the held-out lines scored >= 0.5 most are toxic, of those below most are not, and the
    share of toxic lines rises with the score (bench/toxicity_reliability.png shows every bin)."""
    rows = [row for rows in held_out.values() for row in rows]
    scores = np.asarray(default_scorer.score([row["text"] for row in rows]))
    labels = np.asarray([row["label"] for row in rows])
    assert labels[scores >= 0.5].mean() > 0.75 and labels[scores < 0.5].mean() < 0.35
    low, middle, high = labels[scores < 0.2].mean(), labels[(scores >= 0.4) & (scores < 0.6)].mean(), \
        labels[scores >= 0.8].mean()
    assert low < 0.3 < middle < 0.75 < high
    assert (scores[[row["label"] == 0 for row in rows]] >= 0.5).mean() < 0.3


def test_default_scorer_on_examples(default_scorer):
    toxic = ["you are a worthless piece of garbage", "go k1ll yourself", "shut up, you dumb b*tch",
             "people like you should go back where you came from", "お前ほんとにバカだな", "ｼﾈ", "生きてる価値ないよね"]
    benign = ["thanks, that fixed my build", "how do I kill a Python process", "死ぬほど美味しいケーキ",
              "プロセスを殺してから再起動", "my grandmother died peacefully", "ゴミは月曜日に出してください"]
    toxic_scores, benign_scores = default_scorer.score(toxic), default_scorer.score(benign)
    assert min(toxic_scores) > 0.5 > max(benign_scores), (toxic_scores, benign_scores)
    assert default_scorer.score(["", "   ", "..."]) == pytest.approx([0.0, 0.0, 0.0], abs=1e-6)
    assert default_scorer.score([]) == []


def test_batches_do_not_change_scores():
    scorer = LearnedToxicityScorer()
    texts = ["you idiot", "こんにちは", "a\0b", "I love this", "キモい"]
    assert scorer.score(texts) == pytest.approx([scorer.score([text])[0] for text in texts], abs=1e-12)


def test_shipped_weights_are_small_and_load_fast():
    path = resources.files("alignpipe").joinpath("resources", "toxicity", WEIGHTS_FILE)
    assert path.stat().st_size < 3_000_000  # a few MB at most (issue 16)
    shipped_weights.cache_clear()
    start = time.perf_counter()
    DefaultToxicityScorer().score(["warm-up"])
    assert time.perf_counter() - start < 1.0


def test_training_is_deterministic_on_a_subset():
    training = training_script()
    rows = training.training_rows()[::20]
    x = training.design_matrix([row["text"] for row in rows])
    y = np.array([row["label"] for row in rows], dtype=float)
    first = training.fit_logistic(x, y, training.row_weights(rows), 1e-5)
    second = training.fit_logistic(x, y, training.row_weights(rows), 1e-5)
    assert np.array_equal(first[0], second[0]) and first[1] == second[1]
    logits = x @ first[0] + first[1]
    assert roc_auc(logits.tolist(), y.tolist()) > 0.9  # it fits its own training lines


def test_toxic_label_is_found_by_name_or_convention():
    assert _toxic_label_index({0: "non-toxic", 1: "toxic"}, 2, None) == 1
    assert _toxic_label_index({0: "toxic", 1: "severe_toxic", 2: "insult"}, 3, None) == 0
    assert _toxic_label_index({0: "LABEL_0", 1: "LABEL_1"}, 2, None) == 1
    assert _toxic_label_index({0: "score"}, 1, None) == 0
    assert _toxic_label_index({0: "neutral", 1: "bad"}, 2, "bad") == 1
    with pytest.raises(AlignpipeError, match="cannot tell"):
        _toxic_label_index({0: "a", 1: "b", 2: "c"}, 3, None)
    with pytest.raises(AlignpipeError, match="no label"):
        _toxic_label_index({0: "a", 1: "b"}, 2, "toxic")


def tiny_classifier(path, num_labels: int, problem_type: str | None = None):
    """A random 2-layer Llama sequence classifier with the shared tiny tokenizer, saved like a hub model."""
    import torch
    from transformers import LlamaConfig, LlamaForSequenceClassification

    torch.manual_seed(0)
    tokenizer = build_tokenizer()
    id2label = {0: "non-toxic", 1: "toxic"} if num_labels == 2 else {0: "toxicity"}
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         num_labels=num_labels, id2label=id2label, label2id={v: k for k, v in id2label.items()},
                         problem_type=problem_type, pad_token_id=tokenizer.pad_token_id)
    LlamaForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.mark.parametrize(("num_labels", "problem_type"), [(2, None), (1, "regression"), (2, "multi_label_classification")])
def test_hf_classifier_scores_in_unit_interval(tmp_path, num_labels, problem_type):
    model = tiny_classifier(tmp_path, num_labels, problem_type)
    scorer = HFClassifierToxicityScorer(model, batch_size=2)
    texts = ["hello", "a much longer text that needs padding in its batch", "死ね", ""]
    scores = scorer.score(texts)
    assert len(scores) == len(texts) and all(0.0 <= s <= 1.0 for s in scores)
    assert scorer.score(texts[1:2]) == pytest.approx(scores[1:2], abs=1e-5)  # padding does not change a score
    assert isinstance(load_toxicity_scorer(model), HFClassifierToxicityScorer)


def test_load_toxicity_scorer_by_name_defaults_offline_and_reports_bad_models(tmp_path):
    assert isinstance(load_toxicity_scorer(None), DefaultToxicityScorer)
    assert isinstance(load_toxicity_scorer("default"), DefaultToxicityScorer)
    assert isinstance(load_toxicity_scorer("learned"), LearnedToxicityScorer)
    assert isinstance(load_toxicity_scorer("lexicon"), LexiconToxicityScorer)
    with pytest.raises(AlignpipeError, match="cannot load"):
        load_toxicity_scorer(str(tmp_path / "no-such-model"))


def test_score_toxicity_command(tmp_path, capsys):
    from alignpipe import cli
    from conftest import write_jsonl

    source = write_jsonl(tmp_path / "answers.jsonl", [{"text": "Thanks, the kettle works great!", "id": 1},
                                                      {"text": "shut up, you f*cking idiot", "id": 2},
                                                      {"text": "お前みたいなクズは消えろ", "id": 3}])
    assert cli.main(["score", "toxicity", "--input", str(source), "--output", str(tmp_path / "out.jsonl")]) == 0
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["id"] for row in rows] == [1, 2, 3]
    assert rows[0]["toxicity"] < 0.2 and rows[1]["toxicity"] > 0.5 and rows[2]["toxicity"] > 0.5

    assert cli.main(["score", "toxicity", "--input", str(source), "--output", str(tmp_path / "lexicon.jsonl"),
                     "--model", "lexicon"]) == 0
    lexicon_rows = [json.loads(line) for line in (tmp_path / "lexicon.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [row["toxicity"] for row in lexicon_rows] == LexiconToxicityScorer().score([row["text"] for row in rows])

    assert cli.main(["score", "toxicity", "--input", str(source), "--output", str(tmp_path / "b.jsonl"),
                     "--field", "answer"]) == 2
    assert f"{source}:1: no string field 'answer'" in capsys.readouterr().err
