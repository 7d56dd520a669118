"""Where data comes from: local files of the common types, `datasets` folders and hub ids, read one row at a
time so that memory stays bounded, each row named for error messages.

| data.train / data.eval                               | read as                                      | a row is named |
|------------------------------------------------------|----------------------------------------------|----------------|
| .jsonl, .jsonl.gz, .ndjson, a .json of JSON lines    | JSON lines (read by alignpipe.data)          | file:line      |
| .json holding an array                               | element by element, from 1 MiB chunks        | file:line      |
| .csv, .tsv                                           | rows; quoted fields may span lines           | file:line where the row starts |
| .parquet                                             | 1024-row batches                             | file[row]      |
| a `datasets.save_to_disk` folder                     | memory-mapped Arrow; data.split picks a split | folder:split[row] |
| a folder of Parquet files (a hub snapshot, shards)   | file by file                                 | file[row]      |
| a hub id `org/name`                                  | `datasets.load_dataset` (its cache, memory-mapped) with data.split, data.subset, data.revision | org/name:split[row] |

Rows are numbered from 0 where they are indexed (`dataset[row]` finds the row), lines from 1.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignpipe.errors import AlignpipeError

JSON_LINES_SUFFIXES = (".jsonl", ".ndjson")
FILE_SUFFIXES = (*JSON_LINES_SUFFIXES, ".json", ".csv", ".tsv", ".parquet")
SUPPORTED = ".jsonl, .json, .parquet, .csv, .tsv, a datasets.save_to_disk folder, a folder of Parquet files, or a hub id"
HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


class Record:
    """One row and where it came from: `line` is the line (JSONL/JSON/CSV) or, when `indexed`, the row number."""

    __slots__ = ("data", "indexed", "line", "source")

    def __init__(self, source: str, line: int, data: Any, indexed: bool = False) -> None:
        self.source, self.line, self.data, self.indexed = source, line, data, indexed

    @property
    def where(self) -> str:
        return f"{self.source}[{self.line}]" if self.indexed else f"{self.source}:{self.line}"


@dataclass(frozen=True)
class Source:
    """A resolved data.train / data.eval: `kind` is jsonl, json, csv, tsv, parquet, datasets, parquet-folder or hub."""

    kind: str
    location: str
    split: str | None = None
    subset: str | None = None
    revision: str | None = None

    @property
    def name(self) -> str:
        """How rows of this source are named: the path, or the hub id / folder with the split."""
        return f"{self.location}:{self.split}" if self.kind in ("datasets", "hub") and self.split else self.location


def resolve_source(spec: str, split: str | None = None, subset: str | None = None,
                   revision: str | None = None) -> Source:
    """What `spec` is, from the file system alone (nothing is read or downloaded)."""
    path = Path(spec)
    if path.is_dir():
        if (path / "dataset_dict.json").exists():
            return Source("datasets", spec, split)
        if (path / "state.json").exists():  # one dataset: data.split has nothing to choose
            return Source("datasets", spec)
        if any(path.rglob("*.parquet")):
            return Source("parquet-folder", spec)
        raise AlignpipeError(f"{path} is a directory, not a data file: it holds neither a saved `datasets` dataset nor Parquet files; "
                             f"use {SUPPORTED}.")
    name = path.name.lower()
    if path.is_file():
        if name.endswith(JSON_LINES_SUFFIXES):
            return Source("jsonl", spec)
        if name.endswith(".json"):
            return Source("json" if _first_character(path) == "[" else "jsonl", spec)
        for suffix in (".csv", ".tsv", ".parquet"):
            if name.endswith(suffix):
                return Source(suffix[1:], spec)
        raise AlignpipeError(f"{path}: unsupported input type; use {SUPPORTED}.")
    if HUB_ID.fullmatch(spec) and not name.endswith(FILE_SUFFIXES):
        return Source("hub", spec, split, subset, revision)
    raise AlignpipeError(f"Data file not found: {path}")


def _first_character(path: Path) -> str:
    with path.open(encoding="utf-8-sig", errors="replace") as handle:  # sniffing only: the reader names bad bytes
        while chunk := handle.read(4096):
            if chunk.strip():
                return chunk.strip()[0]
    return ""


def read_rows(source: Source, fingerprint: bool = True) -> tuple[Iterator[Record], dict[str, Any]]:
    """The rows of a source that is not JSON lines, and (unless `fingerprint` is false) its content fingerprint
    for the manifest: the file's sha256, one over a folder's files, or the `datasets` fingerprint."""
    path = Path(source.location)
    if source.kind in ("json", "csv", "tsv", "parquet"):
        readers = {"json": iter_json_array, "csv": iter_csv, "tsv": iter_tsv, "parquet": iter_parquet}
        rows = _text_or_error(path, source.kind, readers[source.kind](path))
        return rows, {"sha256": file_sha256(path)} if fingerprint else {}
    if source.kind == "parquet-folder":
        return iter_parquet_folder(path), {"sha256": folder_sha256(path)} if fingerprint else {}
    if source.kind == "datasets":
        folder = saved_split_folder(source)
        state = json.loads((folder / "state.json").read_text(encoding="utf-8"))
        # A split saved with no rows has no Arrow file, and datasets cannot load it: it has no rows to give.
        rows = iter_dataset(load_saved(folder), source.name) if state.get("_data_files") else iter(())
        return rows, {"datasets_fingerprint": state.get("_fingerprint")}
    dataset, commit = load_hub(source)
    fingerprint = {"datasets_fingerprint": dataset._fingerprint, "resolved_revision": commit}
    return iter_dataset(dataset, source.name), fingerprint


def _text_or_error(path: Path, kind: str, rows: Iterator[Record]) -> Iterator[Record]:
    """Hostile bytes in a file read in whole blocks (JSON arrays, CSV): one clear error, never a traceback."""
    from alignpipe.jsonl_reader import first_undecodable_line

    try:
        yield from rows
    except UnicodeDecodeError:
        line = first_undecodable_line(path) if kind in ("csv", "tsv") else None
        raise AlignpipeError(f"{path}{f':{line}' if line else ''}: not UTF-8 text; a {kind} input must be UTF-8 "
                             "throughout (convert it, e.g. with iconv; JSON lines skip single bad lines).") from None
    except RecursionError:
        raise AlignpipeError(f"{path}: a record is nested too deeply to be data.") from None


def iter_json_array(path: Path) -> Iterator[Record]:
    """A JSON array of objects, decoded one element at a time from 1 MiB chunks (no whole-file load)."""
    decoder = json.JSONDecoder()
    buffer, position, index = "", 0, 0
    line, counted = 1, 0  # `line` is the line number at buffer[counted]
    started = finished = False
    with path.open(encoding="utf-8-sig") as handle:
        while True:
            while position < len(buffer) and buffer[position] in " \t\r\n,":
                position += 1
            value = None
            if position < len(buffer):
                if not started:
                    if buffer[position] != "[":
                        raise AlignpipeError(f"{path}: a .json input must be a JSON array of records ([{{...}}, ...]) "
                                             "or JSON lines (one object a line).")
                    started, position = True, position + 1
                    continue
                if buffer[position] == "]":
                    finished = True
                    break
                try:
                    value, end = decoder.raw_decode(buffer, position)
                except ValueError:  # an element cut by the chunk boundary (or malformed): read more
                    value = None
            if value is None:
                chunk = handle.read(1 << 20)
                if not chunk:
                    break
                line += buffer.count("\n", counted, position)
                buffer, position, counted = buffer[position:] + chunk, 0, 0
                continue
            line += buffer.count("\n", counted, position)
            counted, index = position, index + 1
            yield Record(str(path), line, value)
            position = end
    if started and not finished:
        line += buffer.count("\n", counted, position)
        raise AlignpipeError(f"{path}:{line}: not valid JSON after record {index} (truncated or malformed array).")


def iter_csv(path: Path, delimiter: str = ",") -> Iterator[Record]:
    """Rows of a CSV (or, with a tab, TSV) file with a header, named by the line each row starts on: a quoted
    field may hold line breaks, so a row can span several lines."""
    with path.open(encoding="utf-8-sig", newline="") as handle:  # -sig: the byte-order mark spreadsheets write
        reader = csv.reader(handle, delimiter=delimiter, strict=True)
        start = 1
        try:
            header = next(reader, None)
            if header is None:
                return
            start = reader.line_num + 1
            for cells in reader:
                if cells:
                    if len(cells) > len(header):
                        raise AlignpipeError(f"{path}:{start}: more cells than the header's {len(header)} columns "
                                             f"(an unquoted {'comma' if delimiter == ',' else 'tab'}?).")
                    yield Record(str(path), start, {**dict.fromkeys(header), **dict(zip(header, cells))})
                start = reader.line_num + 1
        except csv.Error as error:  # e.g. a quote never closed: strict mode stops instead of eating the file
            raise AlignpipeError(f"{path}:{start}: not valid CSV ({error}); a quoted field must end with a "
                                 "quote.") from None


def iter_tsv(path: Path) -> Iterator[Record]:
    return iter_csv(path, delimiter="\t")


def iter_parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as error:  # noqa: BLE001  (pyarrow raises several types for a file that is not Parquet)
        raise AlignpipeError(f"{path}: not a readable Parquet file ({error}).") from None
    row = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for data in batch.to_pylist():
            yield Record(str(path), row, data, indexed=True)
            row += 1


def parquet_files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.parquet"))


def iter_parquet_folder(folder: Path) -> Iterator[Record]:
    for parquet_file in parquet_files(folder):
        yield from iter_parquet(parquet_file)


def saved_split_folder(source: Source) -> Path:
    """The folder of one saved dataset: the given one, or the chosen split's folder of a saved DatasetDict."""
    folder = Path(source.location)
    if not (folder / "dataset_dict.json").exists():
        return folder
    splits = json.loads((folder / "dataset_dict.json").read_text(encoding="utf-8"))["splits"]
    return folder / choose_split(splits, source)


