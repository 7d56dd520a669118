"""Where a run's inputs came from, for its manifest: the exact base weights, the data files, library versions, the
code's git commit, and timestamps (UTC)."""

from __future__ import annotations

import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def base_lineage(base: str) -> dict[str, Any]:
    """Exactly which weights `model.base` named, for the manifest: a hub id with the commit it resolved to in the
    local hub cache, or a local folder with the sha256 of its weights (of the index, for sharded weights)."""
    from alignpipe.embedded import embedded_model, embedded_model_dir, is_embedded

    path = embedded_model_dir(base) if is_embedded(base) else Path(base)  # checked by models.resolve_base already
    if not path.is_dir():
        return {"source": "hub", "id": base, "revision": hub_revision(base, "model")}
    from alignpipe.data import file_sha256

    names = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json", "pytorch_model.bin")
    weights = next((path / name for name in names if (path / name).is_file()), None)
    lineage = {"source": "embedded" if is_embedded(base) else "local", "path": str(path.resolve()),
               "weights_file": weights.name if weights else None,
               "weights_sha256": file_sha256(weights) if weights else None}
    if is_embedded(base):  # its terms travel with everything built on it
        lineage["license"] = embedded_model(base).license_name
    return lineage


def hub_revision(repo_id: str, repo_type: str) -> str | None:
    """The commit hash the hub cache resolves `main` to for a model or dataset repo (None when it is not cached).
    Read from the cache's refs, offline: what from_pretrained / load_dataset loaded without a revision."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    ref = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo_id, repo_type=repo_type) / "refs" / "main"
    return ref.read_text(encoding="utf-8").strip() if ref.is_file() else None


def data_lineage(path: str) -> dict[str, Any]:
    """A data file with its sha256, or a hub dataset id with the commit the local hub cache resolves it to."""
    from alignpipe.data import file_sha256

    if Path(path).is_file():
        return {"path": path, "sha256": file_sha256(path)}
    return {"path": path, "sha256": None, "hub_revision": hub_revision(path, "dataset")}


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for package in ("torch", "transformers", "peft", "trl", "bitsandbytes", "alignpipe"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None
