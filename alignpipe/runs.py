"""Run directories (`<output_root>/<run.name>/<stage>/`), their manifest.json, resume and refusal to overwrite.

Status of a stage: `running` while it trains (a killed run stays `running`), `failed` after an error, `trained`
when training finished; the gate then turns `trained` into `promoted` or `blocked` (with the gate off it stays
`trained`, verdict `skipped`). A stage in a finished status is never overwritten. Every gate run is appended to
`gate.history`; children record the exceptions (forced, overridden) behind their parents in `lineage_exceptions`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from alignpipe.config import Recipe
from alignpipe.errors import AlignpipeError
from alignpipe.gate_standing import parent_standing, require_promoted
from alignpipe.manifests import (  # noqa: F401  (re-exported: runs is where callers find a run's files)
    MANIFEST,
    normalize_modes,
    read_manifest,
    update_manifest,
    write_manifest,
)
from alignpipe.provenance import base_lineage, git_commit, library_versions, now
from alignpipe.ranks import is_main_process, process_rank, wait_for_everyone, world_size  # noqa: F401  (re-exported)
from alignpipe.stage_lock import LOCK, held_by_this_process, lock_refusal, process_alive, read_lock, take_stage_lock

FINISHED_STATUSES = ("trained", "promoted", "blocked")


def stage_dir_for(recipe: Recipe, stage: str) -> Path:
    """`<output_root>/<run.name>/<stage>`, refused when it resolves outside output_root (a symbolic link out)."""
    root = Path(recipe.run.output_root)
    stage_dir = root / recipe.run.name / stage
    inside = stage_dir.resolve()
    if not inside.is_relative_to(root.resolve()):
        raise AlignpipeError(f"{stage_dir} resolves to {inside}, outside run.output_root {root} (through a symbolic "
                             "link); a run writes only inside its output root. Remove the link or change run.output_root.")
    return stage_dir


def refuse_links_out(stage_dir: Path, root: Path) -> None:
    """A stage resumed or moved aside must not write through a symbolic link that leads outside the output root."""
    for folder, names, files in os.walk(stage_dir):  # does not follow links into other folders
        for name in names + files:
            path = Path(folder) / name
            if path.is_symlink() and not path.resolve().is_relative_to(root.resolve()):
                raise AlignpipeError(f"{path} links to {path.resolve()}, outside run.output_root {root}: a run writes "
                                     "only inside its output root. Remove the link.")


def check_output_root(recipe: Recipe) -> None:
    """run.output_root must be a directory, or a path where one can be created: checked before anything loads."""
    root = Path(recipe.run.output_root)
    existing = next((path for path in (root, *root.parents) if path.exists()), Path("."))
    if not existing.is_dir():
        what = "is a file" if existing == root else f"is inside {existing}, a file"
        raise AlignpipeError(f"run.output_root {root} {what}, not a directory; point it at a folder for the runs.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise AlignpipeError(f"run.output_root {root} cannot be written: {existing} is not writable by you.")


def open_stage_dir(recipe: Recipe, stage: str) -> tuple[Path, Path | None]:
    """Take the stage's lock, then create or reopen the directory; return it and the checkpoint to resume from.

    Everything below happens while holding the lock, so a second run of the same stage cannot resume, move aside or
    write over a live one. A finished stage is refused. An interrupted one is resumed (run.resume=true), or its
    contents are moved aside to `<stage>.interrupted-<time>` so that a fresh start overwrites nothing.
    """
    stage_dir = stage_dir_for(recipe, stage)
    take_stage_lock(stage_dir, recipe.run.break_lock)
    refuse_links_out(stage_dir, Path(recipe.run.output_root))
    contents = [path for path in stage_dir.iterdir() if path.name != LOCK]
    if not (stage_dir / MANIFEST).is_file():
        if contents:
            raise AlignpipeError(f"{stage_dir} exists, is not empty and has no {MANIFEST}; move it or pick run.name.")
        return stage_dir, None
    refuse_finished(stage_dir)
    checkpoint = last_checkpoint(stage_dir)
    if recipe.run.resume and checkpoint is not None:
        print(f"Resuming {stage_dir} from {checkpoint.name}", flush=True)
        return stage_dir, checkpoint
    if recipe.run.resume:
        print(f"{stage_dir} was interrupted before its first checkpoint; starting it over.", flush=True)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = stage_dir.with_name(f"{stage_dir.name}.interrupted-{stamp}")
    aside.mkdir()
    for path in contents:  # the lock stays where it is: this run keeps holding it
        path.rename(aside / path.name)
    print(f"Moved the interrupted {stage_dir} to {aside}; starting over.", flush=True)
    return stage_dir, None


def record_failure(stage_dir: Path, error: BaseException) -> None:
    """A stage this process holds that is still `running` after an error becomes `failed`, with the message."""
    if not held_by_this_process(stage_dir / LOCK) or not (stage_dir / MANIFEST).is_file():
        return  # not ours: another run's stage is never touched
    if read_manifest(stage_dir).get("status") == "running":
        update_manifest(stage_dir, status="failed", error=f"{type(error).__name__}: {error}", finished_at=now())


def refuse_finished(stage_dir: Path) -> None:
    """Refuse a finished stage, or one a live process is writing (checked early: the lock itself comes later)."""
    lock = stage_dir / LOCK
    if is_main_process() and lock.is_file() and not held_by_this_process(lock) and process_alive(read_lock(lock)):
        raise AlignpipeError(lock_refusal(stage_dir, read_lock(lock)))
    if not (stage_dir / MANIFEST).is_file():
        return
    status = read_manifest(stage_dir).get("status")
    if status in FINISHED_STATUSES:
        raise AlignpipeError(
            f"{stage_dir} is a finished stage (status {status}); it is never overwritten. "
            f"Choose another run name (run.name=...) or move the directory away."
        )


# Which stage kinds each stage may build on.
ALLOWED_PARENTS = {"sft": (), "rm": ("sft",), "rlhf": ("sft",)}


def resolve_parent(recipe: Recipe, stage: str, parent_setting: str) -> Path | None:
    """The finished stage this one builds on, or None for the base model.

    'auto' takes this run's sft stage when it exists, 'none' the base model, anything else is a stage directory.
    Only a `promoted` stage is a parent, unless run.force (--force) says to build on a blocked or ungated one.
    """
    if parent_setting == "none":
        return None
    if parent_setting == "auto":
        candidate = stage_dir_for(recipe, "sft")
        if not candidate.exists():
            print(f"No {candidate}: {stage} starts from the base model {recipe.model.base}.", flush=True)
            return None
    else:
        candidate = Path(parent_setting)
    manifest = read_manifest(candidate)
    kind = manifest.get("stage")
    if kind not in ALLOWED_PARENTS[stage]:
        allowed = " or ".join(ALLOWED_PARENTS[stage]) or "nothing (it starts from the base model)"
        raise AlignpipeError(f"A {stage} stage cannot start from {candidate}, a {kind} stage; it builds on {allowed}.")
    require_promoted(recipe, candidate, manifest, f"the {stage} stage")
    return candidate


def resolve_reward_model(recipe: Recipe, setting: str, required_by: str | None) -> Path | None:
    """The finished rm stage that rewards (or measures) RLHF, or None when none is wanted or, if optional, found.

    `required_by` names the algorithm that cannot run without one (online RL); offline algorithms only lose the
    before/after reward measurement.
    """
    make_one = "Train one first with `alignpipe rm RECIPE` (or `make sft rm`), or set rlhf.reward_model to an rm stage directory."
    if setting == "none":
        if required_by:
            raise AlignpipeError(f"rlhf.algorithm={required_by} is rewarded by a reward model, and rlhf.reward_model=none. {make_one}")
        return None
    candidate = stage_dir_for(recipe, "rm") if setting == "auto" else Path(setting)
    if not (candidate / MANIFEST).is_file():
        if required_by:
            raise AlignpipeError(f"rlhf.algorithm={required_by} is rewarded by a reward model, and {candidate} holds none. {make_one}")
        print(f"warning: no reward model at {candidate}: the before/after reward comparison is skipped.", flush=True)
        return None
    manifest = read_manifest(candidate)
    if manifest.get("stage") != "rm":
        raise AlignpipeError(f"rlhf.reward_model={candidate} is a {manifest.get('stage')} stage, not a reward model (rm).")
    require_promoted(recipe, candidate, manifest, "rlhf")
    return candidate


def checkpoints_dir(stage_dir: Path) -> Path:
    return stage_dir / "checkpoints"


def last_checkpoint(stage_dir: Path) -> Path | None:
    from transformers.trainer_utils import get_last_checkpoint

    folder = checkpoints_dir(stage_dir)
    if not folder.is_dir():
        return None
    found = get_last_checkpoint(str(folder))
    return Path(found) if found else None


def new_manifest(
    stage: str, recipe: Recipe, parent: Path | None, data_lineage: dict[str, Any], previous: dict[str, Any]
) -> dict[str, Any]:
    """The manifest at the start (or restart) of a stage; `previous` keeps metrics of an interrupted attempt.
    `data_lineage` (alignpipe.data.load_train_and_eval) says per split where the data came from, its layout, the
    rows read, kept and skipped, and a content fingerprint."""
    return {
        "stage": stage,
        "status": "running",
        "parent": str(parent) if parent else None,
        "base_model": recipe.model.base,
        "base_lineage": base_lineage(recipe.model.base),
        "recipe": recipe.model_dump(),
        "metrics": previous.get("metrics", {}),
        "gate": {"verdict": None, "report": None},
        **parent_standing([parent]),
        "data": data_lineage,
        "world_size": world_size(),
        "accelerate_config": recipe.run.accelerate_config if world_size() > 1 else None,
        "versions": library_versions(),
        "git_commit": git_commit(),
        "started_at": previous.get("started_at") or now(),
        "finished_at": None,
    }


@dataclass
class StageRun:
    """An open stage: where it writes, the checkpoint it resumes from, its manifest (metrics gathered in place), and
    the trainer's log, which the stage hands over for the curves."""

    dir: Path
    resume_checkpoint: Path | None
    manifest: dict[str, Any]
    log_history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest["metrics"]


