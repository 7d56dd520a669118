"""Reading a recipe: YAML -> stage-section merge -> command-line overrides -> the typed `Recipe` (config.py).

    recipe = load_recipe("recipes/demo.yaml", "sft", ["train.max_steps=3"])

Every unknown key (with a "did you mean") and every type error is collected and reported at once, before anything
is loaded. A re-gate (`alignpipe gate DIR gate.KEY=VALUE`) validates its overrides here too (`regate_settings`).
"""

from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from alignpipe.config import REQUIRED_KEYS, SHARED_SECTIONS, STAGES, GateConfig, Recipe
from alignpipe.errors import AlignpipeError


def valid_key_paths() -> list[str]:
    """Every dotted key a recipe may hold, stage overrides included (`sft.train.max_steps`, `gate.toxicity.model`)."""
    shared = [path for section in SHARED_SECTIONS for path in _paths(Recipe, section)]
    paths = list(shared)
    for stage in STAGES:
        paths += _paths(Recipe, stage)
        paths += [f"{stage}.{path}" for path in shared]
    return paths


def _paths(model: type[BaseModel], name: str) -> list[str]:
    """`name.field` for every field of the section `name`, descending into nested sections."""
    section = model.model_fields[name].annotation
    paths = []
    for field, info in section.model_fields.items():  # type: ignore[union-attr]
        nested = isinstance(info.annotation, type) and issubclass(info.annotation, BaseModel)
        paths += [f"{name}.{path}" for path in _paths(section, field)] if nested else [f"{name}.{field}"]
    return paths


def load_recipe(path: str | Path, stage: str, overrides: list[str]) -> Recipe:
    """Read a recipe for one stage, apply command-line overrides, and validate everything at once."""
    raw = read_yaml(path)
    override_pairs = [parse_override(text) for text in overrides]
    problems = [] if raw else [empty_recipe_problem(path)]
    problems += [
        f"{section} must be a mapping of keys ({path}), not {type(raw[section]).__name__}"
        for section in (*SHARED_SECTIONS, *STAGES)
        if raw.get(section) is not None and not isinstance(raw[section], dict)
    ]
    problems += find_unknown_keys(raw, str(path)) + find_unknown_keys(dict(override_pairs), "command line", dotted=True)

    merged: dict[str, Any] = {section: _mapping(raw.get(section)) for section in SHARED_SECTIONS}
    stage_section = _mapping(raw.get(stage))
    for section in SHARED_SECTIONS:  # the stage's own overrides of shared sections
        _deep_update(merged[section], _mapping(stage_section.pop(section, None)))
    merged[stage] = stage_section
    for key, value in override_pairs:  # command line wins over both
        parts = key.split(".")
        if parts[0] == stage and len(parts) > 2 and parts[1] in SHARED_SECTIONS:
            parts = parts[1:]
        if parts[0] in merged:  # a key of another stage is valid but irrelevant here
            _set_dotted(merged, parts, value)
    try:
        recipe = Recipe.model_validate(merged)
    except ValidationError as error:
        for item in error.errors():
            if item["type"] != "extra_forbidden":  # unknown keys are already reported, with suggestions
                where = ".".join(str(part) for part in item["loc"])
                problems.append(f"{where}: {item['msg']} (got {item['input']!r})")
    else:
        from alignpipe.training_checks import training_problems  # imports transformers: only once the recipe parsed

        problems += training_problems(recipe)
    if problems:
        raise AlignpipeError(f"Invalid recipe {path}:\n  " + "\n  ".join(problems))
    return recipe


def empty_recipe_problem(path: str | Path) -> str:
    required = "; ".join(f"{key} ({what})" for key, what in REQUIRED_KEYS.items())
    return (f"the recipe is empty; a recipe needs at least {required}, and every other key has a default "
            "(recipes/demo.yaml shows them all)")


def missing_required_keys(recipe: Recipe) -> list[str]:
    """Required keys that are unset, each with what it is: a stage cannot start without them."""
    return [f"{key} is required: {what}" for key, what in REQUIRED_KEYS.items()
            if _get_dotted(recipe, key.split(".")) is None]


def _get_dotted(tree: Any, parts: list[str]) -> Any:
    for part in parts:
        tree = getattr(tree, part)
    return tree


