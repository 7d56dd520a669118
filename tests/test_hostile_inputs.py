"""Hostile input through the real command lines (issue 21): every user error exits 2 with one message and no
traceback, and nothing is written outside run.output_root (nothing at all, for errors found before a stage starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignpipe import cli
from conftest import separable_pairs, support_conversations, write_jsonl
from data_prep.__main__ import main as data_prep_main

GOOD_LINE = b'{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n'


def bad_bytes(path: Path, *lines: bytes) -> Path:
    path.write_bytes(b"".join(lines))
    return path


def cases(tmp: Path, recipe: Path) -> dict[str, tuple[str, list[str], str]]:
    """name -> (which command line, arguments, what the message must say)."""
    invalid_utf8 = bad_bytes(tmp / "latin1.jsonl", GOOD_LINE, b'{"text": "caf\xe9"}\n')
    only_invalid = bad_bytes(tmp / "only_bad.jsonl", b'{"text": "caf\xe9"}\n', b"\xff\xfe\n")
    nested = bad_bytes(tmp / "nested.jsonl", GOOD_LINE, b"[" * 100_000 + b"]" * 100_000 + b"\n")
    long_line = bad_bytes(tmp / "long.jsonl", GOOD_LINE, b'{"text": "' + b"x" * 5000 + b'"}\n')
    binary_recipe = bad_bytes(tmp / "binary.yaml", bytes(range(256)) * 8)
    empty_recipe = bad_bytes(tmp / "empty.yaml", b"")
    a_file = bad_bytes(tmp / "a_file", b"not a folder")
    same = write_jsonl(tmp / "same.jsonl", [{**pair, "rejected": pair["chosen"]} for pair in separable_pairs(4)])
    english = write_jsonl(tmp / "english.jsonl", support_conversations(4)[:2])
    (tmp / "data_folder").mkdir()
    out = str(tmp / "out" / "o.jsonl")
    sft = ["sft", str(recipe)]
    return {
        "name escapes with ..": ("alignpipe", [*sft, "run.name=../../escape"], "one folder name"),
        "name is absolute": ("alignpipe", [*sft, f"run.name={tmp / 'abs-run'}"], "not absolute"),
        "output root is a file": ("alignpipe", [*sft, f"run.output_root={a_file}"], "is a file, not a directory"),
        "stage data not UTF-8": ("alignpipe", [*sft, f"data.train={invalid_utf8}"], f"{invalid_utf8}:2: not UTF-8"),
        "stage data not UTF-8, skipped": ("alignpipe", [*sft, f"data.train={only_invalid}", "data.skip_invalid=true"],
                                          "no usable examples"),
        "stage data nested 100000 deep": ("alignpipe", [*sft, f"data.train={nested}"], f"{nested}:2: JSON nested deeper"),
        "stage data line too long": ("alignpipe", [*sft, f"data.train={long_line}", "data.max_line_bytes=1000"],
                                     f"{long_line}:2: line of 5012 bytes"),
        "data path is a directory": ("alignpipe", [*sft, f"data.train={tmp / 'data_folder'}"], "is a directory, not a data file"),
        "binary recipe": ("alignpipe", ["sft", str(binary_recipe)], f"Recipe {binary_recipe} is not UTF-8 text"),
        "empty recipe": ("alignpipe", ["sft", str(empty_recipe), "--dry-run"], "needs at least data.train"),
        "max_steps=0": ("alignpipe", [*sft, "train.max_steps=0"], "at least 1, or -1"),
        "unknown optimizer": ("alignpipe", [*sft, "train.optimizer=bogus"], "train.optimizer: unknown name 'bogus'"),
        "unknown scheduler": ("alignpipe", [*sft, "train.lr_scheduler=bogus"], "train.lr_scheduler: unknown name"),
        "missing model path": ("alignpipe", [*sft, "model.base=/no/such/model"], "no such model directory: /no/such/model"),
        "KTO with identical pairs": ("alignpipe", ["rlhf", str(recipe), "rlhf.algorithm=kto", "rlhf.parent=none",
                                                   f"data.train={same}"], "'chosen' equals 'rejected'"),
        "score not UTF-8": ("alignpipe", ["score", "toxicity", "--input", str(invalid_utf8), "--output", out],
                            f"{invalid_utf8}:2: not UTF-8"),
        "data_prep not UTF-8": ("data_prep", ["convert", "--format", "messages", str(invalid_utf8), out],
                                f"{invalid_utf8}:2: not UTF-8"),
        "data_prep not UTF-8, skipped": ("data_prep", ["pii", "--skip-bad-lines", str(only_invalid), out],
                                         "every line of it is a bad line"),
        "data_prep nested": ("data_prep", ["dedup", str(nested), out], f"{nested}:2: JSON nested deeper"),
        "filter keeps nothing": ("data_prep", ["filter", "--lang", "xx", str(english), out], "kept none of the 2"),
    }


CASE_NAMES = [
    "name escapes with ..", "name is absolute", "output root is a file", "stage data not UTF-8",
    "stage data not UTF-8, skipped", "stage data nested 100000 deep", "stage data line too long",
    "data path is a directory", "binary recipe", "empty recipe", "max_steps=0", "unknown optimizer",
    "unknown scheduler", "missing model path", "KTO with identical pairs", "score not UTF-8", "data_prep not UTF-8",
    "data_prep not UTF-8, skipped", "data_prep nested", "filter keeps nothing",
]


def listing(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*")}


@pytest.mark.parametrize("case", CASE_NAMES)
def test_every_hostile_input_exits_2_without_traceback_and_writes_nothing(case, tiny_recipe, tmp_path, capsys):
    which, argv, expected = cases(tmp_path, tiny_recipe)[case]
    before = listing(tmp_path.parent)
    code = (cli.main if which == "alignpipe" else data_prep_main)(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.count("error:") == 1 and expected in err, err
    assert listing(tmp_path.parent) == before  # not even an empty run folder, in or out of the output root


def test_a_failure_after_the_stage_started_ends_failed_and_releases_the_lock(tiny_recipe, monkeypatch):
    """What validation cannot foresee (here: a trainer that breaks) leaves the stage `failed` with the message."""
    import json

    from alignpipe.stages import sft

    def broken_trainer(**kwargs):
        raise ValueError("the trainer refused a setting")

    monkeypatch.setattr(sft, "SFTTrainer", broken_trainer)
    with pytest.raises(ValueError):  # a crash (exit 1, traceback), not a user error
        cli.main(["sft", str(tiny_recipe), "train.max_steps=1"])
    stage_dir = tiny_recipe.parent / "runs" / "tiny" / "sft"
    manifest = json.loads((stage_dir / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"] == "ValueError: the trainer refused a setting"
    assert not (stage_dir / "alignpipe.lock").exists()
