"""Capability accuracy: multiple-choice questions answered by log-likelihood, zero-shot, as lm-evaluation-harness does.

Each item is a context and a few continuations; the model's choice is the continuation with the highest summed
log-likelihood after the context (lm-evaluation-harness's `acc`, no length normalisation). Tokens follow the
harness exactly: trailing whitespace of the context moves to the continuation; the continuation's tokens are
those of context+continuation after the context's own tokens; no special tokens are added; a too-long input is
cut from the left.

Prompts (one per task; `task_prompt` builds them):
- `mmlu`: lm-evaluation-harness's `mmlu` task (lm_eval/tasks/mmlu/default: `_default_template_yaml` and the
  per-subject `description`): "The following are multiple choice questions (with answers) about {subject with
  spaces}.\\n\\n{question stripped}\\nA. {A}\\nB. {B}\\nC. {C}\\nD. {D}\\nAnswer:", continuations " A" .. " D".
- `jmmlu`: the same layout with a Japanese first line, "以下は{科目}に関する多肢選択問題（解答付き）です。\\n\\n",
  the subject in Japanese as JMMLU's README names it (`JMMLU_SUBJECTS`); "Answer:" and " A" .. " D" unchanged, so
  English and Japanese accuracy differ only by the language of the question.
- `jcommonsenseqa`: lm-evaluation-harness's `ja_leaderboard_jcommonsenseqa` task (lm_eval/tasks/japanese_leaderboard,
  the Japanese leaderboard's JCommonsenseQA prompt) zero-shot: its instruction line, the five choices as a "- "
  list, the question, "### 応答：", continuations "\\n" + choice text (its `target_delimiter` is "\\n").

    alignpipe score capability --model embedded --task mmlu --input data/mmlu --output mmlu.json
"""

from __future__ import annotations

import copy
import inspect
import json
import time
from pathlib import Path
from typing import Any

import torch

from alignpipe.errors import AlignpipeError
from alignpipe.gate.capability_items import (  # noqa: F401  (re-exported: the gate and bbq.py use them)
    SHIPPED,
    TASKS,
    MultipleChoiceItem,
    jcommonsenseqa_item,
    jmmlu_item,
    load_items,
    mmlu_item,
    shipped_items,
)
from alignpipe.gate.decision import mean, paired_bootstrap_interval

# Log-likelihoods --------------------------------------------------------------------------------------------------

def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens) as lm-evaluation-harness's HFLM._encode_pair makes them."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    return context_ids, whole[len(context_ids):]


def scores_with_bos(model: Any) -> bool:
    """lm-evaluation-harness's rule (HFLM): a Gemma model gets its BOS token in front of every context, since Gemma
    is trained with it and falls apart without (the embedded Gemma 3 270M: general-text perplexity about 800 without,
    README "Which embedded model"); every other model is scored with no special tokens added."""
    return "gemma" in getattr(model.config, "model_type", "")


def max_input_length(model: Any) -> int:
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        if isinstance(getattr(config, name, None), int):
            return getattr(config, name)
    return 2048


def continuation_log_likelihoods(
    model: Any, tokenizer: Any, pairs: list[tuple[str, str]], batch_size: int = 16
) -> list[float]:
    """Summed log P(continuation | context) for each (context, continuation), in right-padded batches.

    Each distinct context runs once (contexts sorted by length, so padding stays small): its last position scores
    the first token of every continuation (the four one-token answers of an MMLU question, as the harness's
    one-token-continuation cache does), and longer continuations (JCommonsenseQA's answers) run on from the
    context's key/value cache instead of repeating the context. Equal to one forward pass per pair (a test checks).
    """
    encoded = []
    for context, continuation in pairs:
        context_ids, continuation_ids = encode_pair(tokenizer, context, continuation)
        if not continuation_ids:
            raise AlignpipeError(f"Continuation {continuation!r} has no tokens of its own after its context")
        encoded.append((context_ids, continuation_ids))
    return token_log_likelihoods(model, tokenizer, encoded, batch_size)


def token_log_likelihoods(
    model: Any, tokenizer: Any, encoded: list[tuple[list[int], list[int]]], batch_size: int = 16
) -> list[float]:
    """continuation_log_likelihoods on token ids: summed log P(continuation ids | context ids) for each pair."""
    limit = max_input_length(model)
    bos = [tokenizer.bos_token_id] if scores_with_bos(model) and tokenizer.bos_token_id is not None else []
    requests = []  # (context ids, continuation ids), cut from the left to the model's length as the harness does
    for context_ids, continuation_ids in encoded:
        if bos and list(context_ids[:1]) != bos:  # a chat-template rendering may carry it already
            context_ids = bos + list(context_ids)
        if not context_ids:  # as the harness: an empty context is conditioned on the end-of-text token
            context_ids = [tokenizer.eos_token_id]
        sequence = (list(context_ids) + list(continuation_ids))[-(limit + 1):]
        cut = len(sequence) - len(continuation_ids)
        requests.append((tuple(sequence[:cut]), tuple(sequence[cut:])))
    by_context: dict[tuple[int, ...], list[int]] = {}
    for index, (context_ids, _) in enumerate(requests):
        by_context.setdefault(context_ids, []).append(index)
    contexts = sorted(by_context, key=lambda ids: (-len(ids), ids))
    totals = [0.0] * len(requests)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    for start in range(0, len(contexts), batch_size):
        batch = contexts[start : start + batch_size]
        lengths = torch.tensor([len(row) for row in batch], device=device)
        ids = torch.tensor([list(row) + [pad] * (len(batch[0]) - len(row)) for row in batch], device=device)
        mask = (torch.arange(len(batch[0]), device=device)[None, :] < lengths[:, None]).long()
        longer = [(row, index) for row, context in enumerate(batch) for index in by_context[context]
                  if len(requests[index][1]) > 1]
        keep = sorted({len(row) - 1 for row in batch})
        with torch.no_grad():
            output = model(input_ids=ids, attention_mask=mask, use_cache=bool(longer),
                           logits_to_keep=torch.tensor(keep, device=device))
        last = torch.log_softmax(output.logits.float(), dim=-1).double().cpu()
        for row, context in enumerate(batch):
            for index in by_context[context]:
                totals[index] = float(last[row, keep.index(len(context) - 1), requests[index][1][0]])
        for chunk in range(0, len(longer), batch_size):
            rows, indices = zip(*longer[chunk : chunk + batch_size])
            cache = output.cache if hasattr(output, "cache") else output.past_key_values
            for index, value in zip(indices, _continue_from_cache(model, cache, mask, lengths, list(rows),
                                                                  [requests[i][1] for i in indices], pad)):
                totals[index] += value
    return totals


