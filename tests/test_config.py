"""Recipes: schema, overrides, stage sections, and errors that name the key and suggest the right one."""

from __future__ import annotations

from pathlib import Path

import pytest

from alignpipe.config import STAGES, Recipe
from alignpipe.recipe_loading import load_recipe, valid_key_paths
from alignpipe.errors import AlignpipeError

RECIPE_ROOT = Path(__file__).parents[1] / "recipes"
RECIPES = sorted([*RECIPE_ROOT.glob("*.yaml"), *RECIPE_ROOT.glob("ja-domain/*.yaml")])


@pytest.mark.parametrize("recipe_path", RECIPES, ids=[path.name for path in RECIPES])
def test_every_shipped_recipe_validates(recipe_path):
    text = recipe_path.read_text(encoding="utf-8")
    assert text.startswith("#") and "alignpipe " in text.split("\n\n")[0]  # starts with the command that runs it
    for stage in STAGES:
        assert load_recipe(recipe_path, stage, []).run.name


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_and_types(tmp_path):
    recipe = load_recipe(write(tmp_path, "train: {max_steps: 7}\n"), "sft", ["lora.target_modules=[q_proj,v_proj]"])
    assert recipe.train.max_steps == 7
    assert recipe.model.base == "embedded" and recipe.model.quantization == "4bit"
    assert recipe.lora.target_modules == ["q_proj", "v_proj"]


def test_stage_section_overrides_shared_and_command_line_overrides_both(tmp_path):
    path = write(tmp_path, "train: {max_steps: 10, learning_rate: 1.0e-4}\nsft: {train: {max_steps: 80}}\n")
    recipe = load_recipe(path, "sft", [])
    assert recipe.train.max_steps == 80 and recipe.train.learning_rate == 1e-4
    assert load_recipe(path, "sft", ["train.max_steps=3"]).train.max_steps == 3
    assert load_recipe(path, "sft", ["sft.train.max_steps=4"]).train.max_steps == 4


def test_unknown_key_names_the_path_and_suggests(tmp_path):
    with pytest.raises(AlignpipeError) as error:
        load_recipe(write(tmp_path, "train: {max_stepz: 3}\n"), "sft", [])
    assert "train.max_stepz" in str(error.value) and "did you mean train.max_steps?" in str(error.value)

    with pytest.raises(AlignpipeError, match=r"sft.train.learning_rat .*did you mean sft.train.learning_rate\?"):
        load_recipe(write(tmp_path, "sft: {train: {learning_rat: 0.1}}\n"), "sft", [])

    with pytest.raises(AlignpipeError, match=r"did you mean train.max_steps\?"):
        load_recipe(write(tmp_path, ""), "sft", ["train.max_stepz=3"])


def test_wrong_type_and_all_problems_reported_together(tmp_path):
    with pytest.raises(AlignpipeError) as error:
        load_recipe(write(tmp_path, "model: {quantization: 5bit}\n"), "sft", ["train.max_steps=abc", "lora.rr=2"])
    message = str(error.value)
    assert "train.max_steps" in message and "'abc'" in message
    assert "model.quantization" in message and "lora.rr" in message


def test_missing_recipe_and_bad_yaml(tmp_path):
    with pytest.raises(AlignpipeError, match="Recipe file not found: .*nope.yaml"):
        load_recipe(tmp_path / "nope.yaml", "sft", [])
    with pytest.raises(AlignpipeError, match="not valid YAML"):
        load_recipe(write(tmp_path, "train: [unclosed\n"), "sft", [])
    with pytest.raises(AlignpipeError, match="key=value"):
        load_recipe(write(tmp_path, ""), "sft", ["train.max_steps"])


def test_key_paths_cover_stage_overrides():
    paths = valid_key_paths()
    assert {"train.max_steps", "sft.packing", "sft.train.max_steps", "model.quantization"} <= set(paths)


def test_nested_gate_keys_merge_and_are_checked(tmp_path):
    path = write(tmp_path, "gate: {toxicity: {tolerance: 0.1, ceiling: 0.3}}\nrlhf: {gate: {toxicity: {ceiling: 0.2}}}\n")
    recipe = load_recipe(path, "rlhf", ["gate.toxicity.model=my/classifier"])
    assert (recipe.gate.toxicity.tolerance, recipe.gate.toxicity.ceiling) == (0.1, 0.2)
    assert recipe.gate.toxicity.model == "my/classifier"
    with pytest.raises(AlignpipeError, match=r"gate.toxicity.modl .*did you mean gate.toxicity.model\?"):
        load_recipe(path, "sft", ["gate.toxicity.modl=x"])


