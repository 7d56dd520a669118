"""Run directories (`<output_root>/<run.name>/<stage>/`), their manifest.json, resume and refusal to overwrite.

Status of a stage: `running` while it trains (a killed run stays `running`), `failed` after an error, `trained`
when training finished; the gate then turns `trained` into `promoted` or `blocked` (with the gate off it stays
`trained`, verdict `skipped`). A stage in a finished status is never overwritten. Every gate run is appended to
`gate.history`; children record the exceptions (forced, overridden) behind their parents in `lineage_exceptions`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from alignpipe.config import Recipe
from alignpipe.errors import AlignpipeError
from alignpipe.provenance import base_lineage, git_commit, library_versions, now
from alignpipe.stage_lock import LOCK, held_by_this_process, lock_refusal, process_alive, read_lock, take_stage_lock

FINISHED_STATUSES = ("trained", "promoted", "blocked")
MANIFEST = "manifest.json"


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


def require_promoted(recipe: Recipe, stage_dir: Path, manifest: dict[str, Any], user: str) -> None:
    """Refuse a stage the gate did not promote, unless forced: then warn (the new manifest records it)."""
    status = manifest.get("status")
    if status == "promoted":
        return
    report = (manifest.get("gate") or {}).get("report")
    if status == "blocked":
        why = f"was blocked by the safety gate (report: {report})"
    elif status == "trained":
        why = (f"was trained with the safety gate off (verdict skipped), so it was never checked; gate it with "
               f"`alignpipe gate {stage_dir}`")
    else:
        raise AlignpipeError(f"{stage_dir} is not a finished, promoted stage (status {status}); finish it first.")
    if not recipe.run.force:
        raise AlignpipeError(f"{stage_dir} {why}, so {user} does not build on it. Read the report, re-gate with other "
                             f"thresholds (alignpipe gate {stage_dir} gate.KEY=VALUE), or pass --force to build on it "
                             "anyway (recorded in the manifest).")
    print(f"WARNING: --force: building on {stage_dir}, which {why}.", flush=True)


def forced_over(stages: list[Path | None]) -> list[dict[str, Any]]:
    """The stages this one builds on that the gate did not promote (recorded as `forced_over`)."""
    unpromoted = []
    for stage_dir in stages:
        if stage_dir is not None and read_manifest(stage_dir).get("status") != "promoted":
            manifest = read_manifest(stage_dir)
            unpromoted.append({"stage": str(stage_dir), "status": manifest.get("status"),
                               "report": (manifest.get("gate") or {}).get("report")})
    return unpromoted


def lineage_exceptions(stages: list[Path | None]) -> list[dict[str, Any]]:
    """Every exception to the gate's word behind the stages this one builds on, back to the base model.

    Each parent's own inherited list, then the parent itself when it was built on by force (not promoted), or
    promoted by a re-gate with settings other than its recipe's (overridden).
    """
    exceptions: list[dict[str, Any]] = []
    for stage_dir in stages:
        if stage_dir is None:
            continue
        manifest = read_manifest(stage_dir)
        gate = manifest.get("gate") or {}
        exceptions += [entry for entry in manifest.get("lineage_exceptions", []) if entry not in exceptions]
        if manifest.get("status") != "promoted":
            exceptions.append({"stage": str(stage_dir), "exception": "forced", "status": manifest.get("status"),
                               "verdict": gate.get("verdict"), "report": gate.get("report")})
        if gate.get("overridden"):
            exceptions.append({"stage": str(stage_dir), "exception": "overridden", "verdict": gate.get("verdict"),
                               "settings_changed": gate.get("settings_changed"), "report": gate.get("report")})
    return exceptions


def parent_standing(stages: list[Path | None]) -> dict[str, Any]:
    """`forced`, `forced_over` and `lineage_exceptions` of a new manifest built on `stages`."""
    unpromoted = forced_over(stages)
    return {"forced": bool(unpromoted), "forced_over": unpromoted, "lineage_exceptions": lineage_exceptions(stages)}


def record_gate_run(stage_dir: Path, verdict: str, latest: Path, numbered: Path, changed: dict[str, Any],
                    seconds: float) -> str:
    """Append a gate run to `gate.history`, set the verdict in force and the status; return the status."""
    manifest = read_manifest(stage_dir)
    gate = manifest.get("gate") or {}
    history = gate.get("history", []) + [{"verdict": verdict, "report": str(numbered), "settings_changed": changed,
                                           "at": now()}]
    status = "blocked" if verdict == "block" else "promoted"
    manifest["status"] = status
    # `overridden` is about the verdict in force: it was reached with settings other than the recipe's.
    manifest["gate"] = {"verdict": verdict, "report": str(latest), "seconds": seconds, "overridden": bool(changed),
                        "settings_changed": changed, "history": history}
    write_manifest(stage_dir, manifest)
    return status


def record_gate_skipped(stage_dir: Path) -> None:
    """gate.enabled=false: the stage stays `trained`, with verdict `skipped`; a child needs --force."""
    manifest = read_manifest(stage_dir)
    history = (manifest.get("gate") or {}).get("history", [])
    history.append({"verdict": "skipped", "report": None, "settings_changed": {}, "at": now()})
    manifest["gate"] = {"verdict": "skipped", "report": None, "overridden": False, "settings_changed": {},
                        "history": history}
    write_manifest(stage_dir, manifest)


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


def read_manifest(stage_dir: Path) -> dict[str, Any]:
    path = Path(stage_dir) / MANIFEST
    if not path.is_file():
        raise AlignpipeError(f"{stage_dir} is not a stage directory: {path} is missing.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise AlignpipeError(f"{path} is not valid JSON ({error.msg}); the run directory is damaged.") from None


def write_manifest(stage_dir: Path, manifest: dict[str, Any]) -> None:
    """Atomic: write a temporary file beside it, then rename, so a crash never leaves half a manifest.

    Under --nproc only rank 0 writes; the other ranks compute the same metrics and keep them to themselves.
    """
    if not is_main_process():
        return
    handle, temp_path = tempfile.mkstemp(dir=stage_dir, prefix=".manifest.", suffix=".tmp")
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(manifest, out, indent=2, ensure_ascii=False)
        out.write("\n")
    os.chmod(temp_path, default_mode())  # mkstemp's is 0600: a group that can see the run could not read it
    os.replace(temp_path, stage_dir / MANIFEST)


def default_mode(directory: bool = False) -> int:
    """The mode open() and mkdir() give under the user's umask: 0644 and 0755 with the usual umask 022."""
    umask = os.umask(0o022)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def normalize_modes(folder: Path) -> None:
    """Give every file and folder under `folder` the default mode: some writers (mkstemp, the safetensors shard
    writer of transformers 5) leave files 0600 among 0644 ones."""
    file_mode, folder_mode = default_mode(), default_mode(directory=True)
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(folder_mode if path.is_dir() else file_mode)


