"""Toxicity scoring: obfuscation-aware normalisation, the offline lexicon scorer (EN + JA), the Hugging Face
classifier path on a tiny local model, and the acceptance thresholds on the shipped eval sets."""

from __future__ import annotations

import json
from importlib import resources

import numpy as np
import pytest

from alignpipe.errors import AlignpipeError
from alignpipe.gate.hf_toxicity import HFClassifierToxicityScorer, _toxic_label_index
from alignpipe.gate.toxicity import LexiconToxicityScorer, load_toxicity_scorer, normalize
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


def roc_auc(scores: list[float], labels: list[int]) -> float:
    values, inverse, counts = np.unique(np.asarray(scores), return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    positive = np.asarray(labels) == 1
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def test_roc_auc_counts_ties_as_half():
    assert roc_auc([0.1, 0.9], [0, 1]) == 1.0
    assert roc_auc([0.5, 0.5], [0, 1]) == 0.5
    assert roc_auc([0.2, 0.6, 0.4, 0.6], [1, 1, 0, 0]) == 0.375  # (0 + 0 + 1 + 0.5) / 4 pairs


@pytest.mark.parametrize(("language", "threshold"), [("en", 0.85), ("ja", 0.80)])
def test_lexicon_scorer_meets_auc_on_held_out_eval_set(scorer, language, threshold):
    path = resources.files("alignpipe").joinpath("resources", "toxicity", f"eval_{language}.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 150 and 0.4 < sum(row["label"] for row in rows) / len(rows) < 0.6
    auc = roc_auc(scorer.score([row["text"] for row in rows]), [row["label"] for row in rows])
    assert auc >= threshold


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


def test_load_toxicity_scorer_defaults_offline_and_reports_bad_models(tmp_path):
    assert isinstance(load_toxicity_scorer(None), LexiconToxicityScorer)
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

    assert cli.main(["score", "toxicity", "--input", str(source), "--output", str(tmp_path / "b.jsonl"),
                     "--field", "answer"]) == 2
    assert f"{source}:1: no string field 'answer'" in capsys.readouterr().err
