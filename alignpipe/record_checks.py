"""Checks of alignpipe's own records (docs/design.md section 3), after a layout's converter (formats.py) made them:
conversations ({"messages"} or {"text"}), preference pairs, unpaired KTO examples, prompts. Each check returns why a
record is not valid, or None; the reader names the row (file:line or split[row]) with that reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ROLES = ("system", "user", "assistant")


class Invalid:
    """A row that could not even be read (a line that is not JSON); its reason becomes the row's problem."""

    def __init__(self, reason: str) -> None:
        self.reason = reason


def record_problem(record: Any) -> str | None:
    """Why a converted record is not valid, or None; the record's fields say which kind it is."""
    if "chosen" in record:
        return preference_record_problem(record)
    if "label" in record:
        return unpaired_record_problem(record)
    if "messages" in record or "text" in record:
        return sft_record_problem(record)
    return prompt_record_problem(record)


def not_an_object(record: Any) -> str | None:
    """Why a row is not an object at all (unreadable, or a list or number), or None."""
    if isinstance(record, Invalid):
        return record.reason
    return None if isinstance(record, Mapping) else f"expected a JSON object, got {type(record).__name__}"


def messages_problem(messages: Any, key: str) -> str | None:
    if not isinstance(messages, list) or not messages:
        return f"'{key}' must be a non-empty list of messages"
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping) or not isinstance(message.get("content"), str):
            return f"{key}[{index}] must be an object with a string 'content'"
        if message.get("role") not in ROLES:
            return f"{key}[{index}] has role {message.get('role')!r}; expected one of {', '.join(ROLES)}"
    return None


def sft_record_problem(record: Any) -> str | None:
    """Why a record is not SFT data ({"messages": [...]} or {"text": "..."}), or None if it is."""
    if not_an_object(record):
        return not_an_object(record)
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


def preference_record_problem(record: Any) -> str | None:
    """Why a record is not a preference pair, or None. Accepts explicit-prompt, implicit-prompt and string pairs."""
    if not_an_object(record):
        return not_an_object(record)
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


def normalize_preference(record: Mapping) -> dict[str, Any]:
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


def prompt_record_problem(record: Any) -> str | None:
    """Why a record gives no prompt for online RL, or None. Prompt-only lines, pairs and KTO lines all do."""
    if not_an_object(record):
        return not_an_object(record)
    if "prompt" not in record:
        return "missing 'prompt' (a string or a list of messages)"
    if isinstance(record["prompt"], str):
        return None if record["prompt"].strip() else "empty 'prompt'"
    return messages_problem(record["prompt"], "prompt")


def unpaired_record_problem(record: Any) -> str | None:
    """Why a record is neither a KTO line {"prompt", "completion", "label"} nor a preference pair, or None."""
    if isinstance(record, Mapping) and ("chosen" in record or "rejected" in record):
        return preference_record_problem(record)
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
