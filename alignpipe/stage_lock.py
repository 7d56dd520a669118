"""One writer per stage directory: a lock file created atomically (O_EXCL) that says which process holds it.

A stage and its gate write under one lock; `alignpipe gate` and a second run of the same stage are refused while a
live process holds it. A lock left by a killed process (kill -9) is named in the refusal and taken over only with
--break-lock; a holder on another host, or one whose liveness cannot be told, is never taken over silently.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alignpipe.errors import AlignpipeError
from alignpipe.provenance import now

LOCK = "alignpipe.lock"
_held_locks: set[Path] = set()


def take_stage_lock(stage_dir: Path, break_stale: bool = False) -> None:
    """Take the stage's lock or refuse, naming the holder. A lock this process holds already is kept.

    A lock whose process is gone (killed: a clean exit or an error releases it) is stale: reported, and taken over
    only with --break-lock (run.break_lock=true), never silently. So is one from another host, which cannot be checked.
    """
    stage_dir.mkdir(parents=True, exist_ok=True)
    lock = stage_dir / LOCK
    if lock.resolve() in _held_locks:
        return
    try:
        handle = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        holder = read_lock(lock)
        if process_alive(holder) or not break_stale:
            raise AlignpipeError(lock_refusal(stage_dir, holder)) from None
        print(f"warning: --break-lock: taking over the lock of {describe_holder(holder)} on {stage_dir}.", flush=True)
        lock.unlink(missing_ok=True)
        handle = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump(this_process(), out)
    if not _held_locks:
        atexit.register(release_stage_locks)
    _held_locks.add(lock.resolve())


def release_stage_locks() -> None:
    """Remove the lock files this process holds (at the end of a command, and at exit)."""
    for lock in list(_held_locks):
        if read_lock(lock).get("pid") == os.getpid():
            lock.unlink(missing_ok=True)
        _held_locks.discard(lock)


@contextlib.contextmanager
def stage_lock(stage_dir: Path, break_stale: bool = False) -> Iterator[None]:
    """Hold the stage's lock for a block that writes into a finished stage (re-running its gate)."""
    take_stage_lock(stage_dir, break_stale)
    try:
        yield
    finally:
        release_stage_locks()


def this_process() -> dict[str, Any]:
    import psutil  # accelerate's dependency

    process = psutil.Process()
    return {"pid": process.pid, "host": socket.gethostname(), "process_started": process.create_time(),
            "started_at": now(), "command": " ".join(process.cmdline())[:500]}


def read_lock(lock: Path) -> dict[str, Any]:
    try:
        holder = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # gone meanwhile, or being written this very moment
        return {}
    return holder if isinstance(holder, dict) else {}


def process_alive(holder: dict[str, Any]) -> bool | None:
    """Whether the process {"pid", "host", "process_started"} runs: True or False on this host (a pid reused by a
    later process counts as gone), None when it cannot be told (another host, or no pid)."""
    import psutil

    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return None
    try:
        started = psutil.Process(holder["pid"]).create_time()
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # another user's process: it exists
        return True
    return abs(started - holder.get("process_started", started)) < 1.0


def describe_holder(holder: dict[str, Any]) -> str:
    if not holder:
        return "a process that is writing the lock file right now (or left it empty)"
    return f"pid {holder.get('pid')} on {holder.get('host')} (since {holder.get('started_at')}: {holder.get('command')})"


def lock_refusal(stage_dir: Path, holder: dict[str, Any]) -> str:
    alive = process_alive(holder)
    where = f"{stage_dir} is locked by {describe_holder(holder)}"
    if alive:
        return f"{where}, which is still running: one writer per stage. Wait for it, stop it, or pick another run.name."
    if alive is False:
        return (f"{where}, which is no longer running (it was killed). Check that nothing else uses the directory, then "
                "run again with --break-lock (run.break_lock=true) to take the lock over and resume.")
    return (f"{where}, which cannot be checked from this host. If that run is gone, run again with --break-lock "
            "(run.break_lock=true).")


def held_by_this_process(lock: Path) -> bool:
    return lock.resolve() in _held_locks
