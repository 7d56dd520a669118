"""`convert`: common dataset formats -> our JSONL formats (DESIGN.md section 3), checked by alignpipe.data.

| --format | reads | writes |
|---|---|---|
| alpaca   | instruction, input (optional), output, system (optional) | {"messages": [system?, user, assistant]} |
| sharegpt | conversations: [{from: human/gpt/system, value}], system (optional) | {"messages": [...]} |
| messages | messages (TRL conversational), checked and passed through | {"messages": [...]} |
| hh-rlhf  | chosen / rejected transcripts ("\\n\\nHuman: ... \\n\\nAssistant: ...") | {"prompt": [...], "chosen": [1 message], "rejected": [1 message]} |
| pairs    | prompt (optional) + chosen / rejected, strings or message lists | {"prompt": [...], "chosen": [...], "rejected": [...]} |
| text     | a text column (--text-field) or .txt lines | {"text": ...} |

Every other field of a record (ids, metadata) is kept as it is. A record that cannot be converted goes to the
rejects file with the reason; pairs whose chosen equals rejected teach nothing and are rejected as `identical_pair`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alignpipe.data import normalize_preference, preference_record_problem, sft_record_problem
from alignpipe.errors import AlignpipeError
from data_prep.records import JsonlWriter, Record, Rejects, iter_records, run_streaming

FORMATS = ("alpaca", "sharegpt", "messages", "hh-rlhf", "pairs", "text")
REQUIRED_COLUMNS = {
    "alpaca": ("instruction", "output"),
    "sharegpt": ("conversations",),
    "messages": ("messages",),
    "hh-rlhf": ("chosen", "rejected"),
    "pairs": ("chosen", "rejected"),
    "text": ("text",),
}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "model": "assistant",
                  "system": "system"}
_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")


class Reject(Exception):
    """A record that cannot be converted: `kind` groups the summary, `reason` says why."""

    def __init__(self, reason: str, kind: str = "malformed") -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


def convert_file(input_path: str | Path, output_path: str | Path, input_format: str, text_field: str = "text",
                 rejects_path: str | Path | None = None, skip_bad_lines: bool = False) -> dict[str, Any]:
    """Convert a file; returns the summary (counts written and rejected by kind)."""
    if input_format not in FORMATS:
        raise AlignpipeError(f"Unknown --format {input_format!r}; choose one of {', '.join(FORMATS)}.")
    required = (text_field,) if input_format == "text" else REQUIRED_COLUMNS[input_format]

    def body(writer: JsonlWriter, rejects: Rejects) -> dict[str, Any]:
        read = 0
        for record in iter_records(input_path, rejects if skip_bad_lines else None):
            read += 1
            if read == 1:
                check_columns(record, input_format, required)
            try:
                writer.write(convert_record(record.data, input_format, text_field))
            except Reject as reject:
                rejects.add(record, reject.kind, reject.reason)
        return {"read": read}

    return run_streaming(output_path, rejects_path, body)


def check_columns(first: Record, input_format: str, required: tuple[str, ...]) -> None:
    """A file whose first record lacks the format's columns is the wrong format or the wrong file: stop early."""
    columns = list(first.data) if isinstance(first.data, dict) else []
    missing = [column for column in required if column not in columns]
    if not missing:
        return
    guesses = [name for name, needed in REQUIRED_COLUMNS.items() if name != input_format and set(needed) <= set(columns)]
    hint = f" Did you mean --format {guesses[0]}?" if guesses else ""
    raise AlignpipeError(f"{first.where}: --format {input_format} needs the column(s) {', '.join(required)}; "
                         f"this record has {', '.join(columns) or 'none'}.{hint}")


def convert_record(data: Any, input_format: str, text_field: str = "text") -> dict[str, Any]:
    """One record in our format (extra fields kept), or raise Reject."""
    if not isinstance(data, Mapping):
        raise Reject(f"expected an object, got {type(data).__name__}")
    if input_format == "alpaca":
        converted, used = _from_alpaca(data), ("instruction", "input", "output", "system")
    elif input_format == "sharegpt":
        converted, used = _from_sharegpt(data), ("conversations", "system")
    elif input_format == "messages":
        converted, used = {"messages": _json_cell(data.get("messages"), "messages")}, ("messages",)
    elif input_format == "hh-rlhf":
        converted, used = _from_hh_rlhf(data), ("chosen", "rejected")
    elif input_format == "pairs":
        converted, used = _from_pairs(data), ("prompt", "chosen", "rejected", "margin")
    else:
        text = data.get(text_field)
        if not isinstance(text, str) or not text.strip():
            raise Reject(f"'{text_field}' is missing or not a non-empty string")
        converted, used = {"text": text}, (text_field,)
    problem = (preference_record_problem if "chosen" in converted else sft_record_problem)(converted)
    if problem is not None:
        raise Reject(problem)
    if "chosen" in converted and converted["chosen"] == converted["rejected"]:
        raise Reject("chosen equals rejected: the pair teaches nothing", kind="identical_pair")
    extras = {key: value for key, value in data.items() if key not in used and key not in converted}
    return {**converted, **extras}


