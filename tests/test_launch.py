"""--nproc: a stage in two processes through accelerate (gloo on CPU) trains like one process with the same batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from alignpipe import cli

REPO = Path(__file__).resolve().parents[1]


def test_sft_in_two_processes_matches_one_process_with_the_same_global_batch(tiny_recipe):
    runs_root = tiny_recipe.parent / "runs"
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    # Two ranks at batch 2 each: the same global batch of 4 as the single process below.
    launched = subprocess.run(
        [sys.executable, "-m", "alignpipe.cli", "sft", str(tiny_recipe), "--nproc", "2",
         "train.batch_size=2", "train.max_steps=6", "run.name=two"],
        cwd=REPO, env=environment, capture_output=True, text=True, timeout=300,
    )
    output = launched.stdout + launched.stderr
    assert launched.returncode == 0, output[-3000:]
    assert "rank 0 of 2: trained 6 steps" in output and "rank 1 of 2: trained 6 steps" in output

    two = runs_root / "two" / "sft"
    assert sorted(path.name for path in runs_root.rglob("manifest.json")) == ["manifest.json"]
    assert not list(two.glob(".manifest.*"))  # no half-written manifest from a second writer
    manifest = json.loads((two / "manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["accelerate_config"] == "ddp"
    assert manifest["status"] == "trained"  # gated once (disabled in tiny recipes: trained, verdict skipped)
    assert output.count("stays `trained` (verdict skipped)") == 1
    assert (two / "adapter" / "adapter_model.safetensors").is_file()

    assert cli.main(["sft", str(tiny_recipe), "train.batch_size=4", "train.max_steps=6", "run.name=one"]) == 0
    single = json.loads((runs_root / "one" / "sft" / "manifest.json").read_text())
    assert single["world_size"] == 1
    # The held-out loss before training is the same computation split over two ranks.
    assert manifest["metrics"]["eval_loss_base"] == pytest.approx(single["metrics"]["eval_loss_base"], rel=1e-3)
    # Training sees the same examples per step, drawn in a different order (a distributed sampler): close, not equal.
    assert manifest["metrics"]["train_loss"] == pytest.approx(single["metrics"]["train_loss"], rel=0.02)


def test_overrides_may_follow_nproc_and_dry_run_names_the_accelerate_config(tiny_recipe, capsys):
    assert cli.main(["sft", str(tiny_recipe), "--nproc", "2", "run.accelerate_config=fsdp", "--dry-run"]) == 0
    assert "alignpipe/resources/accelerate/fsdp.yaml" in capsys.readouterr().out


def test_unknown_accelerate_config_is_a_user_error(tiny_recipe, capsys):
    assert cli.main(["sft", str(tiny_recipe), "--nproc", "2", "run.accelerate_config=zero9"]) == 2
    assert "run.accelerate_config=zero9" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3"])
def test_shipped_accelerate_configs_load_with_accelerate(name):
    from accelerate.commands.config.config_args import load_config_from_file

    from alignpipe.launch import accelerate_config_file

    config = load_config_from_file(str(accelerate_config_file(name)))
    assert config.num_machines == 1
    if name == "fsdp":
        assert config.fsdp_config["fsdp_use_orig_params"] is False  # FSDP-QLoRA needs flat parameters


def test_pip_installed_outside_the_checkout_finds_its_accelerate_config_and_demo(tmp_path):
    """`pip install .` into a fresh venv, then `alignpipe sft --dry-run --nproc 2` in a folder that is not a
    checkout: the accelerate config, the demo recipe and its data all come from inside the installed package."""
    import shutil
    import sysconfig
    import zipfile

    source = tmp_path / "source"  # a copy, so that the build leaves nothing in the checkout (symlinks copied as files)
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", ".venv", "runs", "build", "*.egg-info",
                                                                "exported", "tests"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(source)], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("alignpipe-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"alignpipe/resources/accelerate/{name}.yaml" for name in ("ddp", "fsdp", "deepspeed-zero2",
                                                                          "deepspeed-zero3")} <= names
    assert {"alignpipe/resources/demo/recipes/demo.yaml", "alignpipe/resources/demo/data/demo/sft_train.jsonl"} <= names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = next((venv / "lib").glob("python*/site-packages"))
    # The dependencies (torch, transformers, ...) from this environment, without its editable alignpipe: a path
    # listed in a .pth file joins sys.path, but the .pth files inside it (the editable finder) are not read.
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)],
                   check=True, capture_output=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    ran = subprocess.run([str(venv / "bin" / "alignpipe"), "sft", "--dry-run", "--nproc", "2"], cwd=elsewhere,
                         capture_output=True, text=True, timeout=300)
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, output[-3000:]
    installed = site / "alignpipe" / "resources"
    assert f"would launch through {installed / 'accelerate' / 'ddp.yaml'}" in output
    assert f"data.train: {installed / 'demo' / 'data' / 'demo' / 'sft_train.jsonl'}" in output
    assert not (elsewhere / "runs").exists()  # a dry run writes nothing
