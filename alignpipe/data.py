"""Load and validate JSONL data in the standard formats, and tokenize SFT data with its loss mask.

Every problem names the file and the line. With `data.skip_invalid=true` bad lines are skipped and counted.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from datasets import Dataset

from alignpipe.errors import AlignpipeError
from alignpipe.jsonl_reader import BadLine, iter_json_lines, line_limit

ROLES = ("system", "user", "assistant")


def read_jsonl(path: str | Path) -> list[tuple[int, Any]]:
    """(line number, parsed object or BadLine) for every non-blank line; see jsonl_reader for what a bad line is."""
    return list(iter_json_lines(path))


def messages_problem(messages: Any, key: str) -> str | None:
    if not isinstance(messages, list) or not messages:
        return f"'{key}' must be a non-empty list of messages"
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str):
            return f"{key}[{index}] must be an object with a string 'content'"
        if message.get("role") not in ROLES:
            return f"{key}[{index}] has role {message.get('role')!r}; expected one of {', '.join(ROLES)}"
    return None


def sft_record_problem(record: Any) -> str | None:
    """Why a record is not SFT data ({"messages": [...]} or {"text": "..."}), or None if it is."""
    if isinstance(record, BadLine):
        return record.reason
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    if "messages" not in record:
        if isinstance(record.get("text"), str) and record["text"].strip():
            return None
        return "has neither 'messages' (a list of {role, content}) nor a non-empty 'text'"
    messages = record["messages"]
    problem = messages_problem(messages, "messages")
    if problem is not None:
        return problem
    if not any(message["role"] == "assistant" for message in messages):
        return "no assistant message to learn from"
    return None


def load_valid_records(path: str | Path, problem_of: Any, skip_invalid: bool) -> list[Any]:
    """Records for which problem_of(record) is None; a bad line stops the load, or is skipped and counted."""
    records, skipped = [], []
    for line_number, record in read_jsonl(path):
        problem = problem_of(record)
        if problem is None:
            records.append(record)
        else:
            skipped.append(f"{path}:{line_number}: {problem}")
    if skipped and not skip_invalid:  # the first bad line, and how many there are in all
        more = f" ({len(skipped) - 1} more invalid line(s) in the file)" if len(skipped) > 1 else ""
        raise AlignpipeError(f"{skipped[0]}{more}. Fix the line, or set data.skip_invalid=true to skip bad lines.")
    if skipped:
        print(f"warning: skipped {len(skipped)} invalid line(s) in {path}; first: {skipped[0]}", flush=True)
    if not records:
        raise AlignpipeError(f"{path} holds no usable examples (empty file, or every line invalid).")
    return records


def load_sft_records(path: str | Path, skip_invalid: bool) -> list[dict[str, Any]]:
    records = load_valid_records(path, sft_record_problem, skip_invalid)
    if len({"messages" in record for record in records}) > 1:
        raise AlignpipeError(f"{path} mixes 'messages' and 'text' records; use one format per file.")
    return records


def load_train_and_eval(
    data_config: Any, seed: int, load_records: Any, what: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training and held-out records: data.eval if given, else a seeded data.eval_fraction of data.train."""
    if data_config.train is None:
        raise AlignpipeError(f"data.train is not set: give a JSONL file of {what}.")
    with line_limit(data_config.max_line_bytes):
        train = load_records(data_config.train, data_config.skip_invalid)
        if data_config.eval is not None:
            return train, load_records(data_config.eval, data_config.skip_invalid)
    return split_train_eval(train, data_config.eval_fraction, seed)


