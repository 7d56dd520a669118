"""Reward model on the tiny local model: it learns a separable set, reloads identically, scores files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from alignpipe import cli
from alignpipe.reward import load_reward_model
from conftest import separable_pairs, write_jsonl

@pytest.fixture
def rm_recipe(tmp_path, tiny_recipe) -> Path:
    train = write_jsonl(tmp_path / "pairs_train.jsonl", separable_pairs(48))
    held_out = write_jsonl(tmp_path / "pairs_eval.jsonl", separable_pairs(12, held_out=True))
    text = tiny_recipe.read_text() + f"""
rm:
  data: {{train: {train}, eval: {held_out}}}
  train: {{max_steps: 30, learning_rate: 1.0e-2}}
"""
    tiny_recipe.write_text(text)
    return tiny_recipe


def rm_dir(recipe: Path, name: str = "tiny") -> Path:
    return recipe.parent / "runs" / name / "rm"


def test_rm_learns_and_reloads_with_identical_scores(rm_recipe, tmp_path, capsys):
    assert cli.main(["sft", str(rm_recipe), "train.max_steps=2"]) == 0
    assert cli.main(["rm", str(rm_recipe)]) == 2  # the tiny recipe's sft skipped its gate: not a parent by default
    assert cli.main(["rm", str(rm_recipe), "--force"]) == 0
    manifest = json.loads((rm_dir(rm_recipe) / "manifest.json").read_text())
    assert manifest["forced"] is True and manifest["forced_over"][0]["status"] == "trained"
    metrics = manifest["metrics"]
    assert manifest["parent"] == str(rm_recipe.parent / "runs" / "tiny" / "sft")
    assert metrics["eval_accuracy"] >= 0.9 > metrics["eval_accuracy_base"] + 0.2
    assert metrics["eval_margin_mean"] > 0 and metrics["reward_std"] > 0

    reward_model = load_reward_model(rm_dir(rm_recipe))
    pairs = separable_pairs(12, held_out=True)
    chosen = reward_model.score([p["prompt"] + p["chosen"] for p in pairs])
    rejected = reward_model.score([p["prompt"] + p["rejected"] for p in pairs])
    accuracy = sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)
    assert accuracy == pytest.approx(metrics["eval_accuracy"])  # the reloaded model is the trained one
    assert reward_model.reward_mean == pytest.approx(metrics["reward_mean"])

    # `alignpipe score reward` on pairs and on conversations, deterministic across two calls
    inputs = write_jsonl(tmp_path / "to_score.jsonl", pairs[:2] + [
        {"messages": pairs[0]["prompt"] + pairs[0]["chosen"], "id": "keep-me"},
        {"prompt": "What is the warranty?", "completion": "Go away."},
    ])
    for out in ("scored1.jsonl", "scored2.jsonl"):
        assert cli.main(["score", "reward", str(rm_dir(rm_recipe)), "--input", str(inputs), "--output", str(tmp_path / out)]) == 0
    first = [json.loads(line) for line in (tmp_path / "scored1.jsonl").read_text().splitlines()]
    second = [json.loads(line) for line in (tmp_path / "scored2.jsonl").read_text().splitlines()]
    assert first == second
    assert first[0]["reward_chosen"] == pytest.approx(chosen[0], abs=1e-4)
    assert first[2]["id"] == "keep-me" and first[2]["reward"] == pytest.approx(chosen[0], abs=1e-4)
    assert "reward" in first[3]

    assert cli.main(["generate", str(rm_dir(rm_recipe)), "hello"]) == 2  # a reward model does not generate
    assert "it does not generate" in capsys.readouterr().err


def test_rm_from_the_base_model_with_margin_and_string_pairs(rm_recipe, tmp_path):
    rows = [{"prompt": p["prompt"][0]["content"], "chosen": p["chosen"][0]["content"],
             "rejected": p["rejected"][0]["content"], "margin": 1.0} for p in separable_pairs(16)]
    train = write_jsonl(tmp_path / "strings.jsonl", rows)
    assert cli.main(["rm", str(rm_recipe), "rm.parent=none", f"data.train={train}", "data.eval=null",
                     "train.max_steps=3", "rm.center_rewards_coefficient=0.01"]) == 0
    manifest = json.loads((rm_dir(rm_recipe) / "manifest.json").read_text())
    assert manifest["parent"] is None and "train_accuracy" in manifest["metrics"]


def test_implicit_prompt_pairs_are_split_at_the_shared_prefix():
    from alignpipe.data import normalize_preference

    user = {"role": "user", "content": "hi"}
    pair = normalize_preference({"chosen": [user, {"role": "assistant", "content": "hello"}],
                                 "rejected": [user, {"role": "assistant", "content": "go away"}]})
    assert pair["prompt"] == [user] and pair["chosen"] == [{"role": "assistant", "content": "hello"}]


def fails_cleanly(capsys, *argv) -> str:
    assert cli.main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


def test_rm_bad_inputs(rm_recipe, tmp_path, capsys):
    same = separable_pairs(4)
    same[1]["rejected"] = same[1]["chosen"]
    path = write_jsonl(tmp_path / "same.jsonl", same)
    err = fails_cleanly(capsys, "rm", rm_recipe, "rm.parent=none", f"data.train={path}", "train.max_steps=1")
    assert f"{path}:2: 'chosen' equals 'rejected'" in err and "data.skip_invalid=true" in err
    assert cli.main(["rm", str(rm_recipe), "rm.parent=none", f"data.train={path}", "train.max_steps=1",
                     "data.skip_invalid=true"]) == 0
    assert "skipped: {'identical_pair': 1}" in capsys.readouterr().out

    missing = write_jsonl(tmp_path / "missing.jsonl", [{"prompt": "q", "chosen": "a"}])
    err = fails_cleanly(capsys, "rm", rm_recipe, "rm.parent=none", f"data.train={missing}", "run.name=b")
    assert f"{missing}:1: cannot tell the layout" in err and "preference lacks 'rejected'" in err

    unfinished = tmp_path / "runs" / "tiny2" / "sft"
    unfinished.mkdir(parents=True)
    (unfinished / "manifest.json").write_text(json.dumps({"stage": "sft", "status": "running"}))
    assert "not a finished" in fails_cleanly(capsys, "rm", rm_recipe, f"rm.parent={unfinished}", "run.name=c")

    rlhf = tmp_path / "runs" / "tiny3" / "rlhf"
    rlhf.mkdir(parents=True)
    (rlhf / "manifest.json").write_text(json.dumps({"stage": "rlhf", "status": "trained"}))
    assert "cannot start from" in fails_cleanly(capsys, "rm", rm_recipe, f"rm.parent={rlhf}", "run.name=d")

    # Pairs longer than train.max_length are counted out loud; when none is left the stage stops with a message.
    long_pairs = separable_pairs(4)
    for pair in long_pairs[:2]:
        pair["chosen"][0]["content"] = "The warranty is two years. " * 20
    path = write_jsonl(tmp_path / "long.jsonl", long_pairs)
    assert cli.main(["rm", str(rm_recipe), "rm.parent=none", f"data.train={path}", "data.eval=null",
                     "train.max_steps=1", "run.name=e"]) == 0
    assert "2 of 4 training pairs are longer than train.max_length=64 tokens" in capsys.readouterr().out
    err = fails_cleanly(capsys, "rm", rm_recipe, "rm.parent=none", f"data.train={path}", "data.eval=null",
                        "train.max_length=8", "run.name=f")
    assert "4 of 4 training pairs are longer than train.max_length=8" in err and "raise train.max_length" in err


def test_rm_in_fp32_on_a_4bit_base(rm_recipe):
    """TRL casts a 4-bit model's trainable weights to bf16; in an fp32 run the score head then met fp32 inputs and
    the first score failed ("float != BFloat16"). With the parent's adapter, as the demo's rm runs; then DPO and
    GRPO (rewarded by that rm) in fp32 on the 4-bit base, the whole chain `precision: auto` gives an AVX2 CPU."""
    quantized = ["model.quantization=4bit", "train.precision=fp32"]
    assert cli.main(["sft", str(rm_recipe), "train.max_steps=1", *quantized]) == 0
    assert cli.main(["rm", str(rm_recipe), "--force", "train.max_steps=2", *quantized]) == 0
    metrics = json.loads((rm_dir(rm_recipe) / "manifest.json").read_text())["metrics"]
    assert metrics["global_step"] == 2 and 0 <= metrics["eval_accuracy_base"] <= 1 and metrics["reward_std"] > 0
    # precision auto is fp32 on an AVX2-only CPU: the rlhf stages run there too, offline and rewarded by this rm.
    prompts = write_jsonl(rm_recipe.parent / "prompts.jsonl", [{"prompt": p["prompt"]} for p in separable_pairs(8)])
    for algorithm, data in (("dpo", rm_recipe.parent / "pairs_train.jsonl"), ("grpo", prompts)):
        assert cli.main(["rlhf", str(rm_recipe), "--force", f"run.name=fp32-{algorithm}", *quantized,
                         f"rlhf.parent={rm_dir(rm_recipe).parent / 'sft'}", f"rlhf.reward_model={rm_dir(rm_recipe)}",
                         f"rlhf.algorithm={algorithm}", f"data.train={data}", "data.eval=null", "train.max_steps=1",
                         "rlhf.num_generations=2", "rlhf.max_completion_length=4", "train.batch_size=2"]) == 0
