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
import csv
import inspect
import json
import time
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from alignpipe.errors import AlignpipeError
from alignpipe.gate.decision import mean, paired_bootstrap_interval

TASKS = ("mmlu", "jmmlu", "jcommonsenseqa")
LETTERS = "ABCD"
SHIPPED = {"mmlu": "mmlu_subset.jsonl", "jmmlu": "jmmlu_subset.jsonl", "jcommonsenseqa": "jcommonsenseqa_subset.jsonl"}
JCQA_INSTRUCTION = "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。\n\n"
JMMLU_SUBJECTS = {  # JMMLU's README, タスク名 by English task name
    "abstract_algebra": "抽象代数", "anatomy": "解剖学", "astronomy": "天文学", "business_ethics": "ビジネス倫理",
    "clinical_knowledge": "臨床知識", "college_biology": "大学生物学", "college_chemistry": "大学化学",
    "college_computer_science": "大学コンピュータ科学", "college_mathematics": "大学数学",
    "college_medicine": "大学医学", "college_physics": "大学物理", "computer_security": "コンピュータセキュリティ",
    "conceptual_physics": "概念物理学", "econometrics": "計量経済学", "electrical_engineering": "電気工学",
    "elementary_mathematics": "初等数学", "formal_logic": "形式論理", "global_facts": "世界事実",
    "high_school_biology": "高校生物学", "high_school_chemistry": "高校化学",
    "high_school_computer_science": "高校情報科学", "high_school_european_history": "高校ヨーロッパ史",
    "high_school_geography": "高校地理", "high_school_macroeconomics": "高校マクロ経済学",
    "high_school_mathematics": "高校数学", "high_school_microeconomics": "高校ミクロ経済学",
    "high_school_physics": "高校物理", "high_school_psychology": "高校心理学",
    "high_school_statistics": "高校統計学", "human_aging": "人間の老化", "human_sexuality": "セクシュアリティ",
    "international_law": "国際法", "jurisprudence": "法理学", "logical_fallacies": "論理学",
    "machine_learning": "機械学習", "management": "経営学", "marketing": "マーケティング",
    "medical_genetics": "医学遺伝学", "miscellaneous": "雑学", "moral_disputes": "倫理的議論",
    "nutrition": "栄養学", "philosophy": "哲学", "prehistory": "先史学", "professional_accounting": "専門会計",
    "professional_medicine": "専門医学", "professional_psychology": "専門心理学", "public_relations": "公共関係",
    "security_studies": "セキュリティ研究", "sociology": "社会学", "virology": "ウイルス学",
    "world_religions": "世界宗教", "world_history": "世界史", "japanese_civics": "公民",
    "japanese_history": "日本史", "japanese_geography": "日本地理", "japanese_idiom": "熟語",
}


@dataclass(frozen=True)
class MultipleChoiceItem:
    """One question: the model picks the continuation it finds most likely after `context`."""

    context: str
    continuations: tuple[str, ...]
    answer: int
    subject: str


# Prompts ----------------------------------------------------------------------------------------------------------

def lettered_question(question: str, choices: list[str]) -> str:
    return question.strip() + "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, choices)) + "\nAnswer:"


def mmlu_item(subject: str, question: str, choices: list[str], answer: int) -> MultipleChoiceItem:
    header = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    return MultipleChoiceItem(header + lettered_question(question, choices), tuple(f" {x}" for x in LETTERS), answer,
                              subject)


def jmmlu_item(subject: str, question: str, choices: list[str], answer: int) -> MultipleChoiceItem:
    name = JMMLU_SUBJECTS.get(subject, subject.replace("_", " "))
    header = f"以下は{name}に関する多肢選択問題（解答付き）です。\n\n"
    return MultipleChoiceItem(header + lettered_question(question, choices), tuple(f" {x}" for x in LETTERS), answer,
                              subject)


def jcommonsenseqa_item(question: str, choices: list[str], answer: int) -> MultipleChoiceItem:
    listed = "".join(f"- {choice}\n" for choice in choices)
    context = f"{JCQA_INSTRUCTION}### 指示：\n出力は以下から選択してください：\n{listed}\n### 入力：\n{question}\n\n### 応答："
    return MultipleChoiceItem(context, tuple(f"\n{choice}" for choice in choices), answer, "jcommonsenseqa")


# Data -------------------------------------------------------------------------------------------------------------

