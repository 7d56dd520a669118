"""Issue 21's hidden check, run as a user would: every bad input in its own process, then two runs of one stage.

    python bench/hostile_inputs.py          # about 20 processes on the tiny test model; prints a table

Each case is one of tests/test_hostile_inputs.py (the same inputs, there run in-process). Here each runs as a real
`python -m alignpipe.cli ...` or `python -m data_prep ...` process from a scratch folder, and the table shows its
exit code, whether a traceback was printed, and every path created outside run.output_root (a private folder around
the scratch folder is compared before and after). Then: a 50 MB single-line data file with the default limit (how long
until the error), and two `alignpipe sft` of one run.name started a second apart (their exit codes).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from bench import build_tiny_model  # noqa: E402  (bench/ is on sys.path when run as a script)
from conftest import tiny_recipe_text  # noqa: E402
from test_hostile_inputs import CASE_NAMES, cases  # noqa: E402

ENV = {**os.environ, "PYTHONPATH": str(REPO), "TOKENIZERS_PARALLELISM": "false"}


def run(module: str, argv: list[str], cwd: Path) -> tuple[int, str, float]:
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", module, *argv], cwd=cwd, env=ENV, capture_output=True, text=True)
    return result.returncode, result.stderr, time.perf_counter() - started


def listing(folder: Path, output_root: Path) -> set[Path]:
    return {path for path in folder.rglob("*") if not path.is_relative_to(output_root)}


def main() -> None:
    outer = Path(tempfile.mkdtemp(prefix="hostile-"))  # private: watched for anything written outside the root
    scratch = outer / "scratch"
    work = scratch / "work"
    work.mkdir(parents=True)
    model_dir, data_dir = build_tiny_model(scratch)
    recipe = work / "tiny.yaml"
    recipe.write_text(tiny_recipe_text(work, Path(model_dir), data_dir / "sft_train.jsonl",
                                       data_dir / "sft_train.jsonl"), encoding="utf-8")
    output_root = work / "runs"
    print("| input | exit | traceback | created outside run.output_root | seconds | message |\n|---|---|---|---|---|---|")
    inputs = cases(work, recipe)  # writes the bad files into the scratch folder
    for name in CASE_NAMES:
        which, argv, expected = inputs[name]
        before = listing(outer, output_root)
        code, err, seconds = run("alignpipe.cli" if which == "alignpipe" else "data_prep", argv, work)
        created = sorted(str(path.relative_to(outer)) for path in listing(outer, output_root) - before)
        message = err.strip().splitlines()[-1][:110] if err.strip() else ""
        ok = "" if code == 2 and "Traceback" not in err and expected in err and not created else " **FAIL**"
        print(f"| {name}{ok} | {code} | {'yes' if 'Traceback' in err else 'no'} | {created or 'nothing'} | "
              f"{seconds:.1f} | {message.replace('|', '/')} |", flush=True)

    huge = work / "huge.jsonl"
    huge.write_bytes(b'{"text": "' + b"x" * 50_000_000 + b'"}\n')
    small = work / "small_bad.jsonl"
    small.write_bytes(b"{broken\n")
    for label, path in (("50 MB line, default data.max_line_bytes", huge), ("for comparison, a short bad line", small)):
        code, err, seconds = run("alignpipe.cli", ["sft", str(recipe), f"data.train={path}"], work)
        print(f"\n{label}: exit {code} after {seconds:.1f} s (the whole process): {err.strip().splitlines()[-1][:150]}")

    command = [sys.executable, "-m", "alignpipe.cli", "sft", str(recipe), "run.name=race", "train.max_steps=60",
               "train.batch_size=1"]
    first = subprocess.Popen(command, cwd=work, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    second = subprocess.Popen(command, cwd=work, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for label, process in (("first", first), ("second (1 s later)", second)):
        code = process.wait()
        last = process.stderr.read().strip().splitlines()
        print(f"two runs of one stage: {label} pid {process.pid} exit {code}"
              + (f": {last[-1][:200]}" if code else ""))
    print(f"\nscratch folder: {outer}")


if __name__ == "__main__":
    main()
