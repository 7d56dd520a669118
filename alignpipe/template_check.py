"""Preflight: the chat template renders the training data the way generation will read it.

    alignpipe check-template recipes/demo.yaml          # also runs at the start of every stage
    alignpipe show-tokens recipes/demo.yaml --n 3       # what the model is trained on, token by token

A model that behaves differently after training usually learned from a rendering that differs from the one it
is prompted with: an assistant turn without EOS (it never learns to stop), a doubled BOS, a generation prompt
that is not how training text continues, or a loss mask that misses or overshoots the answer. Each sample of the
recipe's data is rendered exactly as training renders it (`sft_tokens.tokenize_sft`, `sft_tokens.assistant_turn_renderings`)
and checked for those four problems; every problem is reported with its sample and the offending tokens.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from alignpipe import data, sft_tokens
from alignpipe.errors import AlignpipeError

# Tokens that end a turn in widely used templates (ChatML, Llama 3, Gemma, Phi-3, GPT-2 style, Llama 2). A turn
# may end with one of them instead of the tokenizer's EOS, as long as the tokenizer knows it as a special token
# (generation stops on the model's EOS ids, which include the end-of-turn token for such models).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>", "</s>")
DEFAULT_SAMPLES = 64
TRAINED_OPEN, TRAINED_CLOSE = "[[", "]]"  # marks the loss-masked (trained) spans in show-tokens


@dataclass
class Problem:
    check: str  # end_of_turn | doubled_special | generation_prompt | loss_mask
    sample: int  # index of the record in the data file (0-based, among its valid records)
    message: str


def preflight(tokenizer: Any, records: list[dict[str, Any]], assistant_only_loss: bool, source: str) -> None:
    """Run at the start of a stage: raise, naming every problem, before any model is loaded."""
    checked, problems = check_records(tokenizer, records, assistant_only_loss)
    if problems:
        raise AlignpipeError(failure_report(problems, checked, source))
    print(f"Preflight: chat template OK on {checked} samples of {source} (EOS after every assistant turn, no doubled "
          f"BOS/EOS, generation prompt a prefix of training text{', loss mask on the answers' if assistant_only_loss else ''})",
          flush=True)


def failure_report(problems: list[Problem], checked: int, source: str, shown: int = 12) -> str:
    failed = len({problem.sample for problem in problems})
    counts: dict[str, int] = {}
    for problem in problems:
        counts[problem.check] = counts.get(problem.check, 0) + 1
    lines = [f"Chat template preflight failed on {failed} of {checked} samples of {source} "
             f"({', '.join(f'{name}: {count}' for name, count in counts.items())}):"]
    lines += [f"  [{problem.check}] sample {problem.sample}: {problem.message}" for problem in problems[:shown]]
    if len(problems) > shown:
        lines.append(f"  ... and {len(problems) - shown} more")
    lines.append("Fix the chat template (model.chat_template) or the data; `alignpipe show-tokens RECIPE` shows the "
                 "rendering and the trained spans.")
    return "\n".join(lines)


def sample_indices(count: int, limit: int) -> list[int]:
    """Evenly spread over the file, so a problem in later records is seen too; all of them when few."""
    if count <= limit:
        return list(range(count))
    return sorted({round(i * (count - 1) / (limit - 1)) for i in range(limit)})


def check_records(
    tokenizer: Any, records: list[dict[str, Any]], assistant_only_loss: bool, limit: int = DEFAULT_SAMPLES
) -> tuple[int, list[Problem]]:
    """(samples checked, problems) for a sample of SFT, preference, KTO or prompt records."""
    problems = []
    indices = sample_indices(len(records), limit)
    for index in indices:
        record = records[index]
        if "text" in record and "messages" not in record:
            messages_list, text = [], record["text"]
        else:
            messages_list, text = conversations_of(record), None
        found = check_text(tokenizer, text) if text is not None else []
        for messages in messages_list:
            found += check_conversation(tokenizer, messages, assistant_only_loss and "messages" in record)
        problems += [Problem(check, index, message) for check, message in dict.fromkeys(found)]
    return len(indices), problems


def conversations_of(record: dict[str, Any]) -> list[list[dict[str, str]]]:
    """The conversations a record is trained on: its messages, prompt + chosen and + rejected, prompt + completion."""
    if "messages" in record:
        return [record["messages"]]
    prompt = data.as_messages(record.get("prompt") or [], "user")
    answers = [record[key] for key in ("chosen", "rejected", "completion") if key in record]
    if not answers:
        return [prompt]
    return [prompt + data.as_messages(answer, "assistant") for answer in answers]


def check_text(tokenizer: Any, text: str) -> list[tuple[str, str]]:
    """Raw text is trained with EOS appended (sft_tokens.tokenize_sft_record): it must end with exactly one."""
    ids = sft_tokens.tokenize_sft_record({"text": text}, tokenizer, False)["input_ids"]
    return doubled_special_tokens(tokenizer, ids, "the training text")


def check_conversation(tokenizer: Any, messages: list[dict[str, str]], assistant_only_loss: bool) -> list[tuple[str, str]]:
    if not any(message["role"] == "assistant" for message in messages):  # a prompt for online RL
        prompt_ids = generation_prompt_ids(tokenizer, messages)
        return doubled_special_tokens(tokenizer, prompt_ids, "the generation prompt")
    full_text = tokenizer.apply_chat_template(messages, tokenize=False)
    training = tokenizer(full_text, add_special_tokens=False, return_offsets_mapping=True)
    ids = training["input_ids"]
    # Training and generation both encode the rendering without adding special tokens (the template writes them).
    found = doubled_special_tokens(tokenizer, ids, "the training rendering")

    spans = []
    turns = sft_tokens.assistant_turn_renderings(messages, tokenizer)
    assistant_messages = [message for message in messages if message["role"] == "assistant"]
    for number, ((before, through), message) in enumerate(zip(turns, assistant_messages), start=1):
        if not (full_text.startswith(before) and full_text.startswith(through) and through.startswith(before)):
            found.append(("generation_prompt", f"assistant turn {number}: the generation prompt is not a prefix of the "
                          f"training rendering. Generation starts from ...{before[-60:]!r}, training has "
                          f"...{full_text[max(0, len(before) - 60):len(before) + 20]!r}"))
            continue
        prompt_messages = messages[: messages.index(message)]
        prompt_ids = generation_prompt_ids(tokenizer, prompt_messages)
        if ids[: len(prompt_ids)] != prompt_ids:
            at = next((i for i, (a, b) in enumerate(zip(ids, prompt_ids)) if a != b), min(len(ids), len(prompt_ids)))
            found.append(("generation_prompt", f"assistant turn {number}: the generation prompt's tokens are not a prefix "
                          f"of the training tokens: from token {at}, generation has {show(tokenizer, prompt_ids[at:at + 4])}, "
                          f"training {show(tokenizer, ids[at:at + 4])}"))
        turn_text = full_text[len(before) : len(through)]
        if not ends_with_end_of_turn(tokenizer, turn_text):
            turn_ids = tokenizer(turn_text, add_special_tokens=False)["input_ids"]
            found.append(("end_of_turn", f"assistant turn {number} does not end with the EOS token "
                          f"{tokenizer.eos_token!r} or an end-of-turn token, so the model never learns to stop; "
                          f"it ends with {show(tokenizer, turn_ids[-4:])}"))
        spans.append((len(before), len(through), message["content"]))
    if assistant_only_loss and len(spans) == len(turns):
        found += loss_mask_problems(tokenizer, messages, training["offset_mapping"], spans)
    return found


def generation_prompt_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The prompt exactly as `alignpipe generate` builds it (models.generate_reply); the gate tokenizes the same
    text without special tokens (policy_eval.generate_answers), which the text-prefix check covers."""
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
    return list(encoded["input_ids"])