@contextlib.contextmanager
def stage_run(recipe: Recipe, stage: str, parent: Path | None, data_lineage: dict[str, Any], title: str,
              **manifest_fields: Any) -> Iterator[StageRun]:
    """Every stage's lifecycle: open (or resume) the directory with a `running` manifest; an exception ends the stage
    `failed`, with the error and the metrics so far, and goes on up; a clean exit ends it `trained` (curves drawn,
    checkpoints removed). The gate decides promotion afterwards (pipeline.py).

    Under --nproc rank 0 opens (or resumes, or moves aside) the directory while the others wait, then they all
    resume from the same checkpoint; only rank 0 writes.
    """
    if is_main_process():
        stage_dir, resume_checkpoint = open_stage_dir(recipe, stage)
    wait_for_everyone()
    if not is_main_process():
        stage_dir = stage_dir_for(recipe, stage)
        resume_checkpoint = last_checkpoint(stage_dir)
    previous = read_manifest(stage_dir) if resume_checkpoint else {}
    manifest = new_manifest(stage, recipe, parent=parent, data_lineage=data_lineage, previous=previous)
    manifest.update(manifest_fields)
    write_manifest(stage_dir, manifest)
    run = StageRun(stage_dir, resume_checkpoint, manifest)
    try:
        yield run
    except BaseException as error:
        update_manifest(stage_dir, status="failed", metrics=run.metrics, error=f"{type(error).__name__}: {error}")
        raise
    finish_stage(stage_dir, run.metrics, run.log_history, title)


def finish_stage(stage_dir: Path, metrics: dict[str, Any], log_history: list[dict[str, Any]], title: str) -> None:
    """Curves, status `trained` (the gate decides promotion), and the checkpoints go: the adapter is saved."""
    from alignpipe.plots import save_training_curves

    if not is_main_process():
        return
    save_training_curves(log_history, stage_dir / "loss.png", title=title)
    update_manifest(stage_dir, status="trained", metrics=metrics, finished_at=now())
    shutil.rmtree(checkpoints_dir(stage_dir), ignore_errors=True)
    normalize_modes(stage_dir)
