"""Evidence that an RLHF stage aligned: held-out prompts answered by the policy before and after training.

"Before" is the reference model: the frozen copy of the parent's adapter TRL keeps as "ref" (the parent
policy), or, for a stage that started from the bare base, the model with its adapter disabled. Both answer with greedy decoding (deterministic, what `alignpipe generate` does by default), the
reward model scores both answers, and the KL to the reference is measured along the new policy's answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from alignpipe.models import copy_adapter, stop_token_ids
from alignpipe.reward import Conversation, RewardModel

SAMPLES_FILE = "samples.jsonl"


def generate_answers(
    model: Any,
    tokenizer: Any,
    prompts: list[Conversation],
    max_new_tokens: int,
    batch_size: int = 32,
    samples: int = 1,
    seed: int = 0,
) -> list[tuple[list[int], list[int]]]:
    """(prompt token ids, answer token ids up to and including the first end-of-turn) for every prompt.

    samples=1 decodes greedily; samples=k draws k answers per prompt (temperature 1, seeded), prompt by prompt.
    """
    sampling = {"do_sample": False} if samples == 1 else {"do_sample": True, "temperature": 1.0, "top_k": 0,
                                                          "num_return_sequences": samples}
    if samples > 1:
        torch.manual_seed(seed)
    stop_ids = set(stop_token_ids(model, tokenizer))
    answers = []
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # batched generation continues every row from its last real token
    try:
        for start in range(0, len(prompts), batch_size):
            texts = [
                tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
                for prompt in prompts[start : start + batch_size]
            ]
            encoded = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                output = model.generate(
                    **encoded, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
                )
            width = encoded["input_ids"].shape[1]
            for row in range(len(texts) * samples):
                source = row // samples  # generate() repeats each prompt `samples` times, in order
                prompt_ids = encoded["input_ids"][source][encoded["attention_mask"][source].bool()].tolist()
                answer_ids = output[row, width:].tolist()
                stops = [index for index, token in enumerate(answer_ids) if token in stop_ids]
                answers.append((prompt_ids, answer_ids[: stops[0] + 1] if stops else answer_ids))
    finally:
        tokenizer.padding_side = padding_side
    return answers


def answer_text(tokenizer: Any, answer_ids: list[int]) -> str:
    # A cut-off answer may end inside a multi-byte character; drop the half character.
    return tokenizer.decode(answer_ids, skip_special_tokens=True).strip().rstrip("\ufffd")


def keep_reference_adapter(model: Any) -> None:
    """Give a reference-free trainer's model (ORPO, SimPO) the frozen "ref" copy of its starting adapter that DPO,
    KTO, GRPO and RLOO keep, so that "before" is the parent policy for every algorithm. Call before training."""
    if "ref" not in model.peft_config:
        copy_adapter(model, "default", "ref", trainable=False)


def reference_policy(model: Any) -> Any:
    """Context in which `model` is the reference policy (TRL's own switch, so both agree on what it is)."""
    from trl.trainer.utils import use_adapter

    return use_adapter(model, adapter_name="ref" if "ref" in model.peft_config else None)


def kl_to_reference(model: Any, prompt_ids: list[int], answer_ids: list[int]) -> float:
    """KL(policy || reference) summed over the answer's tokens, exact over the vocabulary at each position."""
    if not answer_ids:
        return 0.0
    input_ids = torch.tensor([prompt_ids + answer_ids], device=model.device)
    positions = slice(len(prompt_ids) - 1, input_ids.shape[1] - 1)  # the logits that predict the answer tokens
    with torch.no_grad():
        policy = torch.log_softmax(model(input_ids=input_ids).logits[0, positions].float(), dim=-1)
        with reference_policy(model):
            reference = torch.log_softmax(model(input_ids=input_ids).logits[0, positions].float(), dim=-1)
    return (policy.exp() * (policy - reference)).sum().item()


def compare_before_after(
    model: Any,
    tokenizer: Any,
    prompts: list[Conversation],
    reward_model: RewardModel | None,
    max_new_tokens: int,
) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics (eval_reward_before/after, win rate, KL) and one sample per prompt."""
    was_training = model.training
    model.eval()
    with reference_policy(model):
        before = generate_answers(model, tokenizer, prompts, max_new_tokens)
    after = generate_answers(model, tokenizer, prompts, max_new_tokens)
    kls = [kl_to_reference(model, prompt_ids, answer_ids) for prompt_ids, answer_ids in after]
    model.train(was_training)

    samples = [
        {"prompt": prompt, "before": answer_text(tokenizer, old[1]), "after": answer_text(tokenizer, new[1]),
         "kl_to_reference": kl}
        for prompt, old, new, kl in zip(prompts, before, after, kls)
    ]
    metrics = {
        "eval_prompts": float(len(prompts)),
        "eval_kl_to_reference": sum(kls) / len(kls),
        "eval_answers_changed": sum(s["before"] != s["after"] for s in samples) / len(samples),
    }
    if reward_model is not None:
        conversations = [[*s["prompt"], {"role": "assistant", "content": s[when]}] for s in samples for when in ("before", "after")]
        scores = reward_model.score(conversations)
        for sample, reward_before, reward_after in zip(samples, scores[0::2], scores[1::2]):
            sample["reward_before"], sample["reward_after"] = reward_before, reward_after
        wins = [1.0 if s["reward_after"] > s["reward_before"] else 0.5 if s["reward_after"] == s["reward_before"] else 0.0
                for s in samples]
        metrics["eval_reward_before"] = sum(scores[0::2]) / len(samples)
        metrics["eval_reward_after"] = sum(scores[1::2]) / len(samples)
        metrics["eval_win_rate"] = sum(wins) / len(wins)
    return metrics, samples


def write_samples(stage_dir: Path, samples: list[dict[str, Any]]) -> Path:
    from alignpipe.data import write_jsonl

    path = stage_dir / SAMPLES_FILE
    write_jsonl(path, samples)
    return path
