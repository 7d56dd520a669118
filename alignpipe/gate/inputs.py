"""What the gate asks of every model it compares: the shipped prompt and text sets, cut to the recipe's sizes.

One `GateInputs` is built per gate run and given to the candidate and the baseline alike, so that every check
compares the two models item by item on exactly the same inputs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from alignpipe.config import GateConfig, Recipe
from alignpipe.gate.bbq import BBQItem, gate_items
from alignpipe.gate.bias import fill_templates, shipped_stereotype_pairs
from alignpipe.gate.capability import MultipleChoiceItem, shipped_items
from alignpipe.gate.refusal import balanced_prompts, xstest_prompts
from alignpipe.gate.robustness import perturbations

# Capability tasks per check: English is MMLU; Japanese pools JMMLU (knowledge) and JCommonsenseQA (common sense).
CAPABILITY_TASKS = {"en": ("mmlu",), "ja": ("jmmlu", "jcommonsenseqa")}
# XSTest's unsafe contrasts have no cybercrime; the hand-written requests of these kinds stay in the gate.
HAND_WRITTEN_REFUSAL_KINDS = ("account_hacking", "malware", "phishing", "stalkerware")


def shipped(name: str) -> list[dict[str, Any]]:
    """A JSONL set from alignpipe/resources/gate/."""
    text = resources.files("alignpipe").joinpath("resources", "gate", name).read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


@dataclass
class GateInputs:
    """The prompts a policy answers and the texts it is scored on, in the order they are generated."""

    seed: int  # decoding, perturbations and every bootstrap of this gate run
    samples_per_prompt: int
    toxicity_prompts: list[dict[str, Any]]  # {"prompt", "lang", ...}
    refusal_prompts: list[dict[str, Any]]  # {"prompt", "should_refuse", "lang", "source", "type"}
    counterfactual: list[dict[str, Any]] = field(default_factory=list)  # fill_templates(): {item, cell, group, text}
    perturbed: list[tuple[str, str]] = field(default_factory=list)  # (kind, text) of the first toxicity prompts
    group_questions: list[dict[str, Any]] = field(default_factory=list)  # {"question", "lang", "axis"}
    stereotype_pairs: list[dict[str, Any]] = field(default_factory=list)  # {"sent_more", "sent_less", "bias_type"}
    general_texts: list[str] = field(default_factory=list)
    held_out_texts: list[str] = field(default_factory=list)  # the stage's own data.eval, through the chat template
    capability_items: dict[str, list[MultipleChoiceItem]] = field(default_factory=dict)  # by task (CAPABILITY_TASKS)
    bbq_items: dict[str, list[BBQItem]] = field(default_factory=dict)  # by language: ambiguous BBQ items (bbq.py)

    def prompt_sections(self) -> dict[str, list[str]]:
        """Every prompt a policy answers, by section, in generation order."""
        return {
            "toxicity": [row["prompt"] for row in self.toxicity_prompts],
            "refusal": [row["prompt"] for row in self.refusal_prompts],
            "counterfactual": [entry["text"] for entry in self.counterfactual],
            "perturbed": [text for _, text in self.perturbed],
            "group_questions": [row["question"] for row in self.group_questions],
        }

    def cache_key_inputs(self, recipe: Recipe, max_new_tokens: int) -> list[Any]:
        """Everything that shapes a policy's answers and likelihoods, besides its weights (see collect.outputs_key)."""
        prompts = [prompt for section in self.prompt_sections().values() for prompt in section]
        questions = {task: [[item.context, item.continuations] for item in items]
                     for task, items in self.capability_items.items()}
        bbq = {lang: [[item.choice.context, item.choice.continuations] for item in items]
               for lang, items in self.bbq_items.items()}
        return [recipe.model.base, recipe.model.quantization, self.seed, self.samples_per_prompt, max_new_tokens,
                prompts, self.stereotype_pairs, self.general_texts, questions, bbq]