def _cache_keyword(model: Any) -> str:
    """transformers 5.24 renamed the forward argument `past_key_values` to `cache`; earlier 5.x take the old name."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def _continue_from_cache(
    model: Any, cache: Any, mask: torch.Tensor, lengths: torch.Tensor, rows: list[int], targets: list[tuple[int, ...]],
    pad: int,
) -> list[float]:
    """log P(targets[1:] | context, targets[0]) for contexts `rows` of a cached batch: the continuation tokens only."""
    device = mask.device
    rows_tensor = torch.tensor(rows, device=device)
    cache = copy.deepcopy(cache)
    cache.reorder_cache(rows_tensor)  # one copy of the context's keys and values per continuation
    width = max(len(target) for target in targets) - 1
    ids = torch.tensor([list(t[:-1]) + [pad] * (width + 1 - len(t)) for t in targets], device=device)
    new_mask = (torch.arange(width, device=device)[None, :] < torch.tensor([len(t) - 1 for t in targets],
                                                                           device=device)[:, None]).long()
    positions = lengths[rows_tensor][:, None] + torch.arange(width, device=device)[None, :]
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.cat([mask[rows_tensor], new_mask], dim=1),
                       position_ids=positions, use_cache=True, **{_cache_keyword(model): cache}).logits
    log_probs = torch.log_softmax(logits.float(), dim=-1).double().cpu()
    return [float(sum(log_probs[row, step, token] for step, token in enumerate(target[1:])))
            for row, target in enumerate(targets)]


def score_multiple_choice(model: Any, tokenizer: Any, items: list[MultipleChoiceItem], batch_size: int = 16) -> list[int]:
    """The index of the continuation each item's model finds most likely (the first on a tie, like numpy.argmax)."""
    pairs = [(item.context, continuation) for item in items for continuation in item.continuations]
    scores = iter(continuation_log_likelihoods(model, tokenizer, pairs, batch_size))
    chosen = []
    for item in items:
        values = [next(scores) for _ in item.continuations]
        chosen.append(values.index(max(values)))
    return chosen


# Summary and command ----------------------------------------------------------------------------------------------

def accuracy_summary(
    items: list[MultipleChoiceItem], chosen: list[int], resamples: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """accuracy (micro, over items) with a 95% bootstrap interval over items, n, and accuracy per subject."""
    correct = [float(pick == item.answer) for item, pick in zip(items, chosen)]
    low, high = paired_bootstrap_interval(correct, resamples, seed)
    by_subject: dict[str, list[float]] = {}
    for item, value in zip(items, correct):
        by_subject.setdefault(item.subject, []).append(value)
    return {"accuracy": mean(correct), "ci_low": low, "ci_high": high, "n": len(items),
            "per_subject": {name: {"accuracy": mean(values), "n": len(values)}
                            for name, values in sorted(by_subject.items())}}


def load_scoring_model(model_reference: str, quantization: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) for a scorer: a stage directory loads as trained (base + adapter), anything else in full
    precision; quantization 4bit/8bit/none forces it."""
    from alignpipe import models
    from alignpipe.config import ModelConfig

    if (Path(model_reference) / "manifest.json").is_file():
        return models.load_stage_for_inference(Path(model_reference), quantization)
    if quantization in (None, "none"):
        return models.load_plain_causal_lm(model_reference)
    path = models.resolve_base(model_reference)
    tokenizer = models.load_tokenizer(path)
    model = models.load_causal_lm(path, ModelConfig(quantization=quantization), torch.float32, for_training=False)
    return model.eval(), tokenizer


def score_capability_file(
    model_reference: str, task: str, input_path: Path | None, output_path: Path, batch_size: int = 16,
    quantization: str | None = None, limit: int | None = None,
) -> dict[str, Any]:
    """`alignpipe score capability`: a stage directory (base + adapter) or a causal LM path / hub id / 'embedded'.

    quantization: None loads a stage as it was trained and any other model in full precision; 4bit/8bit/none force it.
    """
    items = (load_items(task, input_path) if input_path else shipped_items(task))[:limit]
    model, tokenizer = load_scoring_model(model_reference, quantization)
    started = time.perf_counter()
    chosen = score_multiple_choice(model, tokenizer, items, batch_size)
    seconds = time.perf_counter() - started
    result = {"task": task, "model": model_reference, "input": str(input_path or f"shipped {SHIPPED[task]}"),
              **accuracy_summary(items, chosen), "seconds": seconds, "seconds_per_item": seconds / len(items),
              "chosen": chosen, "answers": [item.answer for item in items]}
    output_path.parent.mkdir(parents=True, exist_ok=True)
    output_path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return result
