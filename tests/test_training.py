"""Speed options in the recipe reach transformers and TRL under their own names."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignpipe.config import ModelConfig, Recipe
from alignpipe.training import common_training_arguments


def test_liger_and_compile_reach_the_training_arguments(tmp_path):
    recipe = Recipe.model_validate({"train": {"use_liger_kernel": True, "torch_compile": True}})
    arguments = common_training_arguments(recipe, tmp_path, has_eval=False)
    assert arguments["use_liger_kernel"] is True and arguments["torch_compile"] is True
    assert common_training_arguments(Recipe(), tmp_path, has_eval=False)["use_liger_kernel"] is False


def test_sft_settings_reach_the_sft_config(tiny_recipe, monkeypatch):
    from alignpipe.recipe_loading import load_recipe
    from alignpipe.stages import sft

    class Captured(Exception):
        pass

    def capture(args, **_):
        raise Captured(args)

    monkeypatch.setattr(sft, "SFTTrainer", capture)
    recipe = load_recipe(tiny_recipe, "sft", ["sft.padding_free=true", "train.max_steps=7"])
    with pytest.raises(Captured) as caught:
        sft.run(recipe)
    args = caught.value.args[0]
    assert args.padding_free is True and args.max_steps == 7


def test_precompute_ref_log_probs_reaches_the_dpo_config(tmp_path, monkeypatch):
    import torch
    import trl

    from alignpipe.stages import rlhf
    from conftest import separable_pairs

    captured = {}
    monkeypatch.setattr(trl, "DPOTrainer", lambda model, args, **_: captured.setdefault("args", args))
    recipe = Recipe.model_validate({"rlhf": {"precompute_ref_log_probs": True}, "train": {"precision": "fp32"}})
    pairs = separable_pairs(4)
    rlhf.build_trainer(recipe, torch.nn.Linear(1, 1), None, tmp_path, pairs, [], None)
    assert captured["args"].precompute_ref_log_probs is True


@pytest.mark.parametrize("kernel", ["eager", "sdpa"])
def test_attention_implementation_is_passed_to_from_pretrained(tiny_model_dir: Path, kernel):
    from alignpipe.models import load_causal_lm

    model = load_causal_lm(str(tiny_model_dir), ModelConfig(quantization="none", attn_implementation=kernel))
    assert model.config._attn_implementation == kernel