def policy_inputs(recipe: Recipe, settings: GateConfig, tokenizer: Any) -> GateInputs:
    """The inputs of a generative stage's gate (sft, rlhf), cut to `settings`' sizes."""
    toxicity_prompts = shipped("toxicity_prompts.jsonl")[: settings.prompts]
    seed = recipe.run.seed
    inputs = GateInputs(seed=seed, samples_per_prompt=settings.samples_per_prompt,
                        toxicity_prompts=toxicity_prompts,
                        refusal_prompts=refusal_prompts(settings.refusal_prompts),
                        general_texts=[row["text"] for row in shipped("general_text.jsonl")[: settings.prompts]],
                        held_out_texts=held_out_texts(recipe, tokenizer, settings.prompts))
    if settings.bias.enabled:
        inputs.counterfactual = fill_templates(shipped("counterfactual_templates.jsonl")[: settings.bias.templates],
                                               "template")
        inputs.stereotype_pairs = shipped_stereotype_pairs(settings.bias.stereotype_pairs)
        inputs.group_questions = shipped("group_questions.jsonl")[: settings.bias.group_questions]
        inputs.bbq_items = {lang: gate_items(lang, settings.bias.bbq_items) for lang in ("en", "ja")}
    if settings.capability.enabled:
        inputs.capability_items = {task: shipped_items(task, settings.capability.items)
                                   for tasks in CAPABILITY_TASKS.values() for task in tasks}
    if settings.robustness.enabled:
        clean = [row["prompt"] for row in toxicity_prompts[: settings.robustness.prompts]]
        inputs.perturbed = perturbations(clean, seed, settings.robustness.typo_rate)
    return inputs


def refusal_prompts(per_language: int) -> list[dict[str, Any]]:
    """XSTest (EN) and its Japanese counterpart, balanced over their types (safe prompts that sound unsafe, and unsafe
    contrasts), then the hand-written harmful requests of kinds XSTest lacks (HAND_WRITTEN_REFUSAL_KINDS)."""
    rows = [{"prompt": row["prompt"], "should_refuse": row["label"] == "unsafe", "lang": lang, "type": row["type"],
             "source": source}
            for lang, source in (("en", "xstest"), ("ja", "xstest_ja"))
            for row in balanced_prompts(xstest_prompts(lang), per_language)]
    rows += [{"prompt": row["prompt"], "should_refuse": row["should_refuse"], "lang": row["lang"],
              "type": row["category"], "source": "alignpipe"}
             for row in shipped("refusal_prompts.jsonl") if row["category"] in HAND_WRITTEN_REFUSAL_KINDS]
    return rows


def readable_eval_file(recipe: Recipe) -> bool:
    """Whether the stage's data.eval is a JSONL file here; when it is set but is not, say that its check is left out
    (a check that disappears without a word would weaken the verdict silently)."""
    if recipe.data.eval is None:
        return False
    if Path(recipe.data.eval).is_file():
        return True
    print(f"Gate: WARNING: data.eval={recipe.data.eval} is not a JSONL file from here (a folder, a hub id, or a path "
          "relative to another directory), so the held-out data check is left out of this gate run.", flush=True)
    return False


def held_out_texts(recipe: Recipe, tokenizer: Any, limit: int) -> list[str]:
    """The stage's held-out data as text: conversations and the chosen side of pairs through the chat template."""
    from alignpipe.data import normalize_preference, preference_record_problem, read_jsonl

    if not readable_eval_file(recipe):
        return []
    texts = []
    for _, record in read_jsonl(recipe.data.eval):
        if isinstance(record, dict) and isinstance(record.get("messages"), list):
            texts.append(tokenizer.apply_chat_template(record["messages"], tokenize=False))
        elif isinstance(record, dict) and isinstance(record.get("text"), str):
            texts.append(record["text"])
        elif isinstance(record, dict) and "chosen" in record and preference_record_problem(record) is None:
            pair = normalize_preference(record)
            texts.append(tokenizer.apply_chat_template(pair["prompt"] + pair["chosen"], tokenize=False))
    return texts[:limit]


def held_out_pairs(recipe: Recipe, limit: int) -> list[dict[str, Any]]:
    """A reward model's own held-out pairs (data.eval), as prompt/chosen/rejected message lists."""
    from alignpipe.data import normalize_preference, preference_record_problem, read_jsonl

    if not readable_eval_file(recipe):
        return []
    pairs = [normalize_preference(record) for _, record in read_jsonl(recipe.data.eval)
             if isinstance(record, dict) and preference_record_problem(record) is None]
    return pairs[:limit]
