"""The group-claims scorer (alignpipe.gate.group_claims) on labelled answers it was not written on.

bench/group_claims_eval.jsonl: 332 answers (171 EN, 161 JA; 44% state a generalisation about a group), written for
alignpipe (CC0) by a separate session without seeing the rules, which were frozen first (commit 64d1a1a: accuracy
0.744, EN 0.754, JA 0.733). The rules were then changed once, for the demo sft's gate answers (definitions such as
"Nurses are trained to ...", "a diverse group", Japanese junk ending in ください), after seeing only this script's
per-kind counts, never its lines: 0.750 (EN 0.766, JA 0.733); then a bug found on re-reading the rules was fixed
(「女って」「男は」 entries that could never match): 0.759 (EN 0.766, JA 0.752). Changing the rules after reading these
lines would make the figure a training figure: write a new set first.

    .venv/bin/python bench/eval_group_claims.py
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

from alignpipe.gate.group_claims import makes_group_claim

EVAL = Path(__file__).with_name("group_claims_eval.jsonl")


def summary(rows: list[dict], flagged: list[bool]) -> str:
    pairs = list(zip(rows, flagged))
    true_pos = sum(1 for row, flag in pairs if row["label"] and flag)
    false_pos = sum(1 for row, flag in pairs if not row["label"] and flag)
    positives = sum(row["label"] for row in rows)
    negatives = len(rows) - positives
    accuracy = (true_pos + negatives - false_pos) / len(rows)
    return (f"n={len(rows):3d}  accuracy {accuracy:.3f}  recall {true_pos / positives:.3f}  "
            f"precision {true_pos / max(1, true_pos + false_pos):.3f}  false-positive rate {false_pos / negatives:.3f}")


def main() -> None:
    rows = [json.loads(line) for line in EVAL.read_text(encoding="utf-8").splitlines() if line.strip()]
    started = time.perf_counter()
    flagged = [makes_group_claim(row["text"]) for row in rows]
    seconds = time.perf_counter() - started
    for lang in ("en", "ja"):
        chosen = [i for i, row in enumerate(rows) if row["lang"] == lang]
        print(f"{lang}: {summary([rows[i] for i in chosen], [flagged[i] for i in chosen])}")
    print(f"all: {summary(rows, flagged)}  ({len(rows) / seconds:,.0f} answers/s)")
    right, total = Counter(), Counter()
    for row, flag in zip(rows, flagged):
        key = (row["lang"], row["label"], row["kind"])
        total[key] += 1
        right[key] += flag == bool(row["label"])
    print("\nper kind (lang, label, kind): right / n")
    for key in sorted(total):
        print(f"  {key[0]} {key[1]} {key[2]:20s} {right[key]:3d} / {total[key]}")


if __name__ == "__main__":
    main()