def end_of_turn_tokens(tokenizer: Any) -> list[str]:
    special = set(tokenizer.all_special_tokens) | {str(token) for token in tokenizer.added_tokens_decoder.values()}
    return [token for token in dict.fromkeys([tokenizer.eos_token, *END_OF_TURN_TOKENS]) if token and token in special]


def ends_with_end_of_turn(tokenizer: Any, turn_text: str) -> bool:
    return any(turn_text.rstrip().endswith(token) for token in end_of_turn_tokens(tokenizer))


def doubled_special_tokens(tokenizer: Any, ids: list[int], where: str) -> list[tuple[str, str]]:
    found = []
    for name, token_id in (("BOS", tokenizer.bos_token_id), ("EOS", tokenizer.eos_token_id)):
        if token_id is None:
            continue
        for position in range(len(ids) - 1):
            if ids[position] == ids[position + 1] == token_id:
                found.append(("doubled_special", f"doubled {name} {tokenizer.convert_ids_to_tokens(token_id)!r} at tokens "
                              f"{position}-{position + 1} of {where}: {show(tokenizer, ids[max(0, position - 1):position + 4])}"))
                break
    return found


def loss_mask_problems(
    tokenizer: Any, messages: list[dict[str, str]], offsets: list[tuple[int, int]], spans: list[tuple[int, int, str]]
) -> list[tuple[str, str]]:
    """The mask training uses must cover exactly the tokens of each assistant turn, end-of-turn token included."""
    found = []
    row = sft_tokens.tokenize_sft_record({"messages": messages}, tokenizer, True)
    mask, ids = row["assistant_masks"], row["input_ids"]
    for number, (start, end, content) in enumerate(spans, start=1):
        inside = [i for i, (a, b) in enumerate(offsets) if start <= a and b <= end and b > a]
        crossing = [i for i, (a, b) in enumerate(offsets) if a < start < b or a < end < b]
        if crossing:
            found.append(("loss_mask", f"assistant turn {number}: token(s) {show(tokenizer, [ids[i] for i in crossing])} "
                          "cross the boundary of the answer, so the mask cannot cover exactly the answer"))
        unmasked = [i for i in inside if not mask[i]]
        if unmasked or not inside:
            found.append(("loss_mask", f"assistant turn {number}: answer tokens not trained: "
                          f"{show(tokenizer, [ids[i] for i in unmasked[:6]]) if inside else 'the whole answer'}"))
        trained = tokenizer.decode([ids[i] for i in inside])
        if content.strip() and content.strip() not in trained:
            found.append(("loss_mask", f"assistant turn {number}: the trained span {trained[:60]!r} does not hold the "
                          f"assistant's message {content[:40]!r}"))
    in_spans = {i for i, (a, b) in enumerate(offsets) for start, end, _ in spans if start <= a < end}
    outside = [i for i, bit in enumerate(mask) if bit and i not in in_spans]
    if outside:
        found.append(("loss_mask", f"tokens outside every assistant turn are trained: "
                      f"{show(tokenizer, [ids[i] for i in outside[:6]])}"))
    return found