@pytest.mark.parametrize("name", ["../../escape", "/some/dir", "a/b", "..", ".", "", "run name", "x..y"])
def test_run_name_is_one_safe_folder_name(tmp_path, name):
    with pytest.raises(AlignpipeError, match=r"run.name: .*one folder name"):
        load_recipe(write(tmp_path, "train: {max_steps: 1}\n"), "sft", [f"run.name={name}"])


def test_safe_run_names_pass(tmp_path):
    assert load_recipe(write(tmp_path, "train: {max_steps: 1}\n"), "sft", ["run.name=try-2_v1.3"]).run.name == "try-2_v1.3"


@pytest.mark.parametrize("steps", ["0", "-5"])
def test_max_steps_at_least_one_or_minus_one_for_epochs(tmp_path, steps):
    with pytest.raises(AlignpipeError, match="train.max_steps: .*at least 1, or -1"):
        load_recipe(write(tmp_path, "train: {max_steps: 1}\n"), "sft", [f"train.max_steps={steps}"])
    assert load_recipe(write(tmp_path, "train: {max_steps: -1}\n"), "sft", []).train.max_steps == -1


def test_names_transformers_would_reject_at_the_first_step_are_errors_at_load(tmp_path):
    path = write(tmp_path, "train: {max_steps: 1}\n")
    overrides = ["train.optimizer=adamw_trch", "train.lr_scheduler=bogus", "train.report_to=[tensorbord]"]
    with pytest.raises(AlignpipeError) as error:
        load_recipe(path, "sft", overrides)
    message = str(error.value)  # all three together
    assert "train.optimizer: unknown name 'adamw_trch'; did you mean adamw_torch?" in message
    assert "train.lr_scheduler: unknown name 'bogus'" in message and "cosine_with_restarts" in message
    assert "train.report_to: unknown name 'tensorbord'; did you mean tensorboard?" in message
    with pytest.raises(AlignpipeError, match="needs lr_scheduler_kwargs"):
        load_recipe(path, "sft", ["train.lr_scheduler=cosine_with_min_lr"])
    with pytest.raises(AlignpipeError, match="reduce_lr_on_plateau needs periodic evaluation"):
        load_recipe(path, "sft", ["train.lr_scheduler=reduce_lr_on_plateau"])
    with pytest.raises(AlignpipeError, match="needs the schedulefree package"):
        load_recipe(path, "sft", ["train.optimizer=schedule_free_adamw"])
    recipe = load_recipe(path, "sft", ["train.optimizer=sgd", "train.lr_scheduler=constant_with_warmup"])
    assert (recipe.train.optimizer, recipe.train.lr_scheduler) == ("sgd", "constant_with_warmup")


def test_an_empty_recipe_lists_what_it_needs(tmp_path):
    for text in ("", "# only a comment\n", "{}\n"):
        with pytest.raises(AlignpipeError, match=r"the recipe is empty; a recipe needs at least data.train"):
            load_recipe(write(tmp_path, text), "sft", [])


def test_a_binary_or_hostile_recipe_is_an_error_naming_the_file(tmp_path):
    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(AlignpipeError, match=rf"Recipe {binary} is not UTF-8 text"):
        load_recipe(binary, "sft", [])
    with pytest.raises(AlignpipeError, match=rf"Recipe {tmp_path} is a directory"):
        load_recipe(tmp_path, "sft", [])
    with pytest.raises(AlignpipeError, match="nests too deeply"):
        load_recipe(write(tmp_path, "a: " + "[" * 20_000 + "]" * 20_000 + "\n"), "sft", [])


def test_auto_precision_is_resolved_to_what_the_hardware_computes_natively(monkeypatch):
    from alignpipe import hardware

    monkeypatch.setattr(hardware, "native_bf16", lambda: True)
    assert Recipe.model_validate({"train": {"precision": "auto"}}).train.precision == "bf16"
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert Recipe.model_validate({"train": {"precision": "auto"}}).train.precision == "fp32"  # an AVX2-only CPU emulates bf16
    assert Recipe.model_validate({"train": {}}).train.precision == "fp32"  # auto is the default
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert Recipe.model_validate({"train": {"precision": "auto"}}).train.precision == "fp16"  # a GPU older than Ampere
    assert Recipe.model_validate({"train": {"precision": "bf16"}}).train.precision == "bf16"  # asked for: kept
