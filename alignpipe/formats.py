"""Dataset layouts -> alignpipe's records: one converter per layout, used by the stages (alignpipe.data, row by
row as the data is read) and by `python -m data_prep convert` (which writes the result to a file).

| layout            | columns it reads                                           | becomes                   |
|-------------------|------------------------------------------------------------|---------------------------|
| messages          | messages (TRL conversational)                              | {"messages": [...]}       |
| sharegpt          | conversations: [{from: human/gpt/system, value}], system?  | {"messages": [...]}       |
| alpaca            | instruction, input?, output, system?                       | {"messages": [...]}       |
| prompt-completion | prompt, completion (strings or message lists)              | {"messages": [...]}       |
| text              | text                                                       | {"text": ...}             |
| preference        | prompt?, chosen, rejected (strings, messages, or TRL's implicit prompt), margin? | {"prompt", "chosen", "rejected"(, "margin")} |
| hh-rlhf           | chosen, rejected ("\\n\\nHuman: ... \\n\\nAssistant: ..." transcripts) | {"prompt", "chosen", "rejected"} |
| kto               | prompt, completion, label                                  | {"prompt", "completion", "label"} |
| prompt            | prompt                                                     | {"prompt": [...]}         |

A row that cannot be converted raises RowProblem with the reason; the caller names the row (file:line or
split[row]) and stops, skips it, or writes it to a rejects file. Cells of a CSV that hold JSON (a messages list)
are decoded. `detect_layout` picks the layout from a row's columns, among the layouts the caller can use.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from alignpipe.errors import AlignpipeError
from alignpipe.record_checks import (  # noqa: F401  (Invalid, ROLES: re-exported for data_prep)
    ROLES,
    Invalid,
    normalize_preference,
    preference_record_problem,
    record_problem,
)

LAYOUTS = ("messages", "sharegpt", "alpaca", "prompt-completion", "text", "preference", "hh-rlhf", "kto", "prompt")
# The columns without which a row is not of the layout (the others are optional).
REQUIRED_COLUMNS = {
    "messages": ("messages",),
    "sharegpt": ("conversations",),
    "alpaca": ("instruction", "output"),
    "prompt-completion": ("prompt", "completion"),
    "text": ("text",),
    "preference": ("chosen", "rejected"),
    "hh-rlhf": ("chosen", "rejected"),
    "kto": ("prompt", "completion", "label"),
    "prompt": ("prompt",),
}
OPTIONAL_COLUMNS = {"sharegpt": ("system",), "alpaca": ("input", "system"), "preference": ("prompt", "margin")}
COLUMN_NAMES = sorted({name for names in (*REQUIRED_COLUMNS.values(), *OPTIONAL_COLUMNS.values()) for name in names})
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "model": "assistant",
                  "system": "system"}
_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):")


class RowProblem(Exception):
    """A row that cannot be converted: `kind` groups counts and rejects, `reason` says why."""

    def __init__(self, reason: str, kind: str = "malformed") -> None:
        super().__init__(reason)
        self.kind, self.reason = kind, reason


class LayoutError(AlignpipeError):
    """The data's layout cannot be used: unknown, ambiguous, mixed, or not one the stage trains on."""


# --- layout detection ---------------------------------------------------------------------------------------

def columns_of(row: Any) -> list[str]:
    """The columns a row fills: keys with a value (Parquet and Arrow rows hold None for absent cells)."""
    return [key for key, value in row.items() if value is not None] if isinstance(row, Mapping) else []


def matching_layouts(row: Any) -> list[str]:
    """Every layout whose required columns the row fills. `prompt` alone matches last: most layouts have one."""
    columns = set(columns_of(row))
    found = [layout for layout in LAYOUTS if set(REQUIRED_COLUMNS[layout]) <= columns]
    if columns & {"chosen", "rejected", "completion"} and "prompt" in found:
        found.remove("prompt")  # a prompt with half a pair is a broken pair, not a prompt-only row
    if "kto" in found:
        found.remove("prompt-completion")  # a label makes prompt + completion a KTO example
    pairs = [layout for layout in ("preference", "hh-rlhf") if layout in found]
    if pairs:  # one of the two, by what the cells hold
        found = [layout for layout in found if layout not in pairs]
        found.append("hh-rlhf" if _is_hh_transcript(row.get("chosen")) and "prompt" not in columns else "preference")
    if len(found) > 1 and "prompt" in found:
        found.remove("prompt")
    return found


def _is_hh_transcript(value: Any) -> bool:
    return isinstance(value, str) and ("\n\nHuman:" in value or value.startswith("Human:"))


# Where data of a layout belongs, for a stage that cannot use it.
BELONGS = {"prompt": "Prompts alone suit online RL (rlhf.algorithm=grpo or rloo).",
           "text": "Raw text trains the sft stage only (continued pretraining)."}


def belongs_note(layouts: list[str]) -> str:
    return "".join(f" {BELONGS[layout]}" for layout in layouts if layout in BELONGS)