def _json_cell(value: Any, name: str) -> Any:
    """A list as it is; a CSV cell holding JSON text decoded."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise Reject(f"'{name}' holds invalid JSON ({error.msg})") from None
    return value


def _from_alpaca(data: dict[str, Any]) -> dict[str, Any]:
    instruction, extra_input, output = data.get("instruction"), data.get("input") or "", data.get("output")
    if not isinstance(instruction, str) or not instruction.strip():
        raise Reject("'instruction' is missing or empty")
    if not isinstance(output, str) or not output.strip():
        raise Reject("'output' is missing or empty")
    if not isinstance(extra_input, str):
        raise Reject("'input' must be a string")
    user = instruction + ("\n\n" + extra_input if extra_input.strip() else "")
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    if isinstance(data.get("system"), str) and data["system"].strip():
        messages.insert(0, {"role": "system", "content": data["system"]})
    return {"messages": messages}


def _from_sharegpt(data: dict[str, Any]) -> dict[str, Any]:
    conversation = _json_cell(data.get("conversations"), "conversations")
    if not isinstance(conversation, list) or not conversation:
        raise Reject("'conversations' must be a non-empty list of {from, value}")
    messages = []
    if isinstance(data.get("system"), str) and data["system"].strip():
        messages.append({"role": "system", "content": data["system"]})
    for index, turn in enumerate(conversation):
        if not isinstance(turn, dict) or not isinstance(turn.get("value"), str):
            raise Reject(f"conversations[{index}] must be an object with a string 'value'")
        role = SHAREGPT_ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            raise Reject(f"conversations[{index}] is from {turn.get('from')!r}; known: {', '.join(SHAREGPT_ROLES)}")
        messages.append({"role": role, "content": turn["value"]})
    return {"messages": messages}


def parse_hh_transcript(transcript: str) -> list[dict[str, str]]:
    """An HH-RLHF transcript as messages. The one space after "Human:"/"Assistant:" is the separator, so
    render_hh_transcript(parse_hh_transcript(t)) == t for every well-formed transcript."""
    parts = _HH_TURN.split(transcript)
    if parts[0].strip():
        raise Reject("text before the first 'Human:' turn")
    if len(parts) < 3:
        raise Reject("no '\\n\\nHuman:' / '\\n\\nAssistant:' turns found")
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = "user" if speaker == "Human" else "assistant"
        messages.append({"role": role, "content": content[1:] if content.startswith(" ") else content})
    return messages


def render_hh_transcript(messages: list[dict[str, str]]) -> str:
    speaker = {"user": "Human", "assistant": "Assistant"}
    return "".join(f"\n\n{speaker[m['role']]}: {m['content']}" for m in messages)


def _from_hh_rlhf(data: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(data.get("chosen"), str) or not isinstance(data.get("rejected"), str):
        raise Reject("'chosen' and 'rejected' must be transcript strings")
    chosen, rejected = parse_hh_transcript(data["chosen"]), parse_hh_transcript(data["rejected"])
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if turns[-1]["role"] != "assistant":
            raise Reject(f"'{name}' does not end with an Assistant turn")
        if not turns[-1]["content"].strip():
            raise Reject(f"'{name}' ends with an empty Assistant turn")
    if chosen[:-1] != rejected[:-1]:
        raise Reject("chosen and rejected transcripts differ before their final Assistant turn")
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def _from_pairs(data: dict[str, Any]) -> dict[str, Any]:
    pair = {key: _json_cell(data[key], key) for key in ("prompt", "chosen", "rejected", "margin") if key in data}
    if isinstance(pair.get("margin"), str):
        try:
            pair["margin"] = float(pair["margin"])
        except ValueError:
            raise Reject("'margin' must be a number") from None
    problem = preference_record_problem(pair)
    if problem is not None:
        raise Reject(problem)
    return normalize_preference(pair)
