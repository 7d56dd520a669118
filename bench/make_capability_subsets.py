"""Build the gate's capability subsets (alignpipe/resources/gate/{mmlu,jmmlu,jcommonsenseqa}_subset.jsonl).

    python bench/make_capability_subsets.py --data ../shared/data --per-subject 10 --jcqa 520

MMLU and JMMLU: `--per-subject` questions from every subject's test CSV, chosen with random.Random(f"{seed}:{subject}")
(seed 17), kept in file order, then interleaved subject by subject (alphabetical) so that the first N lines are
balanced across subjects. JCommonsenseQA: `--jcqa` questions of JGLUE v1.3's validation split (its test split's
labels are what leaderboards report on, so the gate leaves it alone), chosen with random.Random(seed), in file
order. Rows are copied unchanged; MMLU/JMMLU rows become {"subject", "question", "A".."D", "answer"}.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path


def subject_rows(folder: Path, per_subject: int, seed: int) -> list[list[dict]]:
    groups = []
    for file in sorted(folder.glob("*.csv")):
        subject = file.stem.removesuffix("_test")
        with file.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.reader(handle))
        picked = sorted(random.Random(f"{seed}:{subject}").sample(range(len(rows)), min(per_subject, len(rows))))
        groups.append([dict(subject=subject, question=rows[i][0], A=rows[i][1], B=rows[i][2], C=rows[i][3],
                            D=rows[i][4], answer=rows[i][5].strip()) for i in picked])
    return groups


def interleave(groups: list[list[dict]]) -> list[dict]:
    return [group[i] for i in range(max(map(len, groups))) for group in groups if i < len(group)]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(f"{path}: {len(rows)} rows")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("alignpipe/resources/gate"))
    parser.add_argument("--per-subject", type=int, default=10)
    parser.add_argument("--jcqa", type=int, default=520)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    for task in ("mmlu", "jmmlu"):
        write_jsonl(args.out / f"{task}_subset.jsonl", interleave(subject_rows(args.data / task, args.per_subject, args.seed)))
    lines = (args.data / "jcommonsenseqa" / "valid-v1.3.json").read_text(encoding="utf-8").splitlines()
    picked = sorted(random.Random(args.seed).sample(range(len(lines)), args.jcqa))
    write_jsonl(args.out / "jcommonsenseqa_subset.jsonl", [json.loads(lines[i]) for i in picked])


if __name__ == "__main__":
    main()