def detect_layout(rows: list[tuple[str, Any]], usable: tuple[str, ...], source: str, needs: str = "") -> str:
    """The one layout of the first rows (where, row) among `usable`. A row that fits no layout is left to be
    reported as a bad row (data.skip_invalid may skip it); ambiguous rows, several layouts, or only layouts the
    caller cannot use are errors naming the columns seen and the layouts known. `needs` says what the caller
    trains on."""
    per_row, unusable, unknown = [], None, None
    for where, row in rows:
        if isinstance(row, Invalid):
            continue
        everything = matching_layouts(row)
        candidates = [layout for layout in everything if layout in usable]
        seen = ", ".join(columns_of(row)) or "none"
        if len(candidates) > 1:
            raise LayoutError(f"{where}: cannot tell the layout: a row with the columns {seen} could be "
                              f"{' or '.join(candidates)}. Set data.format to the one you mean.")
        if candidates:
            per_row.append((where, candidates[0]))
        elif everything:
            unusable = unusable or (where, seen, everything)
        else:
            unknown = unknown or (where, seen)
    if not per_row and unusable:
        where, seen, everything = unusable
        raise LayoutError(f"{where}: the data is in the {' or '.join(everything)} layout (columns: {seen}), which "
                          f"this stage cannot train on: it needs {needs or 'one of'} ({', '.join(usable)})."
                          + belongs_note(everything))
    if not per_row:
        where, seen = unknown or (source, "none")
        columns = set(seen.split(", "))
        near = [f"{layout} lacks {', '.join(repr(c) for c in REQUIRED_COLUMNS[layout] if c not in columns)}"
                for layout in usable if columns & set(REQUIRED_COLUMNS[layout])]
        raise LayoutError(f"{where}: cannot tell the layout: a row with the columns {seen} matches none of the "
                          f"layouts this stage reads ({known_layouts(usable)})"
                          + (f"; {'; '.join(near)}" if near else "") + ". Set data.format, and data.columns to "
                          "map other column names (e.g. data.columns={prompt: question, chosen: good}).")
    layouts = dict.fromkeys(layout for _, layout in per_row)
    if len(layouts) > 1:
        first = {layout: where for where, layout in reversed(per_row)}
        raise LayoutError(f"{source} mixes layouts: " + "; ".join(f"{first[layout]} is {layout}" for layout in layouts)
                          + ". Use one layout per file (or set data.format, and the other rows become errors).")
    return per_row[0][1]


def known_layouts(usable: tuple[str, ...]) -> str:
    return "; ".join(f"{layout} ({', '.join(REQUIRED_COLUMNS[layout])})" for layout in usable)


def missing_columns(columns: list[str], layout: str) -> list[str]:
    return [column for column in REQUIRED_COLUMNS[layout] if column not in columns]


def rename_columns(row: Any, columns: dict[str, str]) -> Any:
    """Apply data.columns ({our name: their column}) to one row; other columns are kept as they are."""
    if not columns or not isinstance(row, Mapping):
        return row
    renamed = {key: value for key, value in row.items() if key not in columns.values()}
    renamed.update({ours: row[theirs] for ours, theirs in columns.items() if theirs in row})
    return renamed


# --- one converter per layout -------------------------------------------------------------------------------

def convert_row(row: Any, layout: str) -> dict[str, Any]:
    """The row in alignpipe's record for its layout (table above), checked; raise RowProblem otherwise.
    Only the record's own fields are returned: the caller decides what to do with the row's other columns."""
    if isinstance(row, Invalid):
        raise RowProblem(row.reason, kind="bad_json")
    if not isinstance(row, Mapping):
        raise RowProblem(f"expected an object, got {type(row).__name__}")
    missing = missing_columns(columns_of(row), layout)
    if missing:
        raise RowProblem(f"no {', '.join(repr(column) for column in missing)} for the {layout} layout "
                         f"(this row has {', '.join(columns_of(row)) or 'nothing'})" + _other_layout_hint(row, layout))
    record = CONVERTERS[layout](row)
    problem = record_problem(record)
    if problem is not None:
        raise RowProblem(problem)
    return record


def _other_layout_hint(row: Mapping, layout: str) -> str:
    others = [other for other in matching_layouts(row) if other != layout]
    return f"; it looks like {others[0]} (mixed layouts in one file?)" if others else ""


def from_messages(row: Mapping) -> dict[str, Any]:
    return {"messages": json_cell(row["messages"], "messages")}


def from_sharegpt(row: Mapping) -> dict[str, Any]:
    conversation = json_cell(row["conversations"], "conversations")
    if not isinstance(conversation, list) or not conversation:
        raise RowProblem("'conversations' must be a non-empty list of {from, value}")
    messages = []
    if isinstance(row.get("system"), str) and row["system"].strip():
        messages.append({"role": "system", "content": row["system"]})
    for index, turn in enumerate(conversation):
        if not isinstance(turn, Mapping) or not isinstance(turn.get("value"), str):
            raise RowProblem(f"conversations[{index}] must be an object with a string 'value'")
        role = SHAREGPT_ROLES.get(str(turn.get("from", "")).lower())
        if role is None:
            raise RowProblem(f"conversations[{index}] is from {turn.get('from')!r}; known: {', '.join(SHAREGPT_ROLES)}")
        messages.append({"role": role, "content": turn["value"]})
    return {"messages": messages}


