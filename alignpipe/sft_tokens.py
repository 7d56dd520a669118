"""SFT records -> token ids and the assistant-only loss mask the trainer uses, rendered by the tokenizer's chat
template exactly as generation renders a prompt (the template check, template_check.py, holds both to that).
Raw text gets EOS appended and is cut into windows of train.max_length tokens."""

from __future__ import annotations

import uuid
from typing import Any

from datasets import Dataset

from alignpipe.errors import AlignpipeError


def tokenize_sft(records: Dataset | list[dict[str, Any]], tokenizer: Any, assistant_only_loss: bool,
                 max_length: int | None = None) -> Dataset:
    """Token ids plus, for conversations, an `assistant_masks` column that TRL turns into labels. Raw text longer
    than `max_length` tokens is cut into windows of `max_length` (continued pretraining learns every token of a long
    document; the trainer would otherwise truncate it and drop the rest).

    We build the mask ourselves rather than through `{% generation %}` template markers, which most chat templates
    (the embedded model's included) lack: an assistant turn is the text between the rendering of the conversation
    up to the turn's generation prompt and the rendering that includes the turn. This works for every template that
    renders a conversation's prefix as a prefix of the whole, which generation itself relies on.
    """
    if isinstance(records, list):
        records = Dataset.from_list(records)
    def tokenize_batch(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        rows = [tokenize_sft_record(dict(zip(batch, values)), tokenizer, assistant_only_loss)
                for values in zip(*batch.values())]
        rows = [window for row in rows for window in text_windows(row, max_length)]
        return {key: [row[key] for row in rows] for key in rows[0]}

    # map writes the tokens batch by batch next to the loaded data (no list of every row in memory); the
    # fingerprint is given so that datasets does not hash the tokenizer to name its cache file.
    return records.map(tokenize_batch, batched=True, remove_columns=records.column_names,
                       new_fingerprint=uuid.uuid4().hex)


def text_windows(row: dict[str, list[int]], max_length: int | None) -> list[dict[str, list[int]]]:
    """A raw-text row as windows of at most max_length tokens (the last one ends with the document's EOS)."""
    ids = row["input_ids"]
    if "assistant_masks" in row or max_length is None or len(ids) <= max_length:
        return [row]
    return [{"input_ids": ids[start:start + max_length]} for start in range(0, len(ids), max_length)]


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