def _deep_update(target: dict[str, Any], overrides: dict[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def _mapping(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        raise AlignpipeError(f"Recipe {path} is a directory, not a YAML file.")
    if not path.is_file():
        raise AlignpipeError(f"Recipe file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise AlignpipeError(f"Recipe {path} is not UTF-8 text (byte {error.start + 1} is 0x{error.object[error.start]:02x}); "
                             "a recipe is a YAML text file such as recipes/demo.yaml.") from None
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        raise AlignpipeError(f"Recipe {path} is not valid YAML: {error}") from None
    except RecursionError:
        raise AlignpipeError(f"Recipe {path} is not a recipe: its YAML nests too deeply.") from None
    if not isinstance(raw, dict):
        raise AlignpipeError(f"Recipe {path} must be a mapping of sections (run:, model:, ...), not {type(raw).__name__}")
    return raw


def parse_override(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise AlignpipeError(f"Override {text!r} is not of the form key=value (e.g. train.max_steps=10)")
    # YAML parsing gives "3" -> 3, "true" -> True, "[q_proj,v_proj]" -> list, anything else stays a string.
    try:
        parsed = yaml.safe_load(value) if value != "" else ""
    except yaml.YAMLError:
        parsed = value
    return key.strip(), parsed


def find_unknown_keys(tree: dict[str, Any], source: str, dotted: bool = False) -> list[str]:
    valid = valid_key_paths()
    sections = {path.rsplit(".", 1)[0] for path in valid}
    keys = list(tree) if dotted else _leaf_paths(tree, sections)
    problems = []
    for key in keys:
        if key in valid or key in sections:
            continue
        guess = difflib.get_close_matches(key, valid + sorted(sections), n=1, cutoff=0.6)
        hint = f"; did you mean {guess[0]}?" if guess else ""
        problems.append(f"unknown key {key} ({source}){hint}")
    return problems


def _leaf_paths(tree: dict[str, Any], sections: set[str], prefix: str = "") -> list[str]:
    paths = []
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and path in sections:
            paths += _leaf_paths(value, sections, path + ".")
        else:
            paths.append(path)
    return paths


def _set_dotted(tree: dict[str, Any], parts: list[str], value: Any) -> None:
    for part in parts[:-1]:
        tree = tree.setdefault(part, {})
    tree[parts[-1]] = value


def recipe_as_yaml(recipe: Recipe, stage: str) -> str:
    """The shared sections and this stage's own: everything the stage runs with, and nothing it ignores."""
    sections = recipe.model_dump(include={*SHARED_SECTIONS, stage})
    return yaml.safe_dump(sections, sort_keys=False, allow_unicode=True)


def regate_settings(recipe_values: dict[str, Any], overrides: list[str]) -> GateConfig:
    """A stage's recipe gate settings with `gate.KEY=VALUE` overrides, validated like a recipe (for a re-gate)."""
    valid = [path for path in valid_key_paths() if path.startswith("gate.")]
    values = copy.deepcopy(recipe_values.get("gate") or {})
    problems = []
    for key, value in map(parse_override, overrides):
        if key not in valid:
            guess = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
            problems.append(f"{key} is not a gate setting" + (f"; did you mean {guess[0]}?" if guess else ""))
        elif key == "gate.enabled":
            problems.append("gate.enabled cannot be set on a re-gate: a trained stage is gated or stays ungated "
                            "(`trained`, verdict skipped); build on it with --force instead, which is recorded")
        else:
            _set_dotted(values, key.split(".")[1:], value)
    try:
        settings = GateConfig.model_validate(values)
    except ValidationError as error:
        problems += [f"gate.{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e['input']!r})" for e in error.errors()]
    if problems:
        raise AlignpipeError("Invalid gate settings:\n  " + "\n  ".join(problems))
    return settings


def changed_settings(recipe_gate: GateConfig, used: GateConfig) -> dict[str, list[Any]]:
    """Every gate setting that differs from the recipe's: dotted key -> [recipe value, value used]."""
    def flat(tree: dict[str, Any], prefix: str = "gate.") -> dict[str, Any]:
        leaves: dict[str, Any] = {}
        for key, value in tree.items():
            leaves.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
        return leaves

    old, new = flat(recipe_gate.model_dump()), flat(used.model_dump())
    # `enabled` only says whether the stage's own run gated it: a later gate run on a skipped stage is no override.
    return {key: [old[key], new[key]] for key in old if old[key] != new[key] and key != "gate.enabled"}
