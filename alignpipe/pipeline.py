"""The pipeline's order for one stage command: resolve the recipe, train the stage, gate it, turn the verdict into
the exit code. The CLI (cli.py) only parses arguments and calls `run_stage`.

    alignpipe sft recipes/demo.yaml      # -> run_stage("sft", ["recipes/demo.yaml"], ...)

Exit codes of every command (README): 0 done (a stage: promoted), 2 a user error, 3 the stage's gate blocked it,
1 an unexpected crash (a traceback, please report it).
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from alignpipe.errors import AlignpipeError

if TYPE_CHECKING:  # the config (pydantic) loads only when a command needs it
    from alignpipe.config import Recipe

DEFAULT_RECIPE = "recipes/demo.yaml"
EXIT_OK, EXIT_USER_ERROR, EXIT_BLOCKED = 0, 2, 3


def split_recipe_and_overrides(items: list[str]) -> tuple[str, list[str]]:
    """`[RECIPE] [key=value ...]`: the recipe is the first item unless it is an override. Without one, the demo:
    recipes/demo.yaml in a checkout, else the copy inside the installed package."""
    if items and "=" not in items[0]:
        return items[0], items[1:]
    if Path(DEFAULT_RECIPE).is_file():
        return DEFAULT_RECIPE, items
    return packaged_demo_recipe(items)


def packaged_demo_recipe(overrides: list[str]) -> tuple[str, list[str]]:
    """The demo recipe and data that ship in alignpipe/resources/demo/ (a checkout's layout: recipes/, data/demo/),
    for a pip-installed alignpipe run outside a checkout. Its data paths are relative to that folder, so they go in
    as overrides (printed with the resolved recipe and recorded in the manifest); the user's overrides still win."""
    from importlib.resources import files

    from alignpipe.recipe_loading import read_yaml

    root = Path(str(files("alignpipe") / "resources" / "demo"))
    recipe = root / DEFAULT_RECIPE

    def data_paths(tree: dict, prefix: str = "") -> list[str]:
        found = []
        for key, value in tree.items():
            if isinstance(value, dict):
                found += data_paths(value, f"{prefix}{key}.")
            elif isinstance(value, str) and value.startswith("data/") and (root / value).is_file():
                found.append(f"{prefix}{key}={root / value}")
        return found

    print(f"No {DEFAULT_RECIPE} in {Path.cwd()}: the demo recipe that ships with alignpipe ({recipe}), "
          f"its data under {root / 'data'}.", flush=True)
    return str(recipe), data_paths(read_yaml(recipe)) + overrides


def run_stage(stage: str, items: list[str], dry_run: bool, force: bool, nproc: int = 1, break_lock: bool = False) -> int:
    """Recipe -> checks that need nothing loaded -> (N processes, or a dry run) -> stage -> gate -> exit code."""
    from alignpipe import runs
    from alignpipe.recipe_loading import load_recipe, missing_required_keys, recipe_as_yaml
    from alignpipe.runs import MANIFEST, is_main_process, read_manifest, stage_dir_for, world_size
    from alignpipe.stage_lock import release_stage_locks

    recipe_path, overrides = split_recipe_and_overrides(items)
    flags = (["run.force=true"] if force else []) + (["run.break_lock=true"] if break_lock else [])
    recipe = load_recipe(recipe_path, stage, overrides + flags)
    # Checked before anything loads, and by --dry-run: where the run goes, and what it cannot start without.
    problems = missing_required_keys(recipe)
    if problems:
        raise AlignpipeError(f"Invalid recipe {recipe_path} for the {stage} stage:\n  " + "\n  ".join(problems))
    runs.check_output_root(recipe)
    runs.stage_dir_for(recipe, stage)
    from alignpipe.embedded import embedded_model, is_embedded

    if is_embedded(recipe.model.base):
        embedded_model(recipe.model.base)  # an unknown embedded name fails here, before anything loads
    else:
        from alignpipe.models import check_model_reference

        check_model_reference(recipe.model.base)
    if is_main_process():
        print(f"# alignpipe {stage}: resolved recipe from {recipe_path}\n{recipe_as_yaml(recipe, stage)}", flush=True)
    if nproc < 1:
        raise AlignpipeError(f"--nproc must be at least 1, not {nproc}")
    if nproc > 1 and world_size() == 1 and not dry_run:  # not yet launched: launch N copies of this command
        from alignpipe.launch import launch_stage

        code = launch_stage(stage, items + (["run.break_lock=true"] if break_lock else []), force, nproc,
                            recipe.run.accelerate_config)
        # Rank 0's exit code 3 reaches us through accelerate as a failure: the manifest says what happened.
        manifest = stage_dir_for(recipe, stage) / MANIFEST
        blocked = manifest.is_file() and read_manifest(manifest.parent).get("status") == "blocked"
        return EXIT_BLOCKED if code != 0 and blocked else code
    if dry_run:
        print_dry_run(recipe, nproc)
        return EXIT_OK
    from alignpipe.gate.gate import gate_stage
    from alignpipe.gate_standing import record_gate_skipped
    from alignpipe.stages import rlhf, rm, sft

    try:
        stage_dir = {"sft": sft.run, "rm": rm.run, "rlhf": rlhf.run}[stage](recipe)
        if not is_main_process():
            return EXIT_OK  # rank 0 gates the stage once
        # The gate runs after the stage's function returned (the trainer's model is freed before it loads its own),
        # with the stage's own typed settings.
        if not recipe.gate.enabled:
            record_gate_skipped(stage_dir)
            print(f"WARNING: gate.enabled=false: {stage_dir} stays `trained` (verdict skipped), unchecked. A next "
                  f"stage builds on it only with --force (recorded); `alignpipe gate {stage_dir}` gates it.", flush=True)
            return EXIT_OK
        return EXIT_BLOCKED if gate_stage(stage_dir, recipe.gate) == "block" else EXIT_OK
    except BaseException as error:  # whatever failed after the stage directory was taken: it ends `failed`, not `running`
        runs.record_failure(runs.stage_dir_for(recipe, stage), error)
        raise
    finally:
        release_stage_locks()  # the stage and its gate wrote under one lock


def print_dry_run(recipe: Recipe, nproc: int) -> None:
    if nproc > 1:
        from alignpipe.launch import accelerate_config_file

        print(f"--nproc {nproc}: would launch through {accelerate_config_file(recipe.run.accelerate_config)}")
    from alignpipe.data import describe_sources

    print("\n".join(describe_sources(recipe.data)))
    print("Dry run: recipe is valid; nothing loaded.")


def regate(stage_dir: Path, overrides: list[str], break_lock: bool) -> int:
    """`alignpipe gate DIR [gate.KEY=VALUE ...]`: the stage's own gate settings with the overrides, under its lock."""
    from alignpipe.recipe_loading import regate_settings
    from alignpipe.gate.gate import gate_stage
    from alignpipe.runs import read_manifest
    from alignpipe.stage_lock import stage_lock

    settings = regate_settings(read_manifest(stage_dir)["recipe"], overrides)
    with stage_lock(stage_dir, break_lock):  # one writer: not while the stage or another gate runs
        verdict = gate_stage(stage_dir, settings)
    return EXIT_BLOCKED if verdict == "block" else EXIT_OK


def warn_if_not_promoted(stage_dir: Path) -> None:
    """Looking at a blocked or ungated stage is allowed (people need to), with one line saying what it is."""
    from alignpipe.runs import MANIFEST, read_manifest

    if not (stage_dir / MANIFEST).is_file():
        return  # a merged export: its model card tells its verdicts
    manifest = read_manifest(stage_dir)
    if manifest.get("status") != "promoted":
        report = (manifest.get("gate") or {}).get("report")
        print(f"warning: {stage_dir} is {manifest.get('status')}, not promoted by the safety gate"
              + (f" (report: {report})" if report else ""), file=sys.stderr)


def quiet_libraries() -> None:
    """Keep the training progress bar and our messages; drop library chatter that says nothing to a user."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers 5 renames, TRL-internal
    # bitsandbytes looks for optional CPU kernels on the hub at import and logs that it cannot fetch them.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def stop_cleanly_on_sigterm() -> None:
    """`kill PID` (SIGTERM) unwinds like an error: the stage is marked failed and its lock released. Only kill -9 can
    leave a `running` stage and a stale lock behind (the next run names it; --break-lock takes it over)."""
    import signal
    import threading

    def stop(signal_number: int, frame: object) -> None:
        raise SystemExit(128 + signal_number)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)
