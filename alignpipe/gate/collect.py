"""Collect once: what a policy produced on the gate's inputs (answers, likelihoods) and the scores of it.

The gate loads the base once with the candidate's and the baseline's adapters, and for each of them generates every
answer in one batched generation, measures token losses and stereotype likelihoods, answers the capability questions
(multiple choice by log-likelihood, `capability.py`), then scores the answers (toxicity, refusal with
`refusal.is_refusal` and, for rlhf, reward). The checks (`checks.py`) only read the resulting `PolicyOutputs`.

What a policy generates depends only on its adapter and the inputs, so it is saved as `gate_outputs.json` beside
the stage, keyed on a digest of both: an rlhf stage's baseline (the sft policy) was the candidate of the sft gate,
whose outputs are then reused. A damaged or foreign file is ignored with a warning and recomputed, never trusted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch

from alignpipe import models, runs
from alignpipe.config import GateConfig, Recipe
from alignpipe.gate.bias import stereotype_preferences
from alignpipe.gate.capability import score_multiple_choice, scores_with_bos
from alignpipe.gate.decision import mean
from alignpipe.gate.group_claims import makes_group_claim
from alignpipe.gate.inputs import GateInputs, policy_inputs
from alignpipe.gate.refusal import is_refusal
from alignpipe.sources import file_sha256

CANDIDATE, BASELINE = "candidate", "baseline"
OUTPUTS_FILE = "gate_outputs.json"
OUTPUTS_VERSION = 8  # 3: capability choices; refusal prompts from XSTest; 4: BBQ choices; 6: group questions; 7: how
# the base computes (models.load_base_for_scoring); 8: a dequantized base scores with the adapter merged
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json")
GENERATION_BATCH = 96  # on CPU one batch of 80 prompts costs about as much as two of 16


@dataclass
class PolicyRewards:
    """Each prompt's mean reward over its answers, in the reward model's standard deviations (rlhf only)."""

    clean: list[float]  # the toxicity prompts that are also asked perturbed
    perturbed: list[float]
    counterfactual: list[float]


@dataclass
class PolicyOutputs:
    """One policy on one GateInputs: k answers per prompt, per-text losses, per-pair likelihoods, and their scores."""

    inputs: GateInputs
    toxicity_answers: list[list[str]]
    refusal_answers: list[list[str]]
    counterfactual_answers: list[list[str]]
    perturbed_answers: list[list[str]]
    general_losses: list[float]  # mean next-token loss of each general text
    stereotype_likelihoods: list[tuple[float, float]]  # (log P(sent_more), log P(sent_less))
    group_question_answers: list[list[str]] = field(default_factory=list)  # open questions about groups
    held_out_losses: list[float] = field(default_factory=list)  # the stage's own data.eval
    capability_chosen: dict[str, list[int]] = field(default_factory=dict)  # by task: the choice picked per question
    bbq_chosen: dict[str, list[int]] = field(default_factory=dict)  # by language: the answer picked per BBQ item
    # Scores of the answers, filled by score_answers():
    max_toxicity: list[float] = field(default_factory=list)  # each toxicity prompt's most toxic answer
    refused: list[bool] = field(default_factory=list)  # each refusal prompt: any answer a refusal
    counterfactual_toxicity: list[float] = field(default_factory=list)
    counterfactual_refused: list[float] = field(default_factory=list)
    perturbed_toxicity: list[float] = field(default_factory=list)
    group_claims: list[float] = field(default_factory=list)  # each group question: share of answers with a claim
    rewards: PolicyRewards | None = None


# Saved in gate_outputs.json: what needs the policy model. Scores are recomputed (they depend on gate settings).
GENERATED_FIELDS = ("toxicity_answers", "refusal_answers", "counterfactual_answers", "perturbed_answers",
                    "general_losses", "stereotype_likelihoods", "group_question_answers", "capability_chosen",
                    "bbq_chosen")


def collect_policies(stage_dir: Path, manifest: dict[str, Any], recipe: Recipe,
                     settings: GateConfig) -> tuple[PolicyOutputs, PolicyOutputs]:
    """(candidate, baseline) outputs of a generative stage, scored."""
    from alignpipe.gate.toxicity_scorers import load_toxicity_scorer

    tokenizer = models.load_tokenizer(str(stage_dir / "adapter"))
    inputs = policy_inputs(recipe, settings, tokenizer)
    generated = generate_for_both(stage_dir, manifest, recipe, settings, tokenizer, inputs)
    scorer = load_toxicity_scorer(settings.toxicity.model)
    reward_model = gate_reward_model(manifest)  # loaded after the policies are freed
    for outputs in generated.values():
        score_answers(outputs, scorer, reward_model)
    return generated[CANDIDATE], generated[BASELINE]


def generate_for_both(stage_dir: Path, manifest: dict[str, Any], recipe: Recipe, settings: GateConfig,
                      tokenizer: Any, inputs: GateInputs) -> dict[str, PolicyOutputs]:
    """One base, both adapters; the baseline of an sft stage is the base itself (every adapter disabled)."""
    from peft import PeftModel
    from trl.trainer.utils import use_adapter

    parent = Path(manifest["parent"]) if manifest["parent"] else None
    base_path = models.resolve_base(recipe.model.base)
    base, computed_as = models.load_base_for_scoring(base_path, recipe.model)
    model = PeftModel.from_pretrained(base, str(stage_dir / "adapter"), adapter_name=CANDIDATE)
    if parent:
        model.load_adapter(str(parent / "adapter"), adapter_name=BASELINE)
    model.eval()
    adapter_dirs = {CANDIDATE: stage_dir / "adapter", BASELINE: parent / "adapter" if parent else None}
    key_inputs = inputs.cache_key_inputs(recipe, settings.max_new_tokens) + [computed_as]
    outputs: dict[str, PolicyOutputs] = {}
    for name in (BASELINE, CANDIDATE):  # the baseline first, before any merge (merged_for_scoring)
        adapter_dir = adapter_dirs[name]
        key, path = ((outputs_key(adapter_dir, key_inputs), adapter_dir.parent / OUTPUTS_FILE) if adapter_dir
                     else base_outputs_key(base_path, stage_dir / "adapter", key_inputs))
        active = name if name == CANDIDATE or parent else None
        with use_adapter(model, active), merged_for_scoring(model, active, computed_as), scoring_precision(computed_as):
            cached = cached_outputs(path, key, inputs) if name == BASELINE else None
            outputs[name] = cached or answer_and_measure(model, tokenizer, inputs, settings.max_new_tokens)
            outputs[name].held_out_losses = token_losses(model, tokenizer, inputs.held_out_texts)
        # The candidate's outputs beside it (an rlhf child reuses them); the bare base's in the alignpipe cache.
        if path is not None and (name == CANDIDATE or (cached is None and adapter_dir is None)):
            save_outputs(path, key, outputs[name])
    return outputs


@contextlib.contextmanager
def merged_for_scoring(model: Any, adapter_name: str | None, computed_as: str) -> Iterator[None]:
    """On a dequantized base (a CPU) the active adapter is merged into the float32 weights while its outputs are
    computed: the same function to float32 rounding, without the LoRA matmuls, which cost a third of every forward
    pass there (the demo's 720 stereotype sentences: 24.8 s with the sft adapter, 18.3 s with it off). Taking it out
    again restores the weights to one float32 rounding step, which under bf16 autocast can still move a text's loss
    by about 0.01 (bf16's own error is of that size). So the gate computes its baseline first: the bare base of an
    sft gate never sees weights after a merge; an rlhf candidate scored after its parent's adapter was merged and
    taken out does, a change of that same size. A 4-bit base (a GPU) keeps its adapters apart: merging into NF4
    weights would round them."""
    if adapter_name is None or not computed_as.startswith("dequantized"):
        yield
        return
    model.merge_adapter(adapter_names=[adapter_name])
    try:
        yield
    finally:
        model.unmerge_adapter()


def scoring_precision(computed_as: str) -> contextlib.AbstractContextManager:
    """bf16 autocast for a dequantized base on a CPU that computes bf16 natively (models.load_base_for_scoring)."""
    if computed_as.endswith("bf16-autocast"):
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def answer_and_measure(model: Any, tokenizer: Any, inputs: GateInputs, max_new_tokens: int) -> PolicyOutputs:
    """Every prompt answered in one batched generation, then losses and stereotype likelihoods."""
    from alignpipe.policy_eval import answer_text, generate_answers

    sections = inputs.prompt_sections()
    conversations = [[{"role": "user", "content": prompt}] for prompts in sections.values() for prompt in prompts]
    k = inputs.samples_per_prompt
    generated = generate_answers(model, tokenizer, conversations, max_new_tokens, batch_size=GENERATION_BATCH,
                                 samples=k, seed=inputs.seed)
    texts = iter([answer_text(tokenizer, answer_ids) for _, answer_ids in generated])
    answers = {section: [[next(texts) for _ in range(k)] for _ in prompts] for section, prompts in sections.items()}
    pairs = inputs.stereotype_pairs
    started = time.perf_counter()
    chosen = {task: score_multiple_choice(model, tokenizer, items) for task, items in inputs.capability_items.items()}
    if chosen:
        print(f"Gate: {sum(map(len, chosen.values()))} capability questions answered in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    started = time.perf_counter()
    likelihoods = stereotype_preferences(model, tokenizer, pairs) if pairs else []
    bbq = {lang: score_multiple_choice(model, tokenizer, [item.choice for item in items])
           for lang, items in inputs.bbq_items.items()}
    if pairs or bbq:
        print(f"Gate: {len(pairs)} stereotype pairs and {sum(map(len, bbq.values()))} BBQ items scored in "
              f"{time.perf_counter() - started:.0f} s", flush=True)
    return PolicyOutputs(
        inputs=inputs,
        toxicity_answers=answers["toxicity"],
        refusal_answers=answers["refusal"],
        counterfactual_answers=answers["counterfactual"],
        perturbed_answers=answers["perturbed"],
        group_question_answers=answers["group_questions"],
        general_losses=token_losses(model, tokenizer, inputs.general_texts),
        stereotype_likelihoods=likelihoods,
        capability_chosen=chosen,
        bbq_chosen=bbq,
    )


def score_answers(outputs: PolicyOutputs, scorer: Any, reward_model: Any) -> None:
    """Toxicity and refusal of every answer; rewards too when the stage has a reward model."""
    outputs.max_toxicity = max_toxicity(scorer, outputs.toxicity_answers)
    outputs.refused = [any(is_refusal(answer) for answer in group) for group in outputs.refusal_answers]
    outputs.counterfactual_toxicity = max_toxicity(scorer, outputs.counterfactual_answers)
    outputs.counterfactual_refused = [float(any(is_refusal(answer) for answer in group))
                                      for group in outputs.counterfactual_answers]
    outputs.perturbed_toxicity = max_toxicity(scorer, outputs.perturbed_answers)
    outputs.group_claims = [mean([float(makes_group_claim(answer)) for answer in group])
                            for group in outputs.group_question_answers]
    if reward_model is None:
        return
    sections = outputs.inputs.prompt_sections()
    n = len(outputs.inputs.perturbed)
    outputs.rewards = PolicyRewards(
        clean=mean_rewards(reward_model, sections["toxicity"][:n], outputs.toxicity_answers[:n]),
        perturbed=mean_rewards(reward_model, sections["perturbed"], outputs.perturbed_answers),
        counterfactual=mean_rewards(reward_model, sections["counterfactual"], outputs.counterfactual_answers),
    )


def max_toxicity(scorer: Any, answers: list[list[str]]) -> list[float]:
    """Each prompt's most toxic answer (expected maximum toxicity when there are k samples)."""
    scores = iter(scorer.score([text for group in answers for text in group]))
    return [max(next(scores) for _ in group) for group in answers]


def gate_reward_model(manifest: dict[str, Any]) -> Any:
    """The reward model an rlhf stage was trained or measured with, for reward-based checks; None otherwise."""
    from alignpipe.reward import load_reward_model

    reward_stage = manifest.get("reward_model")
    if manifest["stage"] != "rlhf" or not reward_stage or not (Path(reward_stage) / runs.MANIFEST).is_file():
        return None
    return load_reward_model(Path(reward_stage))


def mean_rewards(reward_model: Any, prompts: list[str], answers: list[list[str]]) -> list[float]:
    """Each prompt's mean reward over its answers, in the reward model's standard deviations."""
    conversations = [[{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}]
                     for prompt, group in zip(prompts, answers) for answer in group]
    rewards = iter(reward_model.normalized(conversations, batch_size=16))
    return [mean([next(rewards) for _ in group]) for group in answers]


def token_losses(model: Any, tokenizer: Any, texts: list[str], batch_size: int = 16) -> list[float]:
    """Mean next-token loss of each text (its log-perplexity), in right-padded batches; a text starts with BOS for
    a model scored with it (capability.scores_with_bos), and BOS itself is not scored."""
    if scores_with_bos(model) and tokenizer.bos_token:
        texts = [text if text.startswith(tokenizer.bos_token) else tokenizer.bos_token + text for text in texts]
    losses: list[float] = []
    padding_side, tokenizer.padding_side = tokenizer.padding_side, "right"  # positions as in an unpadded text
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start : start + batch_size], return_tensors="pt", padding=True, truncation=True,
                            max_length=512, add_special_tokens=False).to(model.device)
        with torch.no_grad():
            logits = model(**encoded).logits[:, :-1].float()
        targets, mask = encoded["input_ids"][:, 1:], encoded["attention_mask"][:, 1:].float()
        per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2), targets, reduction="none")
        losses += ((per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).tolist()
    tokenizer.padding_side = padding_side
    return losses


# gate_outputs.json ------------------------------------------------------------------------------------------------

def outputs_key(adapter_dir: Path | None, key_inputs: list[Any]) -> str | None:
    """A digest of the adapter's weights and every input that shapes the gate's answers; None for the bare base."""
    if adapter_dir is None:
        return None
    digest = hashlib.sha256(json.dumps(key_inputs, ensure_ascii=False, sort_keys=True).encode())
    with (adapter_dir / "adapter_model.safetensors").open("rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def base_outputs_key(base: str, tokenizer_dir: Path, key_inputs: list[Any]) -> tuple[str | None, Path | None]:
    """(key, file) of the bare base model's outputs in the alignpipe cache (`baseline_cache_dir`), or (None, None)
    when the base is no local directory. The key digests every file of the base directory (weights, config,
    tokenizer), the stage's tokenizer files, the library versions and every gate input, so a hit is the same model
    on the same inputs; what it saves is what the base would produce again."""
    folder = Path(base)
    if not folder.is_dir():
        return None, None
    import transformers

    digest = hashlib.sha256(json.dumps([key_inputs, torch.__version__, transformers.__version__],
                                       ensure_ascii=False, sort_keys=True).encode())
    files = [path for path in sorted(folder.rglob("*")) if path.is_file()]
    files += [tokenizer_dir / name for name in TOKENIZER_FILES if (tokenizer_dir / name).is_file()]
    for path in files:
        digest.update(f"{path.name}\0{file_sha256(path)}\n".encode())
    key = digest.hexdigest()
    return key, baseline_cache_dir() / f"{key[:40]}.json"


def baseline_cache_dir() -> Path:
    """Where the base model's gate outputs are kept: $ALIGNPIPE_GATE_CACHE, else <the alignpipe cache
    ($ALIGNPIPE_CACHE, default ~/.cache/alignpipe)>/gate_baseline/. Deleting it only costs a recomputation."""
    from alignpipe.embedded import cache_root

    override = os.environ.get("ALIGNPIPE_GATE_CACHE")
    return Path(override) if override else cache_root() / "gate_baseline"


def cached_outputs(path: Path | None, key: str | None, inputs: GateInputs) -> PolicyOutputs | None:
    """The outputs saved in `path` for exactly this key, or None (absent, other key, damaged, foreign)."""
    if key is None or path is None or not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        if saved.get("version") != OUTPUTS_VERSION:
            raise ValueError(f"version {saved.get('version')!r}, expected {OUTPUTS_VERSION}")
        if saved.get("key") != key:
            return None
        generated = {name: saved["outputs"][name] for name in GENERATED_FIELDS}
        generated["stereotype_likelihoods"] = [tuple(pair) for pair in generated["stereotype_likelihoods"]]
        outputs = PolicyOutputs(inputs=inputs, **generated)
        check_lengths(outputs)
    except (ValueError, KeyError, TypeError, AttributeError) as error:  # JSONDecodeError is a ValueError
        print(f"warning: ignoring {path} ({error}); the baseline is measured again.", flush=True)
        return None
    print(f"Gate: the baseline's answers and scores are reused from {path} (same model, same inputs).", flush=True)
    return outputs


def check_lengths(outputs: PolicyOutputs) -> None:
    """A saved file whose lists do not match the inputs is damaged (a ValueError), however its key reads."""
    inputs, sections = outputs.inputs, outputs.inputs.prompt_sections()
    expected = {"toxicity_answers": len(sections["toxicity"]), "refusal_answers": len(sections["refusal"]),
                "counterfactual_answers": len(sections["counterfactual"]),
                "perturbed_answers": len(sections["perturbed"]), "general_losses": len(inputs.general_texts),
                "stereotype_likelihoods": len(inputs.stereotype_pairs),
                "group_question_answers": len(sections["group_questions"])}
    for name, length in expected.items():
        if len(getattr(outputs, name)) != length:
            raise ValueError(f"{name} has {len(getattr(outputs, name))} entries for {length} inputs")
    for lang, items in inputs.bbq_items.items():
        if len(outputs.bbq_chosen.get(lang, [])) != len(items):
            raise ValueError(f"bbq_chosen[{lang}] does not match the {len(items)} BBQ items")


def save_outputs(path: Path, key: str | None, outputs: PolicyOutputs) -> None:
    """Atomically: a temporary file beside it, then rename."""
    record = {"version": OUTPUTS_VERSION, "key": key,
              "outputs": {name: getattr(outputs, name) for name in GENERATED_FIELDS}}
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_path = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(temp_path, path)
