"""The algorithms table: every record is a valid rlhf.algorithm with a data loader, and the stage reads it."""

from __future__ import annotations

import pytest

from alignpipe import data
from alignpipe.algorithms import ALGORITHMS, DATA_DESCRIPTIONS
from alignpipe.config import Recipe
from conftest import separable_pairs, write_jsonl


@pytest.mark.parametrize("name", list(ALGORITHMS))
def test_every_algorithm_validates_and_loads_its_data(name, tmp_path):
    recipe = Recipe.model_validate({"rlhf": {"algorithm": name}})
    algorithm = ALGORITHMS[recipe.rlhf.algorithm]
    assert algorithm.name == name and algorithm.default_beta > 0 and algorithm.beta_source and algorithm.trainer
    assert algorithm.data in data.PURPOSES and DATA_DESCRIPTIONS[algorithm.data]
    records = data.load_records(write_jsonl(tmp_path / "pairs.jsonl", separable_pairs(4)), algorithm.data)
    assert len(records) and "prompt" in records[0]  # pairs suit every algorithm
    # Online algorithms learn from prompts (a pair's prompt, once each); the others from the answers too.
    assert algorithm.online == (set(records[0]) == {"prompt"})
    assert algorithm.critic == (name == "ppo")  # the one actor-critic, whose roles share one base
