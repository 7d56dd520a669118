"""`split`: a seeded train/eval split into OUT_DIR/train.jsonl and OUT_DIR/eval.jsonl.

Two passes over the input (count, then write) so that the eval share is exact, as in alignpipe.data's
split_train_eval (round(n * fraction), at least one), while only the chosen line numbers are held in memory.
Deduplicate before splitting, or copies of an eval record stay in train.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from alignpipe.errors import AlignpipeError
from data_prep.records import JsonlWriter, iter_records


def split_file(input_path: str | Path, output_dir: str | Path, eval_fraction: float = 0.05, seed: int = 42
               ) -> dict[str, Any]:
    if not 0.0 < eval_fraction < 1.0:
        raise AlignpipeError(f"--eval-fraction must be between 0 and 1 (exclusive), got {eval_fraction}")
    total = sum(1 for _ in iter_records(input_path))
    n_eval = max(1, round(total * eval_fraction))
    if n_eval >= total:
        raise AlignpipeError(f"--eval-fraction {eval_fraction} of {total} record(s) leaves no training records.")
    eval_positions = set(random.Random(seed).sample(range(total), n_eval))
    output_dir = Path(output_dir)
    train, held_out = JsonlWriter(output_dir / "train.jsonl"), None
    try:
        held_out = JsonlWriter(output_dir / "eval.jsonl")
        for position, record in enumerate(iter_records(input_path)):
            (held_out if position in eval_positions else train).write(record.data)
    except BaseException:
        train.abort()
        if held_out is not None:
            held_out.abort()
        raise
    train.close()
    held_out.close()
    return {"read": total, "train": str(train.path), "train_records": train.count,
            "eval": str(held_out.path), "eval_records": held_out.count, "seed": seed}
