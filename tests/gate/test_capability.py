"""Capability accuracy: lm-evaluation-harness's prompts and token slicing, batching, and an independent reference."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from alignpipe.cli import main
from alignpipe.errors import AlignpipeError
from alignpipe.gate import capability
from alignpipe.gate.capability import (continuation_log_likelihoods, encode_pair, jcommonsenseqa_item, jmmlu_item,
                                       load_items, mmlu_item, score_multiple_choice, shipped_items)

ROWS = [
    ["  What is 2 + 2? ", "3", "4", "5", "22", "B"],
    ["Which gas do plants take in?", "oxygen", "carbon dioxide", "nitrogen", "helium", "B"],
    ["Reset the kettle by holding", "Temp and Power", "Power only", "nothing", "the lid", "A"],
    ["保証期間は？", "1年", "2年", "3年", "なし", "B"],
    ["How many sides has a hexagon?", "5", "6", "7", "8", "B"],
    ["user assistant system?", "hello", "world", "0123", "4567", "D"],
]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir):
    from alignpipe.models import load_plain_causal_lm

    return load_plain_causal_lm(str(tiny_model_dir))


def write_csv(path: Path, rows: list[list[str]], bom: bool = False) -> Path:
    import csv

    with path.open("w", encoding="utf-8-sig" if bom else "utf-8", newline="") as out:
        csv.writer(out).writerows(rows)
    return path


def test_mmlu_prompt_is_the_harness_string():
    item = mmlu_item("high_school_biology", "  Which organelle makes ATP?\n", ["Nucleus", "Mitochondrion", "Ribosome",
                                                                              "Golgi"], 1)
    assert item.context == ("The following are multiple choice questions (with answers) about high school biology.\n\n"
                            "Which organelle makes ATP?\nA. Nucleus\nB. Mitochondrion\nC. Ribosome\nD. Golgi\nAnswer:")
    assert item.continuations == (" A", " B", " C", " D") and item.answer == 1


def test_japanese_prompts():
    item = jmmlu_item("anatomy", "腎臓の単位は？", ["糸球体", "ネフロン", "尿管", "膀胱"], 1)
    assert item.context == "以下は解剖学に関する多肢選択問題（解答付き）です。\n\n腎臓の単位は？\nA. 糸球体\nB. ネフロン\nC. 尿管\nD. 膀胱\nAnswer:"
    item = jcommonsenseqa_item("田んぼが広がる風景を何という？", ["畑", "海", "田園", "地方", "牧場"], 2)
    assert item.context == ("以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。\n\n"
                            "### 指示：\n出力は以下から選択してください：\n- 畑\n- 海\n- 田園\n- 地方\n- 牧場\n\n"
                            "### 入力：\n田んぼが広がる風景を何という？\n\n### 応答：")
    assert item.continuations[2] == "\n田園"


def test_continuation_tokens_are_the_tail_of_the_whole(tiny):
    _, tokenizer = tiny
    for context, continuation in [("Answer:", " B"), ("保証期間は", "2年間です"), ("hello world", "0123")]:
        context_ids, continuation_ids = encode_pair(tokenizer, context, continuation)
        whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        assert context_ids == tokenizer(context, add_special_tokens=False)["input_ids"]
        assert continuation_ids == whole[len(context_ids):] and continuation_ids
    # Trailing whitespace of the context moves to the continuation, as in the harness.
    assert encode_pair(tokenizer, "Answer: ", "B") == encode_pair(tokenizer, "Answer:", " B")
    assert tokenizer.bos_token_id not in encode_pair(tokenizer, "Answer:", " B")[0]  # no special tokens added


def full_forward_log_likelihood(model, tokenizer, context: str, continuation: str) -> float:
    """Independent of the module: one forward pass over context + continuation, no cache, no padding."""
    context_ids = tokenizer.encode(context, add_special_tokens=False)
    target = tokenizer.encode(context + continuation, add_special_tokens=False)[len(context_ids):]
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([context_ids + target])).logits[0].double(), dim=-1)
    return sum(log_probs[len(context_ids) - 1 + i, token].item() for i, token in enumerate(target))


def test_multi_token_continuations_equal_a_full_forward(tiny):
    model, tokenizer = tiny
    items = [jcommonsenseqa_item("ケトルのリセットは？", ["温度ボタンと電源", "電源", "10秒間押す", "保証書", "なし"], 0),
             jcommonsenseqa_item("保証期間は？", ["2年間です", "1年", "3年間", "ありません", "5年"], 0),
             mmlu_item("misc", "hello world?", ["user", "assistant", "system", "0123"], 1)]
    pairs = [(item.context, continuation) for item in items for continuation in item.continuations]
    expected = [full_forward_log_likelihood(model, tokenizer, *pair) for pair in pairs]
    assert continuation_log_likelihoods(model, tokenizer, pairs, batch_size=2) == pytest.approx(expected, abs=1e-4)


def test_batched_scores_equal_one_at_a_time(tiny):
    model, tokenizer = tiny
    items = [mmlu_item("misc", *row[:1], row[1:5], "ABCD".index(row[5])) for row in ROWS[2:5]]
    items += [jcommonsenseqa_item("ケトルのリセットは？", ["温度ボタン", "電源", "10秒", "保証", "なし"], 0)]
    pairs = [(item.context, continuation) for item in items for continuation in item.continuations]
    batched = continuation_log_likelihoods(model, tokenizer, pairs, batch_size=5)
    single = [continuation_log_likelihoods(model, tokenizer, [pair], batch_size=1)[0] for pair in pairs]
    assert batched == pytest.approx(single, abs=1e-4)
    offsets = [sum(len(item.continuations) for item in items[:i]) for i in range(len(items))]
    assert score_multiple_choice(model, tokenizer, items, batch_size=2) == [
        max(range(len(item.continuations)), key=lambda c, i=index: (single[offsets[i] + c], -c))
        for index, item in enumerate(items)]


def reference_choice(model, tokenizer, subject: str, question: str, choices: list[str]) -> int:
    """An independent implementation of the harness's mmlu convention: one full forward per choice, no padding."""
    text = (f"The following are multiple choice questions (with answers) about {' '.join(subject.split('_'))}.\n\n"
            f"{question.strip()}\n" + "\n".join(f"{letter}. {choice}" for letter, choice in zip("ABCD", choices))
            + "\nAnswer:")
    scores = []
    for letter in "ABCD":
        context = tokenizer.encode(text, add_special_tokens=False)
        whole = tokenizer.encode(text + " " + letter, add_special_tokens=False)
        target = whole[len(context):]
        ids = torch.tensor([context + target])
        with torch.no_grad():
            log_probs = torch.log_softmax(model(ids).logits[0].double(), dim=-1)
        scores.append(sum(log_probs[len(context) - 1 + i, token].item() for i, token in enumerate(target)))
    return max(range(4), key=lambda i: (scores[i], -i))


