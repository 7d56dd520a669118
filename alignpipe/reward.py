"""Reward models: reload a trained rm stage in one call, and score conversations or preference pairs with it.

The rm stage, RLHF (as a reward function) and the gate all score through `score_conversations`, so a reward
means the same number everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from alignpipe import models, runs
from alignpipe.config import Recipe
from alignpipe.errors import AlignpipeError
from alignpipe.training import TORCH_DTYPES

Conversation = list[dict[str, str]]


@dataclass
class RewardModel:
    model: Any
    tokenizer: Any
    reward_mean: float  # over the eval responses at training time: subtract, divide by std to normalise
    reward_std: float

    def score(self, conversations: list[Conversation], batch_size: int = 8, progress: bool = False) -> list[float]:
        return score_conversations(self.model, self.tokenizer, conversations, batch_size, progress)

    @property
    def spread(self) -> float:
        """The reward's standard deviation at training time, kept off zero: the unit rewards are measured in."""
        return max(self.reward_std, 1e-6)

    def normalized(self, conversations: list[Conversation], batch_size: int = 8) -> list[float]:
        """Rewards centred on the training-time mean, in standard deviations: what RLHF maximises and the gate
        compares, so that a reward means the same number in both."""
        return [(score - self.reward_mean) / self.spread for score in self.score(conversations, batch_size)]

    def score_pairs(self, pairs: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
        """(chosen rewards, rejected rewards) of pairs of message lists (prompt, chosen, rejected)."""
        return score_pairs(self.model, self.tokenizer, pairs)


def load_reward_model(stage_dir: Path) -> RewardModel:
    """Base with a score head -> the reward adapter and trained head, as at the end of training."""
    from peft import PeftModel

    manifest = runs.read_manifest(stage_dir)
    if manifest.get("stage") != "rm":
        raise AlignpipeError(f"{stage_dir} is a {manifest.get('stage')} stage, not a reward model (rm) stage.")
    if manifest.get("status") not in runs.FINISHED_STATUSES:
        raise AlignpipeError(f"{stage_dir} is not finished (status {manifest.get('status')}).")
    recipe = Recipe.model_validate(manifest["recipe"])
    adapter_dir = Path(stage_dir) / "adapter"
    tokenizer = models.load_tokenizer(str(adapter_dir))
    # Same dtype as at training time, so that reloaded scores are the trained model's scores. The adapter holds
    # everything trained (it continued the parent's adapter), the score head included.
    base = models.load_sequence_classifier(
        models.resolve_base(recipe.model.base), recipe.model, tokenizer, None, dtype=TORCH_DTYPES[recipe.train.precision]
    )
    model = PeftModel.from_pretrained(base, str(adapter_dir))
    model.eval()
    metrics = manifest["metrics"]
    return RewardModel(model, tokenizer, metrics["reward_mean"], metrics["reward_std"])


def score_conversations(
    model: Any, tokenizer: Any, conversations: list[Conversation], batch_size: int = 8, progress: bool = False
) -> list[float]:
    """One scalar reward per whole conversation, tokenized exactly as TRL's RewardTrainer does."""
    from tqdm.auto import tqdm

    was_training = model.training
    model.eval()
    scores: list[float] = []
    batches = range(0, len(conversations), batch_size)
    for start in tqdm(batches, desc="scoring", disable=not progress, unit="batch"):
        token_lists = [
            tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
            for conversation in conversations[start : start + batch_size]
        ]
        # Right padding with the pad token: the model reads its score at the last non-pad token.
        batch = tokenizer.pad({"input_ids": token_lists}, padding=True, padding_side="right", return_tensors="pt")
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"].to(model.device),
                           attention_mask=batch["attention_mask"].to(model.device)).logits
        scores += logits[:, 0].float().cpu().tolist()
    model.train(was_training)
    return scores


def score_pairs(model: Any, tokenizer: Any, pairs: list[dict[str, Any]], batch_size: int = 8) -> tuple[list[float], list[float]]:
    chosen = score_conversations(model, tokenizer, [pair["prompt"] + pair["chosen"] for pair in pairs], batch_size)
    rejected = score_conversations(model, tokenizer, [pair["prompt"] + pair["rejected"] for pair in pairs], batch_size)
    return chosen, rejected


def pair_metrics(chosen: list[float], rejected: list[float]) -> dict[str, float]:
    """Pairwise accuracy, mean margin, and the reward distribution over all responses (for normalisation)."""
    both = torch.tensor(chosen + rejected)
    margins = torch.tensor(chosen) - torch.tensor(rejected)
    return {
        "accuracy": (margins > 0).float().mean().item(),
        "margin_mean": margins.mean().item(),
        "reward_mean": both.mean().item(),
        "reward_std": both.std().item() if len(both) > 1 else 0.0,
    }


def conversation_of(record: Any) -> Conversation | None:
    """The conversation in a scoring input line: {"messages"}, {"prompt", "completion"} (lists or strings)."""
    if not isinstance(record, dict):
        return None
    if isinstance(record.get("messages"), list):
        return record["messages"]
    prompt, completion = record.get("prompt"), record.get("completion")
    if isinstance(prompt, str) and isinstance(completion, str):
        return [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}]
    if isinstance(prompt, list) and isinstance(completion, list):
        return prompt + completion
    return None


def score_file(stage_dir: Path, input_path: Path, output_path: Path, batch_size: int) -> int:
    """`alignpipe score reward`: add `reward` (conversations) or `reward_chosen`/`reward_rejected` (pairs)."""
    from alignpipe.data import normalize_preference, preference_record_problem, write_jsonl
    from alignpipe.jsonl_reader import read_valid_json_lines

    if output_path.exists():
        raise AlignpipeError(f"Output file {output_path} exists; choose another --output (nothing is overwritten).")
    rows = read_valid_json_lines(input_path)
    if not rows:
        raise AlignpipeError(f"{input_path} holds no lines to score.")
    conversations, slots = [], []  # slots[i] = (row index, field name) for conversations[i]
    for index, (line_number, record) in enumerate(rows):
        if isinstance(record, dict) and ("chosen" in record or "rejected" in record):
            problem = preference_record_problem(record)
            if problem is not None:
                raise AlignpipeError(f"{input_path}:{line_number}: {problem}")
            pair = normalize_preference(record)
            conversations += [pair["prompt"] + pair["chosen"], pair["prompt"] + pair["rejected"]]
            slots += [(index, "reward_chosen"), (index, "reward_rejected")]
            continue
        conversation = conversation_of(record)
        if conversation is None:
            raise AlignpipeError(
                f"{input_path}:{line_number}: expected {{'messages': [...]}}, {{'prompt', 'completion'}} "
                "or a preference pair {'prompt', 'chosen', 'rejected'}"
            )
        conversations.append(conversation)
        slots.append((index, "reward"))
    reward_model = load_reward_model(stage_dir)
    scores = reward_model.score(conversations, batch_size=batch_size, progress=True)
    records = [record for _, record in rows]
    for (index, field), score in zip(slots, scores):
        records[index][field] = score
    write_jsonl(output_path, records)
    return len(records)