def load_saved(folder: Path) -> Any:
    """A `datasets.save_to_disk` folder of one dataset, memory-mapped."""
    from datasets import load_from_disk

    return load_from_disk(str(folder))


def choose_split(splits: list[str], source: Source) -> str:
    """data.split, which must be one of `splits`; it may be left out when there is only one."""
    if source.split is None and len(splits) == 1:
        return splits[0]
    if source.split is None:
        raise AlignpipeError(f"{source.location} holds several splits ({', '.join(splits)}); give one: "
                             f"data.split={splits[0]}, or the split's own folder {Path(source.location) / splits[0]}.")
    if source.split not in splits:
        raise AlignpipeError(f"{source.location} has no split {source.split!r}; it has {', '.join(splits)}.")
    return source.split


def load_hub(source: Source) -> tuple[Any, str | None]:
    """A hub dataset through `datasets.load_dataset` (downloaded once into its cache, then memory-mapped), and
    the commit it was loaded at.

    The hub is asked first for the revision's commit (recorded in the manifest); without network that fails at
    once with a message saying how to use a local copy, instead of datasets' minute of retries.
    """
    from datasets import DatasetDict, load_dataset
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    local_copy = (f"Without network, point data.train at a local copy: on a machine with network run "
                  f"`python -c \"import datasets; datasets.load_dataset('{source.location}'"
                  f"{', ' + repr(source.subset) if source.subset else ''}).save_to_disk('DIR')\"` (or "
                  f"`hf download {source.location} --repo-type dataset --local-dir DIR` for its Parquet files), "
                  "copy DIR here and set data.train=DIR; a dataset already in the local cache loads with "
                  "HF_HUB_OFFLINE=1.")
    commit = None
    if not constants.HF_HUB_OFFLINE:
        try:
            commit = HfApi().dataset_info(source.location, revision=source.revision, timeout=10).sha
        except (RepositoryNotFoundError, RevisionNotFoundError) as error:
            raise AlignpipeError(f"{source.location} is not a local path, nor a dataset on the hub at revision "
                                 f"{source.revision or 'main'} ({type(error).__name__}).") from None
        except Exception as error:  # noqa: BLE001  (no network: the HTTP client's several connection errors)
            raise AlignpipeError(f"{source.location} is not a local path and the hub cannot be reached "
                                 f"({type(error).__name__}: {error}). {local_copy}") from None
    try:
        loaded = load_dataset(source.location, name=source.subset, split=source.split,
                              revision=commit or source.revision)
    except Exception as error:  # noqa: BLE001  (unknown split or subset, an unreachable file: the user's to fix)
        raise AlignpipeError(f"Could not load {source.location} from the hub ({type(error).__name__}: {error}). "
                             f"{local_copy}") from None
    if isinstance(loaded, DatasetDict):
        loaded = loaded[choose_split(list(loaded), source)]
    return loaded, commit or source.revision


def iter_dataset(dataset: Any, name: str) -> Iterator[Record]:
    for row, data in enumerate(dataset):
        yield Record(name, row, data, indexed=True)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_sha256(folder: Path) -> str:
    """One digest for a folder of Parquet files: each file's relative path and sha256, in order."""
    digest = hashlib.sha256()
    for path in parquet_files(folder):
        digest.update(f"{path.relative_to(folder)}\0{file_sha256(path)}\n".encode())
    return digest.hexdigest()