def test_accuracy_equals_an_independent_reference(tiny, tmp_path):
    model, tokenizer = tiny
    folder = tmp_path / "mmlu"
    folder.mkdir()
    write_csv(folder / "college_physics_test.csv", ROWS[:3])
    write_csv(folder / "virology_test.csv", ROWS[3:])
    items = load_items("mmlu", folder)
    chosen = score_multiple_choice(model, tokenizer, items, batch_size=4)
    rows = [("college_physics", row) for row in ROWS[:3]] + [("virology", row) for row in ROWS[3:]]
    expected = [reference_choice(model, tokenizer, subject, row[0], row[1:5]) for subject, row in rows]
    assert chosen == expected
    summary = capability.accuracy_summary(items, chosen, resamples=200)
    truth = ["ABCD".index(row[5]) for _, row in rows]
    assert summary["accuracy"] == pytest.approx(sum(c == t for c, t in zip(expected, truth)) / len(rows))
    assert summary["per_subject"]["virology"]["n"] == 3 and summary["ci_low"] <= summary["accuracy"] <= summary["ci_high"]


def test_loading_bom_jglue_and_bad_rows(tmp_path):
    items = load_items("jmmlu", write_csv(tmp_path / "anatomy.csv", ROWS[3:4], bom=True))
    assert items[0].subject == "anatomy" and items[0].context.endswith("保証期間は？\nA. 1年\nB. 2年\nC. 3年\nD. なし\nAnswer:")
    jglue = tmp_path / "valid.json"
    jglue.write_text(json.dumps({"q_id": 1, "question": "q", **{f"choice{i}": str(i) for i in range(5)}, "label": 3},
                                ensure_ascii=False) + "\n", encoding="utf-8")
    assert load_items("jcommonsenseqa", jglue)[0].answer == 3
    bad = write_csv(tmp_path / "bad_test.csv", [ROWS[0], ["q", "a", "b", "c", "d", "E"]])
    with pytest.raises(AlignpipeError, match="bad_test.csv:2"):
        load_items("mmlu", bad)