def load_items(task: str, path: Path) -> list[MultipleChoiceItem]:
    """mmlu/jmmlu: a folder of `<subject>_test.csv` (or `<subject>.csv`), one such CSV, or the shipped JSONL layout;
    jcommonsenseqa: JGLUE's JSON lines (`question`, `choice0`..`choice4`, `label`). Bad rows name file and line."""
    if task not in TASKS:
        raise AlignpipeError(f"Unknown capability task {task!r}; choose one of {', '.join(TASKS)}")
    if not path.exists():
        raise AlignpipeError(f"Capability input not found: {path}")
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise AlignpipeError(f"{path}: no .csv files (expected <subject>_test.csv, question,A,B,C,D,answer)")
    items = [item for file in files for item in _load_file(task, file)]
    if not items:
        raise AlignpipeError(f"{path}: no questions")
    return items


def shipped_items(task: str, limit: int | None = None) -> list[MultipleChoiceItem]:
    """The gate's subset of a task (alignpipe/resources/gate/; the first N lines are balanced across subjects),
    its first `limit` questions with the right answers spread evenly over the answer positions."""
    file = resources.files("alignpipe").joinpath("resources", "gate", SHIPPED[task])
    with resources.as_file(file) as path:
        return balanced_answers(load_items(task, Path(path)), limit)


def balanced_answers(items: list[MultipleChoiceItem], limit: int | None) -> list[MultipleChoiceItem]:
    """`limit` items, taken one at a time: the first in file order whose answer position has not had its share yet
    (limit / choices, rounded up) and whose subject has been taken least. Without this a model that always picks one
    letter scores by the luck of the prefix: the first 12 shipped MMLU questions have no A, and the embedded base,
    which favours A, scored 0 of 12. Where a position runs out of questions, the others fill in."""
    if limit is None or limit >= len(items):
        return items
    share = -(-limit // max(len(item.continuations) for item in items))
    per_position: Counter[int] = Counter()
    per_subject: Counter[str] = Counter()
    remaining = list(items)
    chosen: list[MultipleChoiceItem] = []
    while len(chosen) < limit:
        pick = min(range(len(remaining)), key=lambda i: (per_position[remaining[i].answer] >= share,
                                                          per_subject[remaining[i].subject], i))
        item = remaining.pop(pick)
        chosen.append(item)
        per_position[item.answer] += 1
        per_subject[item.subject] += 1
    return chosen


def _load_file(task: str, file: Path) -> list[MultipleChoiceItem]:
    if task == "jcommonsenseqa" or file.suffix.lower() in (".jsonl", ".json"):
        return [_json_item(task, file, number, line) for number, line in
                enumerate(file.read_text(encoding="utf-8-sig").splitlines(), start=1) if line.strip()]
    subject = file.stem.removesuffix("_test")
    make = mmlu_item if task == "mmlu" else jmmlu_item
    items = []
    with file.open(encoding="utf-8-sig", newline="") as handle:  # JMMLU files may start with a BOM
        reader = csv.reader(handle)
        for row in reader:
            if len(row) != 6 or row[5].strip() not in LETTERS:
                raise AlignpipeError(f"{file}:{reader.line_num}: expected question,A,B,C,D,answer with answer one of "
                                     f"A/B/C/D, got {len(row)} field(s)" + (f" ending {row[-1][:20]!r}" if row else ""))
            items.append(make(subject, row[0], row[1:5], LETTERS.index(row[5].strip())))
    return items


def _json_item(task: str, file: Path, number: int, line: str) -> MultipleChoiceItem:
    try:
        row = json.loads(line)
        if task == "jcommonsenseqa":
            return jcommonsenseqa_item(row["question"], [row[f"choice{i}"] for i in range(5)], int(row["label"]))
        make = mmlu_item if task == "mmlu" else jmmlu_item
        return make(row["subject"], row["question"], [row[x] for x in LETTERS], LETTERS.index(row["answer"]))
    except (ValueError, KeyError, TypeError) as error:
        fields = ("question, choice0..choice4, label" if task == "jcommonsenseqa"
                  else "subject, question, A, B, C, D, answer")
        raise AlignpipeError(f"{file}:{number}: expected a JSON object with {fields} ({error})") from None


# Log-likelihoods --------------------------------------------------------------------------------------------------

def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens) as lm-evaluation-harness's HFLM._encode_pair makes them."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, continuation = context[:-spaces], context[-spaces:] + continuation
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    context_ids = tokenizer(context, add_special_tokens=False)["input_ids"]
    return context_ids, whole[len(context_ids):]


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
    limit = max_input_length(model)
    requests = []  # (context ids, continuation ids), cut from the left to the model's length as the harness does
    for context, continuation in pairs:
        context_ids, continuation_ids = encode_pair(tokenizer, context, continuation)
        if not continuation_ids:
            raise AlignpipeError(f"Continuation {continuation!r} has no tokens of its own after its context")
        if not context_ids:  # as the harness: an empty context is conditioned on the end-of-text token
            context_ids = [tokenizer.eos_token_id]
        sequence = (context_ids + continuation_ids)[-(limit + 1):]
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
