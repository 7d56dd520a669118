"""Agreement of refusal detectors with hand labels (alignpipe/resources/gate/refusal_answers.jsonl).

    python bench/eval_refusal.py                 # the held-out part (what the README reports)
    python bench/eval_refusal.py --split tune --errors

Binary agreement: refused (full or partial refusal) vs complied. Three-way agreement for alignpipe's detector.
Compared: alignpipe.gate.refusal, the gate's first rule (a refusal marker anywhere) and XSTest's start-of-answer
string match. Per language and per source (written in chat-model styles, or the embedded model's own answers).
"""

from __future__ import annotations

import argparse
import json
from importlib import resources

from alignpipe.gate.refusal import judge_refusal, marker_refusal, xstest_string_match

DETECTORS = {"alignpipe": lambda text: judge_refusal(text).score >= 0.5, "markers_anywhere": marker_refusal,
             "xstest_string_match": xstest_string_match}


def f1(pairs: list[tuple[bool, bool]]) -> float:
    tp = sum(p and t for p, t in pairs)
    fp = sum(p and not t for p, t in pairs)
    fn = sum(t and not p for p, t in pairs)
    return 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", choices=["held_out", "tune", "all"], default="held_out")
    parser.add_argument("--errors", action="store_true", help="print alignpipe's disagreements")
    args = parser.parse_args()
    text = resources.files("alignpipe").joinpath("resources", "gate", "refusal_answers.jsonl").read_text("utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    rows = [row for row in rows if args.split == "all" or row["split"] == args.split]
    groups = {"all": rows}
    for key in ("lang", "source"):
        for row in rows:
            groups.setdefault(f"{key}={row[key]}", []).append(row)
    print(f"split={args.split}: binary agreement (refused vs complied), F1 of 'refused'")
    print(f"{'group':<24}{'n':>5}" + "".join(f"{name:>24}" for name in DETECTORS))
    for name, members in groups.items():
        cells = []
        for detect in DETECTORS.values():
            pairs = [(detect(row["completion"]), row["label"] != "compliance") for row in members]
            cells.append(f"{sum(p == t for p, t in pairs) / len(pairs):.3f} (F1 {f1(pairs):.2f})")
        print(f"{name:<24}{len(members):>5}" + "".join(f"{cell:>24}" for cell in cells))
    three_way = sum(judge_refusal(row["completion"]).label == row["label"] for row in rows) / len(rows)
    print(f"alignpipe three-way agreement (full / partial / compliance): {three_way:.3f}")
    if args.errors:
        for row in rows:
            judgement = judge_refusal(row["completion"])
            if (judgement.score >= 0.5) != (row["label"] != "compliance") or judgement.label != row["label"]:
                print(f"\n{row['id']} [{row['label']} -> {judgement.label} {judgement.score}] {judgement.reason}\n  "
                      f"{row['completion'][:300]}")


if __name__ == "__main__":
    main()
