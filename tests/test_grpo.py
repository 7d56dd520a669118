"""GRPO learns: the stage's own trainer (stages/rlhf.build_trainer) on the tiny model, rewarded by a rule that a
reward model could have learned, raises the reward in training and on held-out prompts it never saw."""

from __future__ import annotations

import torch
from datasets import Dataset

from alignpipe import models
from alignpipe.config import Recipe
from alignpipe.reward import RewardModel
from alignpipe.stages.rlhf import build_trainer, training_reward_trend
from conftest import separable_pairs

# The share of answer tokens from a keyword set: 40 of the tiny tokenizer's 400 tokens, so about 0.1 at the start.
KEYWORD_IDS = set(range(3, 43))


class KeywordRewardModel(RewardModel):
    """Stands in for an rm stage: scores a conversation by the keyword share of its answer's tokens."""

    def score(self, conversations, batch_size=8, progress=False):
        return [keyword_share(self.tokenizer(conversation[-1]["content"], add_special_tokens=False)["input_ids"])
                for conversation in conversations]


def keyword_share(ids: list[int]) -> float:
    return sum(token in KEYWORD_IDS for token in ids) / max(len(ids), 1)


def held_out_reward(model, tokenizer, prompts: list[list[dict]], samples: int = 8) -> float:
    """Mean keyword share of sampled answers (seeded) to prompts the policy did not train on."""
    torch.manual_seed(1)
    shares = []
    for prompt in prompts:
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        with torch.no_grad():
            out = model.generate(**ids, do_sample=True, max_new_tokens=4, num_return_sequences=samples,
                                 pad_token_id=tokenizer.pad_token_id)
        shares += [keyword_share(row[ids["input_ids"].shape[1]:].tolist()) for row in out]
    return sum(shares) / len(shares)


def test_grpo_raises_the_reward_in_training_and_on_held_out_prompts(tiny_model_dir, tmp_path, one_thread):
    recipe = Recipe.model_validate({
        "run": {"seed": 0},
        "model": {"base": str(tiny_model_dir), "quantization": "none"},
        # TRL's GRPO computes log-probabilities from lm_head.weight itself, so the adapter is on every other layer.
        "lora": {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear"},
        "train": {"max_steps": 12, "batch_size": 16, "max_length": 64, "learning_rate": 5e-3, "precision": "fp32",
                  "warmup_steps": 0, "lr_scheduler": "constant", "logging_steps": 1, "save_steps": 1000},
        "rlhf": {"algorithm": "grpo", "num_generations": 4, "max_completion_length": 4},
    })
    torch.manual_seed(0)
    model = models.load_causal_lm(str(tiny_model_dir), recipe.model, torch.float32)
    # A random model's final norm keeps its logits nearly uniform (entropy ln 400), and no adapter can sharpen them:
    # a 10x sharper LM head gives logits of a trained model's spread (entropy 4.8), which the policy can then move.
    with torch.no_grad():
        model.lm_head.weight.mul_(10.0)
    tokenizer = models.load_tokenizer(str(tiny_model_dir))
    reward_model = KeywordRewardModel(model=None, tokenizer=tokenizer, reward_mean=0.0, reward_std=1.0)
    train_prompts = Dataset.from_list([{"prompt": pair["prompt"]} for pair in separable_pairs(4)])
    held_out = [pair["prompt"] for pair in separable_pairs(4, held_out=True)]
    assert not {m["content"] for p in held_out for m in p} & {m["content"] for p in train_prompts["prompt"] for m in p}

    trainer = build_trainer(recipe, model, tokenizer, tmp_path, train_prompts, [], reward_model)
    before = held_out_reward(trainer.model, tokenizer, held_out)
    trainer.train()
    after = held_out_reward(trainer.model, tokenizer, held_out)

    trend = training_reward_trend(trainer.state.log_history)
    assert trend["train_reward_end"] > trend["train_reward_start"] + 0.1, trend  # measured: 0.09 -> 0.99
    assert after > before + 0.1, (before, after)  # measured: 0.13 -> 0.99 on the held-out prompts
