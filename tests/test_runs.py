"""Run directories: contained paths, one writer per stage (the lock), failures recorded, file modes, lineage."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys

import psutil
import pytest

from alignpipe import models, provenance, runs, stage_lock
from alignpipe.config import Recipe
from alignpipe.errors import AlignpipeError


def recipe_in(folder, name: str = "r", **run) -> Recipe:
    return Recipe.model_validate({"run": {"name": name, "output_root": str(folder / "runs"), **run}})


def write_lock(stage_dir, **holder) -> None:
    stage_dir.mkdir(parents=True, exist_ok=True)
    (stage_dir / stage_lock.LOCK).write_text(json.dumps(holder))


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_stage_directory_never_resolves_outside_the_output_root(tmp_path):
    recipe = recipe_in(tmp_path)
    assert runs.stage_dir_for(recipe, "sft") == tmp_path / "runs" / "r" / "sft"
    (tmp_path / "runs").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "runs" / "linked").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(AlignpipeError, match="outside run.output_root"):
        runs.stage_dir_for(recipe_in(tmp_path, "linked"), "sft")
    # A link inside an interrupted stage would let a resumed run write elsewhere: refused too.
    stage_dir = runs.stage_dir_for(recipe, "sft")
    stage_dir.mkdir(parents=True)
    (stage_dir / "checkpoints").symlink_to(tmp_path / "elsewhere")
    try:
        with pytest.raises(AlignpipeError, match=r"checkpoints links to .*elsewhere, outside run.output_root"):
            runs.open_stage_dir(recipe, "sft")
    finally:
        stage_lock.release_stage_locks()


def test_the_output_root_must_be_a_directory_or_creatable(tmp_path):
    runs.check_output_root(recipe_in(tmp_path))  # does not exist yet: fine, it will be created
    (tmp_path / "runs").write_text("a file")
    with pytest.raises(AlignpipeError, match="is a file, not a directory"):
        runs.check_output_root(recipe_in(tmp_path))
    inside_a_file = Recipe.model_validate({"run": {"output_root": str(tmp_path / "runs" / "deeper")}})
    with pytest.raises(AlignpipeError, match=r"is inside .*runs, a file"):
        runs.check_output_root(inside_a_file)


def test_the_lock_names_its_holder_and_is_released(tmp_path):
    stage_dir = tmp_path / "runs" / "r" / "sft"
    stage_lock.take_stage_lock(stage_dir)
    try:
        holder = json.loads((stage_dir / stage_lock.LOCK).read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname() and holder["started_at"]
        stage_lock.take_stage_lock(stage_dir)  # this process holds it already: kept, not refused
    finally:
        stage_lock.release_stage_locks()
    assert not (stage_dir / stage_lock.LOCK).exists()


def test_a_live_holder_is_refused_even_with_break_lock(tmp_path):
    stage_dir = tmp_path / "runs" / "r" / "sft"
    parent = psutil.Process(os.getppid())  # alive for as long as this test runs
    write_lock(stage_dir, pid=parent.pid, host=socket.gethostname(), process_started=parent.create_time(),
               started_at="then", command="alignpipe sft")
    for break_stale in (False, True):
        with pytest.raises(AlignpipeError, match=rf"locked by pid {parent.pid} .*still running: one writer per stage"):
            stage_lock.take_stage_lock(stage_dir, break_stale)
    with pytest.raises(AlignpipeError, match="still running"):  # the early check at the start of a stage, too
        runs.refuse_finished(stage_dir)
    assert json.loads((stage_dir / stage_lock.LOCK).read_text())["pid"] == parent.pid  # untouched


def test_a_stale_lock_is_reported_and_broken_only_when_asked(tmp_path, capsys):
    stage_dir = tmp_path / "runs" / "r" / "sft"
    pid = dead_pid()
    write_lock(stage_dir, pid=pid, host=socket.gethostname(), process_started=0.0, started_at="then", command="x")
    with pytest.raises(AlignpipeError, match=rf"pid {pid} .*no longer running.*--break-lock"):
        stage_lock.take_stage_lock(stage_dir)
    runs.refuse_finished(stage_dir)  # a dead holder does not stop the early check: the lock itself decides
    try:
        stage_lock.take_stage_lock(stage_dir, break_stale=True)
        assert f"taking over the lock of pid {pid}" in capsys.readouterr().out
        assert json.loads((stage_dir / stage_lock.LOCK).read_text())["pid"] == os.getpid()
    finally:
        stage_lock.release_stage_locks()


def test_a_reused_pid_and_another_host_count_as_not_running_here(tmp_path):
    me = psutil.Process()
    assert stage_lock.process_alive({"pid": me.pid, "host": socket.gethostname(), "process_started": me.create_time()})
    assert stage_lock.process_alive({"pid": me.pid, "host": socket.gethostname(), "process_started": 1.0}) is False
    assert stage_lock.process_alive({"pid": me.pid, "host": "other-host"}) is None
    stage_dir = tmp_path / "runs" / "r" / "sft"
    write_lock(stage_dir, pid=me.pid, host="other-host", started_at="then", command="x")
    with pytest.raises(AlignpipeError, match="cannot be checked from this host"):
        stage_lock.take_stage_lock(stage_dir)


def test_moving_an_interrupted_stage_aside_keeps_the_lock_in_place(tmp_path, capsys):
    recipe = recipe_in(tmp_path, resume=False)
    stage_dir = runs.stage_dir_for(recipe, "sft")
    (stage_dir / "checkpoints").mkdir(parents=True)
    (stage_dir / "manifest.json").write_text(json.dumps({"stage": "sft", "status": "running"}))
    try:
        assert runs.open_stage_dir(recipe, "sft") == (stage_dir, None)
        assert [path.name for path in stage_dir.iterdir()] == [stage_lock.LOCK]
        (aside,) = [path for path in stage_dir.parent.iterdir() if path.name.startswith("sft.interrupted-")]
        assert sorted(path.name for path in aside.iterdir()) == ["checkpoints", "manifest.json"]
    finally:
        stage_lock.release_stage_locks()


def test_a_failure_marks_only_a_stage_this_process_holds(tmp_path):
    stage_dir = tmp_path / "runs" / "r" / "sft"
    stage_dir.mkdir(parents=True)
    runs.write_manifest(stage_dir, {"stage": "sft", "status": "running"})
    runs.record_failure(stage_dir, ValueError("not ours"))
    assert runs.read_manifest(stage_dir)["status"] == "running"
    stage_lock.take_stage_lock(stage_dir)
    try:
        runs.record_failure(stage_dir, ValueError("optimizer exploded"))
    finally:
        stage_lock.release_stage_locks()
    manifest = runs.read_manifest(stage_dir)
    assert manifest["status"] == "failed" and manifest["error"] == "ValueError: optimizer exploded"


def test_run_files_get_the_default_mode(tmp_path):
    stage_dir = tmp_path / "stage"
    (stage_dir / "adapter").mkdir(parents=True)
    private = stage_dir / "adapter" / "adapter_model.safetensors"
    private.write_bytes(b"weights")
    private.chmod(0o600)
    runs.write_manifest(stage_dir, {"stage": "sft"})
    runs.normalize_modes(stage_dir)
    expected = 0o666 & ~_umask()
    assert (stage_dir / "manifest.json").stat().st_mode & 0o777 == expected
    assert private.stat().st_mode & 0o777 == expected


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_lineage_of_a_local_base_and_of_a_hub_id(tmp_path, tiny_model_dir, monkeypatch):
    lineage = provenance.base_lineage(str(tiny_model_dir))
    weights = tiny_model_dir / "model.safetensors"
    assert lineage["source"] == "local" and lineage["weights_file"] == "model.safetensors"
    assert lineage["weights_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    refs = tmp_path / "hub" / "models--org--model" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("0123abcd" * 5)
    assert provenance.base_lineage("org/model") == {"source": "hub", "id": "org/model", "revision": "0123abcd" * 5}
    assert provenance.base_lineage("org/not-cached")["revision"] is None
    dataset_refs = tmp_path / "hub" / "datasets--org--pairs" / "refs"
    dataset_refs.mkdir(parents=True)
    (dataset_refs / "main").write_text("feed" * 10)
    assert provenance.data_lineage("org/pairs") == {"path": "org/pairs", "sha256": None, "hub_revision": "feed" * 10}


def test_a_base_that_is_no_model_says_what_is_wrong(tmp_path):
    with pytest.raises(AlignpipeError, match=r"has no config.json: not a model directory"):
        models.resolve_base(str(tmp_path))
    with pytest.raises(AlignpipeError, match=r"no such model directory: /no/such/model \(and not a hub id: "):
        models.resolve_base("/no/such/model")
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(AlignpipeError, match="is a file, not a model directory"):
        models.resolve_base(str(tmp_path / "weights.bin"))
    assert models.resolve_base("org/model") == "org/model"  # a hub id is left to the hub (or its cache)
