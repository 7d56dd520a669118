"""A stage's standing with the safety gate: the promotion rule a child applies to its parent, the gate's history in
the manifest, and the exceptions (forced, overridden) every later stage records back to the base model.

Status after the gate: `promoted` (pass or warn) or `blocked`; with the gate off the stage stays `trained`
(verdict `skipped`). A child builds only on a promoted parent unless `--force`, which its manifest records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alignpipe.config import Recipe
from alignpipe.errors import AlignpipeError
from alignpipe.manifests import read_manifest, write_manifest
from alignpipe.provenance import now


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
