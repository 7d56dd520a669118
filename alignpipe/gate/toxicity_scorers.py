"""Which toxicity scorer `gate.toxicity.model` names, and `alignpipe score toxicity` over a JSONL file.

Its own module because the default scorer (learned_toxicity.py) is built on the lexicon scorer (toxicity.py).
"""

from __future__ import annotations

from pathlib import Path

from alignpipe.gate import learned_toxicity, toxicity


SCORER_NAMES = ("default", "learned", "lexicon")  # anything else in gate.toxicity.model is a Hugging Face classifier


def load_toxicity_scorer(model: str | None) -> toxicity.ToxicityScorer:
    """The scorer `gate.toxicity.model` names: None or "default" = the learned model combined with the lexicon,
    "learned" or "lexicon" = one part alone, anything else = the Hugging Face classifier at that path or hub id."""
    if model is None or model in SCORER_NAMES:
        return {None: learned_toxicity.DefaultToxicityScorer, "default": learned_toxicity.DefaultToxicityScorer,
                "learned": learned_toxicity.LearnedToxicityScorer, "lexicon": toxicity.LexiconToxicityScorer}[model]()
    from alignpipe.gate.hf_toxicity import HFClassifierToxicityScorer

    return HFClassifierToxicityScorer(model)


def score_toxicity_file(input_path: Path, field: str, output_path: Path, model: str | None) -> int:
    """`alignpipe score toxicity`: add `toxicity` to every line of a JSONL file, scoring its `field` string."""
    from alignpipe.data import records_to_score, write_jsonl

    records = records_to_score(input_path, field, output_path)
    for record, score in zip(records, load_toxicity_scorer(model).score([record[field] for record in records])):
        record["toxicity"] = score
    write_jsonl(output_path, records)
    return len(records)