def update_manifest(stage_dir: Path, **fields: Any) -> dict[str, Any]:
    manifest = read_manifest(stage_dir)
    manifest.update(fields)
    write_manifest(stage_dir, manifest)
    return manifest


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


def start_stage(
    recipe: Recipe, stage: str, parent: Path | None, data_lineage: dict[str, Any]
) -> tuple[Path, Path | None, dict[str, Any]]:
    """Open the stage directory and write its `running` manifest; a resumed stage keeps its earlier metrics.

    Under --nproc rank 0 opens (or resumes, or moves aside) the directory while the others wait, then they all
    resume from the same checkpoint.
    """
    if is_main_process():
        stage_dir, resume_checkpoint = open_stage_dir(recipe, stage)
    wait_for_everyone()
    if not is_main_process():
        stage_dir = stage_dir_for(recipe, stage)
        resume_checkpoint = last_checkpoint(stage_dir)
    previous = read_manifest(stage_dir) if resume_checkpoint else {}
    manifest = new_manifest(stage, recipe, parent=parent, data_lineage=data_lineage, previous=previous)
    write_manifest(stage_dir, manifest)
    return stage_dir, resume_checkpoint, manifest


def world_size() -> int:
    """Processes training together (torchrun / accelerate launch set WORLD_SIZE); 1 without --nproc."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """Rank 0 alone writes manifests, adapters, plots and gate reports."""
    return process_rank() == 0


def wait_for_everyone() -> None:
    """A barrier across the ranks of --nproc (it starts the process group the trainer then uses); no-op alone."""
    if world_size() > 1:
        import torch
        from accelerate import PartialState

        PartialState(cpu=not torch.cuda.is_available()).wait_for_everyone()


def finish_stage(stage_dir: Path, metrics: dict[str, Any], log_history: list[dict[str, Any]], title: str) -> None:
    """Curves, status `trained` (the gate decides promotion), and the checkpoints go: the adapter is saved."""
    from alignpipe.plots import save_training_curves

    if not is_main_process():
        return
    save_training_curves(log_history, stage_dir / "loss.png", title=title)
    update_manifest(stage_dir, status="trained", metrics=metrics, finished_at=now())
    shutil.rmtree(checkpoints_dir(stage_dir), ignore_errors=True)
    normalize_modes(stage_dir)