def from_alpaca(row: Mapping) -> dict[str, Any]:
    instruction, extra_input, output = row.get("instruction"), row.get("input") or "", row.get("output")
    if not isinstance(instruction, str) or not instruction.strip():
        raise RowProblem("'instruction' is missing or empty")
    if not isinstance(output, str) or not output.strip():
        raise RowProblem("'output' is missing or empty")
    if not isinstance(extra_input, str):
        raise RowProblem("'input' must be a string")
    user = instruction + ("\n\n" + extra_input if extra_input.strip() else "")
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    if isinstance(row.get("system"), str) and row["system"].strip():
        messages.insert(0, {"role": "system", "content": row["system"]})
    return {"messages": messages}


def from_prompt_completion(row: Mapping) -> dict[str, Any]:
    """TRL's prompt-completion layout as a conversation: the loss falls on the completion (assistant-only loss)."""
    prompt, completion = json_cell(row["prompt"], "prompt"), json_cell(row["completion"], "completion")
    return {"messages": as_messages(prompt, "user") + as_messages(completion, "assistant")}


def from_text(row: Mapping) -> dict[str, Any]:
    return {"text": row["text"]}


def from_preference(row: Mapping) -> dict[str, Any]:
    keys = ("prompt", "chosen", "rejected", "margin")
    pair = {key: json_cell(row[key], key) for key in keys if row.get(key) is not None}
    if isinstance(pair.get("margin"), str):
        try:
            pair["margin"] = float(pair["margin"])
        except ValueError:
            raise RowProblem("'margin' must be a number") from None
    problem = preference_record_problem(pair)
    if problem is not None:
        raise RowProblem(problem)
    return normalize_preference(pair)


def from_hh_rlhf(row: Mapping) -> dict[str, Any]:
    if not isinstance(row.get("chosen"), str) or not isinstance(row.get("rejected"), str):
        raise RowProblem("'chosen' and 'rejected' must be transcript strings")
    chosen, rejected = parse_hh_transcript(row["chosen"]), parse_hh_transcript(row["rejected"])
    for name, turns in (("chosen", chosen), ("rejected", rejected)):
        if turns[-1]["role"] != "assistant":
            raise RowProblem(f"'{name}' does not end with an Assistant turn")
        if not turns[-1]["content"].strip():
            raise RowProblem(f"'{name}' ends with an empty Assistant turn")
    if chosen[:-1] != rejected[:-1]:
        raise RowProblem("chosen and rejected transcripts differ before their final Assistant turn")
    return {"prompt": chosen[:-1], "chosen": chosen[-1:], "rejected": rejected[-1:]}


def from_kto(row: Mapping) -> dict[str, Any]:
    prompt, completion = json_cell(row["prompt"], "prompt"), json_cell(row["completion"], "completion")
    label = row["label"]
    if isinstance(label, str) and label.strip().lower() in ("true", "false", "1", "0"):  # a CSV cell
        label = label.strip().lower() in ("true", "1")
    elif isinstance(label, int) and not isinstance(label, bool) and label in (0, 1):
        label = bool(label)
    if not isinstance(label, bool):
        raise RowProblem("'label' must be true (desirable) or false (undesirable)")
    return {"prompt": as_messages(prompt, "user"), "completion": as_messages(completion, "assistant"), "label": label}


def from_prompt(row: Mapping) -> dict[str, Any]:
    return {"prompt": as_messages(json_cell(row["prompt"], "prompt"), "user")}


CONVERTERS = {"messages": from_messages, "sharegpt": from_sharegpt, "alpaca": from_alpaca,
              "prompt-completion": from_prompt_completion, "text": from_text, "preference": from_preference,
              "hh-rlhf": from_hh_rlhf, "kto": from_kto, "prompt": from_prompt}


def json_cell(value: Any, name: str) -> Any:
    """A list as it is; a CSV cell holding JSON text (a list of messages) decoded."""
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise RowProblem(f"'{name}' holds invalid JSON ({error.msg})") from None
    return value


def as_messages(value: Any, role: str) -> Any:
    return [{"role": role, "content": value}] if isinstance(value, str) else value


def parse_hh_transcript(transcript: str) -> list[dict[str, str]]:
    """An HH-RLHF transcript as messages. The one space after "Human:"/"Assistant:" is the separator, so
    render_hh_transcript(parse_hh_transcript(t)) == t for every well-formed transcript."""
    parts = _HH_TURN.split(transcript)
    if parts[0].strip():
        raise RowProblem("text before the first 'Human:' turn")
    if len(parts) < 3:
        raise RowProblem("no '\\n\\nHuman:' / '\\n\\nAssistant:' turns found")
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2]):
        role = "user" if speaker == "Human" else "assistant"
        messages.append({"role": role, "content": content[1:] if content.startswith(" ") else content})
    return messages


def render_hh_transcript(messages: list[dict[str, str]]) -> str:
    speaker = {"user": "Human", "assistant": "Assistant"}
    return "".join(f"\n\n{speaker[m['role']]}: {m['content']}" for m in messages)