def test_shipped_subsets_are_balanced():
    for task, expected in (("mmlu", 510), ("jmmlu", 510), ("jcommonsenseqa", 520)):
        items = shipped_items(task)
        assert len(items) == expected
        assert all(0 <= item.answer < len(item.continuations) for item in items)
    first = shipped_items("mmlu", 51)
    assert len({item.subject for item in first}) >= 45  # spread over the subjects...
    assert max(Counter(item.answer for item in first).values()) <= 13  # ...and the right answers over A-D
    # The file's own first 12 have no A: a model that always says A would score 0 there, 0.25 on the gate's 12.
    assert sorted(Counter(item.answer for item in shipped_items("mmlu", 12)).values()) == [3, 3, 3, 3]
    folder = Path(capability.__file__).parents[1] / "resources" / "gate"
    for name in ("mmlu_LICENSE", "jmmlu_LICENSE", "jcommonsenseqa_LICENSE", "xstest_LICENSE"):
        assert (folder / name).is_file()


def test_score_capability_command(tiny_model_dir, tmp_path, capsys):
    csv_file = write_csv(tmp_path / "astronomy_test.csv", ROWS)
    out = tmp_path / "result.json"
    code = main(["score", "capability", "--model", str(tiny_model_dir), "--task", "mmlu", "--input", str(csv_file),
                 "--output", str(out), "--batch-size", "4"])
    assert code == 0
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["n"] == 6 and set(result["per_subject"]) == {"astronomy"}
    assert result["accuracy"] == pytest.approx(sum(c == a for c, a in zip(result["chosen"], result["answers"])) / 6)
    bad = write_csv(tmp_path / "bad_test.csv", [["only", "three", "fields"]])
    assert main(["score", "capability", "--model", str(tiny_model_dir), "--task", "mmlu", "--input", str(bad),
                 "--output", str(out)]) == 2
    assert "bad_test.csv:1" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny_gemma(tiny_model_dir):
    """A 2-layer random Gemma 3 (the second embedded base's architecture) with the tiny tokenizer."""
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = Gemma3TextConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=1, head_dim=16, max_position_embeddings=512,
                              bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                              pad_token_id=tokenizer.pad_token_id)
    return Gemma3ForCausalLM(config).eval(), tokenizer


def test_gemma_is_scored_with_bos_in_front_as_the_harness_does(tiny, tiny_gemma):
    from alignpipe.gate.collect import token_losses

    model, tokenizer = tiny_gemma
    pair = ("Reset the kettle by holding", " Temp and Power")
    with_bos = full_forward_log_likelihood(model, tokenizer, tokenizer.bos_token + pair[0], pair[1])
    without = full_forward_log_likelihood(model, tokenizer, *pair)
    assert abs(with_bos - without) > 1e-3  # the test can tell the two apart
    assert continuation_log_likelihoods(model, tokenizer, [pair]) == pytest.approx([with_bos], abs=1e-4)
    ids = tokenizer.encode(tokenizer.bos_token + "hello world", add_special_tokens=False)
    with torch.no_grad():
        expected = torch.nn.functional.cross_entropy(model(torch.tensor([ids])).logits[0, :-1], torch.tensor(ids[1:]))
    assert token_losses(model, tokenizer, ["hello world"]) == pytest.approx([float(expected)], abs=1e-4)
    llama, _ = tiny  # any other model: no special tokens added, as before
    assert continuation_log_likelihoods(llama, tokenizer, [pair]) == pytest.approx(
        [full_forward_log_likelihood(llama, tokenizer, *pair)], abs=1e-4)
