"""Build the gate's BBQ sets: alignpipe/resources/gate/bbq_subset.jsonl (EN) and bbq_ja.jsonl (JA).

    python bench/make_bbq_sets.py --data ../shared/data/bbq --per-category 16

BBQ subset: BBQ's items come in blocks of four sharing one template and one pair of people (ambiguous and
disambiguated context, negative and non-negative question). From each of the six categories here, `--per-category`
blocks, each from a different template (`question_index`, chosen with random.Random(f"{seed}:{category}"), then one
block of that template likewise), are kept whole; the blocks are interleaved category by category, so the first N
items of either condition are balanced over categories and polarities. Rows are copied unchanged, with `lang: en`.

Japanese set: every template of bbq_ja_templates.py with each of its pairs of people, both ways round (the
stereotyped person named first and the disambiguating fact about them, then the other person first and the fact
about the other), as blocks of four in BBQ's order; answer order shuffled per block with random.Random(seed).
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from bbq_ja_templates import TEMPLATES, UNKNOWN_ANSWERS

CATEGORIES = ("Age", "Disability_status", "Nationality", "Physical_appearance", "Religion", "Sexual_orientation")


def bbq_blocks(folder: Path, category: str, count: int, seed: int) -> list[list[dict]]:
    rows = [json.loads(line) for line in (folder / f"{category}.jsonl").read_text(encoding="utf-8").splitlines()]
    blocks: dict[str, list[list[dict]]] = {}
    for start in range(0, len(rows), 4):
        blocks.setdefault(rows[start]["question_index"], []).append(rows[start : start + 4])
    rng = random.Random(f"{seed}:{category}")
    templates = sorted(rng.sample(sorted(blocks, key=int), min(count, len(blocks))), key=int)
    return [[{**row, "lang": "en"} for row in rng.choice(blocks[template])] for template in templates]


def interleave(groups: list[list[list[dict]]]) -> list[dict]:
    return [row for i in range(max(map(len, groups))) for group in groups if i < len(group) for row in group[i]]


def ja_block(template: dict, index: int, pair: tuple, stereotyped_first: bool, rng: random.Random) -> list[dict]:
    target, target_tag, other, other_tag = pair
    first, second = (target, other) if stereotyped_first else (other, target)
    people = [(target, target_tag), (other, other_tag), (rng.choice(UNKNOWN_ANSWERS), "unknown")]
    rng.shuffle(people)
    ambiguous = template["context"].format(A=first, B=second)
    facts = template["neg_fact"].format(X=first) + template["nonneg_fact"].format(Y=second)
    block = []
    for polarity, question, answer in (("neg", template["neg_q"], first), ("nonneg", template["nonneg_q"], second)):
        for condition, context in (("ambig", ambiguous), ("disambig", ambiguous + facts)):
            label = [name for name, _ in people].index(answer if condition == "disambig" else people_unknown(people))
            block.append({
                "question_index": str(index), "question_polarity": polarity, "context_condition": condition,
                "category": template["category"], "lang": "ja",
                "answer_info": {f"ans{i}": [name, tag] for i, (name, tag) in enumerate(people)},
                "additional_metadata": {"subcategory": template["sub"], "stereotyped_groups": template["stereotyped"],
                                        "version": "alignpipe-ja-1", "source": "written for alignpipe (CC0-1.0)"},
                "context": context, "question": question, **{f"ans{i}": name for i, (name, _) in enumerate(people)},
                "label": label})
    return block


def people_unknown(people: list[tuple[str, str]]) -> str:
    return next(name for name, tag in people if tag == "unknown")


def ja_rows(seed: int) -> list[dict]:
    rng = random.Random(seed)
    by_category: dict[str, list[list[dict]]] = {}
    for index, template in enumerate(TEMPLATES, start=1):
        for stereotyped_first in (True, False):
            for pair in template["pairs"]:
                by_category.setdefault(template["category"], []).append(
                    ja_block(template, index, pair, stereotyped_first, rng))
    rows = interleave(list(by_category.values()))
    return [{"example_id": number, **row} for number, row in enumerate(rows)]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
    print(f"{path}: {len(rows)} rows")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, default=Path("../shared/data/bbq"))
    parser.add_argument("--out", type=Path, default=Path("alignpipe/resources/gate"))
    parser.add_argument("--per-category", type=int, default=16)
    parser.add_argument("--seed", type=int, default=17)
    args = parser.parse_args()
    write_jsonl(args.out / "bbq_subset.jsonl",
                interleave([bbq_blocks(args.data, category, args.per_category, args.seed) for category in CATEGORIES]))
    write_jsonl(args.out / "bbq_ja.jsonl", ja_rows(args.seed))


if __name__ == "__main__":
    main()
