"""A stage's manifest.json: read with a clear error when missing or damaged, written atomically by rank 0."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from alignpipe.errors import AlignpipeError
from alignpipe.ranks import is_main_process

MANIFEST = "manifest.json"


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
