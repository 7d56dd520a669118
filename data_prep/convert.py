"""`convert`: common dataset layouts -> our JSONL formats (docs/design.md section 3), with the converters the stages use.

Each layout has one converter, in `alignpipe.formats` (its table lists the columns each reads and what it becomes);
a stage reads the same layouts directly (`data.format`), so converting first is only needed to inspect, clean or
merge the data. `pairs` is the earlier name of the `preference` layout; `auto` detects the layout from the first
record. Every other field of a record (ids, metadata) is kept as it is. A record that cannot be converted goes to
the rejects file with the reason; pairs whose chosen equals rejected teach nothing and are rejected as
`identical_pair`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignpipe import formats
from alignpipe.errors import AlignpipeError
from alignpipe.formats import RowProblem as Reject
from alignpipe.formats import parse_hh_transcript, render_hh_transcript  # noqa: F401  (re-exported)
from data_prep.records import JsonlWriter, Record, Rejects, iter_records, run_streaming

ALIASES = {"pairs": "preference"}
FORMATS = (*formats.LAYOUTS, *ALIASES, "auto")


def convert_file(input_path: str | Path, output_path: str | Path, input_format: str, text_field: str = "text",
                 rejects_path: str | Path | None = None, skip_bad_lines: bool = False) -> dict[str, Any]:
    """Convert a file; returns the summary (counts written and rejected by kind)."""
    if input_format not in FORMATS:
        raise AlignpipeError(f"Unknown --format {input_format!r}; choose one of {', '.join(FORMATS)}.")
    layout = ALIASES.get(input_format, input_format)

    def body(writer: JsonlWriter, rejects: Rejects) -> dict[str, Any]:
        nonlocal layout
        read = 0
        for record in iter_records(input_path, rejects if skip_bad_lines else None):
            read += 1
            if read == 1:
                layout = check_columns(record, layout, text_field)
            try:
                writer.write(convert_record(record.data, layout, text_field))
            except Reject as reject:
                rejects.add(record, reject.kind, reject.reason)
        return {"read": read, "layout": layout}

    return run_streaming(output_path, rejects_path, body)


def check_columns(first: Record, layout: str, text_field: str) -> str:
    """The layout to use: a file whose first record lacks the layout's columns is the wrong format or the wrong
    file, so stop early; `auto` becomes the layout the first record shows."""
    data = formats.rename_columns(first.data, text_columns(layout, text_field))
    if layout == "auto":
        return formats.detect_layout([(first.where, data)], formats.LAYOUTS, first.source)
    columns = list(data) if isinstance(data, dict) else []
    missing = formats.missing_columns(formats.columns_of(data), layout)
    if not missing:
        return layout
    required = (text_field,) if layout == "text" else formats.REQUIRED_COLUMNS[layout]
    guesses = [name for name in formats.matching_layouts(data) if name != layout]
    hint = f" Did you mean --format {guesses[0]}?" if guesses else ""
    raise AlignpipeError(f"{first.where}: --format {layout} needs the column(s) {', '.join(required)}; "
                         f"this record has {', '.join(columns) or 'none'}.{hint}")


def text_columns(layout: str, text_field: str) -> dict[str, str]:
    return {"text": text_field} if layout == "text" and text_field != "text" else {}


def convert_record(data: Any, layout: str, text_field: str = "text") -> dict[str, Any]:
    """One record in our format (extra fields kept), or raise Reject."""
    converted = formats.convert_row(formats.rename_columns(data, text_columns(layout, text_field)), layout)
    if "chosen" in converted and converted["chosen"] == converted["rejected"]:
        raise Reject("chosen equals rejected: the pair teaches nothing", kind="identical_pair")
    used = {*formats.REQUIRED_COLUMNS[layout], *formats.OPTIONAL_COLUMNS.get(layout, ()), text_field}
    extras = {key: value for key, value in data.items() if key not in used and key not in converted}
    return {**converted, **extras}