def split_train_eval(
    records: list[dict[str, Any]], eval_fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if eval_fraction <= 0:
        return records, []
    shuffled = records[:]
    random.Random(seed).shuffle(shuffled)
    n_eval = max(1, round(len(shuffled) * eval_fraction))
    if n_eval >= len(shuffled):
        raise AlignpipeError(f"data.eval_fraction={eval_fraction} leaves no training examples out of {len(records)}.")
    return shuffled[n_eval:], shuffled[:n_eval]


def records_to_score(input_path: Path, field: str, output_path: Path) -> list[dict[str, Any]]:
    """The lines of a JSONL file that `alignpipe score ...` adds a score to; each needs a string `field`.

    Refuses an existing output file (nothing is overwritten) and names file:line of a line without the field.
    """
    if output_path.exists():
        raise AlignpipeError(f"Output file {output_path} exists; choose another --output (nothing is overwritten).")
    from alignpipe.jsonl_reader import read_valid_json_lines

    rows = read_valid_json_lines(input_path)
    if not rows:
        raise AlignpipeError(f"{input_path} holds no lines to score.")
    for line_number, record in rows:
        if not isinstance(record, dict) or not isinstance(record.get(field), str):
            raise AlignpipeError(f"{input_path}:{line_number}: no string field {field!r} to score (choose it with --field)")
    return [record for _, record in rows]


def write_jsonl(path: Path, records: list[Any]) -> None:
    """One JSON object a line, UTF-8, non-ASCII kept readable; creates the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record, ensure_ascii=False) + "\n")


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tokenize_sft(records: list[dict[str, Any]], tokenizer: Any, assistant_only_loss: bool) -> Dataset:
    """Token ids plus, for conversations, an `assistant_masks` column that TRL turns into labels.

    We build the mask ourselves rather than through `{% generation %}` template markers, which most chat templates
    (the embedded model's included) lack: an assistant turn is the text between the rendering of the conversation
    up to the turn's generation prompt and the rendering that includes the turn. This works for every template that
    renders a conversation's prefix as a prefix of the whole, which generation itself relies on.
    """
    rows = [tokenize_sft_record(record, tokenizer, assistant_only_loss) for record in records]
    return Dataset.from_list(rows)


def tokenize_sft_record(record: dict[str, Any], tokenizer: Any, assistant_only_loss: bool) -> dict[str, list[int]]:
    if "text" in record:
        text = record["text"] + (tokenizer.eos_token or "")
        return {"input_ids": tokenizer(text, add_special_tokens=False)["input_ids"]}
    messages = record["messages"]
    full_text = tokenizer.apply_chat_template(messages, tokenize=False)
    encoded = tokenizer(full_text, add_special_tokens=False, return_offsets_mapping=True)
    if not assistant_only_loss:
        return {"input_ids": encoded["input_ids"]}
    spans = assistant_char_spans(messages, full_text, tokenizer)
    mask = [int(any(start <= token_start < end for start, end in spans)) for token_start, _ in encoded["offset_mapping"]]
    return {"input_ids": encoded["input_ids"], "assistant_masks": mask}


def assistant_char_spans(messages: list[dict[str, str]], full_text: str, tokenizer: Any) -> list[tuple[int, int]]:
    spans = []
    for before, through in assistant_turn_renderings(messages, tokenizer):
        if not (full_text.startswith(before) and full_text.startswith(through)):
            raise AlignpipeError(
                "The chat template does not render a conversation's beginning as a prefix of the whole, so the "
                "assistant tokens cannot be located. Set sft.assistant_only_loss=false to train on every token, "
                "or use a prefix-preserving template (model.chat_template)."
            )
        spans.append((len(before), len(through)))
    return spans


def assistant_turn_renderings(messages: list[dict[str, str]], tokenizer: Any) -> list[tuple[str, str]]:
    """For each assistant turn: the rendering up to its generation prompt (what generation starts from) and the
    rendering that includes the turn. The turn's trained text lies between the two."""
    renderings = []
    for index, message in enumerate(messages):
        if message["role"] == "assistant":
            before = tokenizer.apply_chat_template(messages[:index], tokenize=False, add_generation_prompt=True)
            through = tokenizer.apply_chat_template(messages[: index + 1], tokenize=False)
            renderings.append((before, through))
    return renderings


def preference_record_problem(record: Any) -> str | None:
    """Why a record is not a preference pair, or None. Accepts explicit-prompt, implicit-prompt and string pairs."""
    if isinstance(record, BadLine):
        return record.reason
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    missing = [key for key in ("chosen", "rejected") if key not in record]
    if len(missing) == 2 and "prompt" in record:
        return "missing 'chosen' and 'rejected': a prompt-only line suits online RL (rlhf.algorithm=grpo or rloo)"
    if missing:
        return f"missing '{missing[0]}'"
    kinds = {type(record[key]) for key in ("prompt", "chosen", "rejected") if key in record}
    if kinds == {str}:
        return None if record["chosen"].strip() and record["rejected"].strip() else "empty 'chosen' or 'rejected'"
    if kinds != {list}:
        return "'prompt', 'chosen' and 'rejected' must all be message lists or all be strings"
    if not record["chosen"] or not record["rejected"]:
        return "'chosen' and 'rejected' must not be empty"
    for key in ("prompt", "chosen", "rejected"):
        problem = messages_problem(record[key], key) if record.get(key) else None  # the prompt may be empty
        if problem is not None:
            return problem
    if "margin" in record and not isinstance(record["margin"], (int, float)):
        return "'margin' must be a number"
    return None


def trainable_pair_problem(record: Any) -> str | None:
    """preference_record_problem, and a pair whose chosen equals its rejected: it has no preference to learn (the
    DPO-family losses see no margin, a reward model no difference, KTO the same answer as good and as bad)."""
    problem = preference_record_problem(record)
    if problem is None and (pair := normalize_preference(record))["chosen"] == pair["rejected"]:
        return "'chosen' equals 'rejected' (after the shared prompt), so the pair teaches nothing"
    return problem


def normalize_preference(record: dict[str, Any]) -> dict[str, Any]:
    """One shape for every accepted format: {"prompt": [...], "chosen": [...], "rejected": [...]} (+ margin)."""
    if isinstance(record["chosen"], str):
        prompt = [{"role": "user", "content": record["prompt"]}] if record.get("prompt") else []
        chosen = [{"role": "assistant", "content": record["chosen"]}]
        rejected = [{"role": "assistant", "content": record["rejected"]}]
    elif "prompt" in record:
        prompt, chosen, rejected = record["prompt"], record["chosen"], record["rejected"]
    else:  # implicit prompt: the shared leading messages are the prompt
        shared = 0
        while (
            shared < min(len(record["chosen"]), len(record["rejected"])) - 1
            and record["chosen"][shared] == record["rejected"][shared]
        ):
            shared += 1
        prompt = record["chosen"][:shared]
        chosen, rejected = record["chosen"][shared:], record["rejected"][shared:]
    pair = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
    if "margin" in record:
        pair["margin"] = float(record["margin"])
    return pair


def load_preference_records(path: str | Path, skip_invalid: bool) -> list[dict[str, Any]]:
    """Validated, normalized pairs; a pair whose chosen equals its rejected is an invalid line like any other."""
    pairs = [normalize_preference(record) for record in load_valid_records(path, trainable_pair_problem, skip_invalid)]
    if len({"margin" in pair for pair in pairs}) > 1:
        raise AlignpipeError(f"{path}: 'margin' must be given on every pair or on none.")
    return pairs


def as_messages(value: str | list[dict[str, str]], role: str) -> list[dict[str, str]]:
    return [{"role": role, "content": value}] if isinstance(value, str) else value


def prompt_record_problem(record: Any) -> str | None:
    """Why a record gives no prompt for online RL, or None. Prompt-only lines, pairs and KTO lines all do."""
    if isinstance(record, BadLine):
        return record.reason
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    if "prompt" not in record:
        return "missing 'prompt' (a string or a list of messages)"
    if isinstance(record["prompt"], str):
        return None if record["prompt"].strip() else "empty 'prompt'"
    return messages_problem(record["prompt"], "prompt")


def load_prompt_records(path: str | Path, skip_invalid: bool) -> list[dict[str, Any]]:
    """{"prompt": [messages]} records, each prompt once (pair files repeat prompts), in file order."""
    records = load_valid_records(path, prompt_record_problem, skip_invalid)
    if any("chosen" in record or "completion" in record for record in records):
        print(f"note: online RL learns from prompts only; the answers in {path} are not used.", flush=True)
    prompts: dict[str, dict[str, Any]] = {}
    for record in records:
        prompt = as_messages(record["prompt"], "user")
        prompts.setdefault(json.dumps(prompt, ensure_ascii=False), {"prompt": prompt})
    return list(prompts.values())


def unpaired_record_problem(record: Any) -> str | None:
    """Why a record is neither a KTO line {"prompt", "completion", "label"} nor a preference pair, or None."""
    if isinstance(record, dict) and ("chosen" in record or "rejected" in record):
        return trainable_pair_problem(record)
    problem = prompt_record_problem(record)
    if problem is not None:
        return problem
    if "completion" not in record or "label" not in record:
        return "expected {'prompt', 'completion', 'label'} (KTO) or a preference pair {'prompt', 'chosen', 'rejected'}"
    if not isinstance(record["label"], bool):
        return "'label' must be true (desirable) or false (undesirable)"
    if isinstance(record["completion"], str):
        return None if record["completion"].strip() else "empty 'completion'"
    return messages_problem(record["completion"], "completion")


def load_unpaired_records(path: str | Path, skip_invalid: bool) -> list[dict[str, Any]]:
    """KTO examples; a preference pair becomes two, its chosen desirable and its rejected undesirable."""
    examples = []
    for record in load_valid_records(path, unpaired_record_problem, skip_invalid):
        if "chosen" in record:
            pair = normalize_preference(record)
            examples.append({"prompt": pair["prompt"], "completion": pair["chosen"], "label": True})
            examples.append({"prompt": pair["prompt"], "completion": pair["rejected"], "label": False})
        else:
            prompt = as_messages(record["prompt"], "user")
            examples.append({"prompt": prompt, "completion": as_messages(record["completion"], "assistant"),
                             "label": record["label"]})
    if len({example["label"] for example in examples}) < 2:
        raise AlignpipeError(f"{path}: KTO needs both desirable (label true) and undesirable (label false) examples.")
    return examples