def show(tokenizer: Any, ids: list[int]) -> str:
    """Tokens as the model sees them, one quoted piece each, special tokens and newlines visible."""
    return " ".join(repr(tokenizer.decode([token_id])) for token_id in ids) or "(nothing)"


def render_sample(tokenizer: Any, record: dict[str, Any], assistant_only_loss: bool, with_ids: bool) -> str:
    """The training rendering of one record with its trained tokens between [[ and ]] (all of them, without an
    assistant-only mask), newlines shown as a visible ⏎ before the line break."""
    row = sft_tokens.tokenize_sft_record(record if "messages" in record or "text" in record
                                   else {"messages": conversations_of(record)[0]}, tokenizer, assistant_only_loss)
    ids, mask = row["input_ids"], row.get("assistant_masks", [1] * len(row["input_ids"]))
    colour = sys.stdout.isatty()
    pieces, trained_now = [], False
    for token_id, bit in zip(ids, mask):
        if bit and not trained_now:
            pieces.append(("\033[32m" if colour else "") + TRAINED_OPEN)
        elif not bit and trained_now:
            pieces.append(TRAINED_CLOSE + ("\033[0m" if colour else ""))
        trained_now = bool(bit)
        pieces.append(tokenizer.decode([token_id]).replace("\n", "⏎\n"))
    if trained_now:
        pieces.append(TRAINED_CLOSE + ("\033[0m" if colour else ""))
    text = "".join(pieces)
    if with_ids:
        text += "\n" + "\n".join(f"  {i:4d} {token_id:6d} {'T' if bit else '.'} {tokenizer.decode([token_id])!r}"
                                 for i, (token_id, bit) in enumerate(zip(ids, mask)))
    return f"{len(ids)} tokens, {sum(mask)} trained\n{text}"


def stage_tokenizer_and_records(recipe: Any, stage: str) -> tuple[Any, list[dict[str, Any]], bool]:
    """The tokenizer and training records a stage would use, and whether it trains on the answers only.

    rm and rlhf stages train with this run's sft tokenizer when the sft stage exists (it saved the template it used).
    """
    from alignpipe import models, runs

    sft_adapter = runs.stage_dir_for(recipe, "sft") / "adapter"
    parent = sft_adapter.parent if stage != "sft" and (sft_adapter / "tokenizer_config.json").is_file() else None
    tokenizer = models.parent_or_base_tokenizer(parent, recipe.model)
    if recipe.data.train is None:
        raise AlignpipeError(f"data.train is not set for the {stage} stage: nothing to check.")
    if stage == "sft":
        records = data.load_records(recipe.data.train, "sft", recipe.data)
        return tokenizer, records, recipe.sft.assistant_only_loss and "messages" in records[0]
    if stage == "rm":
        return tokenizer, data.load_records(recipe.data.train, "pairs", recipe.data), False
    from alignpipe.algorithms import ALGORITHMS

    return tokenizer, data.load_records(recipe.data.train, ALGORITHMS[recipe.rlhf.algorithm].data, recipe.data), False


def check_or_show(command: str, recipe_path: str, overrides: list[str], stage: str, n: int, with_ids: bool) -> None:
    """`alignpipe check-template` (every problem named, exit 2) or `alignpipe show-tokens` (samples printed)."""
    from alignpipe.recipe_loading import load_recipe
    from alignpipe.jsonl_reader import line_limit

    recipe = load_recipe(recipe_path, stage, overrides)
    with line_limit(recipe.data.max_line_bytes):
        tokenizer, records, assistant_only = stage_tokenizer_and_records(recipe, stage)
    if command == "check-template":
        checked, problems = check_records(tokenizer, records, assistant_only, limit=n)
        if problems:
            raise AlignpipeError(failure_report(problems, checked, str(recipe.data.train)))
        print(f"Chat template OK on {checked} samples of {recipe.data.train} ({stage}): EOS after every assistant "
              "turn, no doubled BOS/EOS, generation prompt a prefix of the training rendering"
              + (", loss mask exactly on the answers." if assistant_only else "."))
        return
    for number, index in enumerate(sample_indices(len(records), n), start=1):
        rendered = render_sample(tokenizer, records[index], assistant_only, with_ids)
        print(f"--- sample {number} of {min(n, len(records))} ({recipe.data.train}, record {index}): {rendered}\n")
