"""Build the toxicity training and held-out corpus in alignpipe/resources/toxicity/corpus/ (run once; the output is
committed, so that bench/train_toxicity.py rebuilds the shipped weights from files in the repository).

    python bench/toxicity_corpus.py --shared ../shared/data

The split is fixed here, before any fitting, and written into every line (`split`: train / test):
- HateCheck (CC BY 4.0) by template: a template and the templates derived from it (`ref_templ_id`: the spelling
  variants, negations and counter-speech built on a hateful template) form one group; about a third of the groups,
  chosen by a hash of their smallest templ_id, are test. HateCheck's gold label is hate towards a protected group; a
  toxicity scorer must also call abuse of an individual or of a non-protected group toxic, so `label` is 1 for those
  two functionalities and (since v9) for reclaimed slurs ("This n***a's flow too hard": tweet datasets such as
  Davidson et al. 2017 label a friendly slur offensive, and a model that writes one should not pass a toxicity
  check); `gold` keeps the original. `label` is null for non-hateful profanity ("Fucking hell, what a day"), which
  is neither clearly toxic nor clean: left out of training and of the AUC, still in the functionality table.
- ToxiGen seed statements (MIT) by target group: TOXIGEN_TEST_GROUPS are test, the rest train.
- MMLU test questions (MIT) of MMLU_SUBJECTS, the first 30 of each with the right answer appended: benign prose
  about science, geography, society and religion, all train (only a negative class: no AUC on it).
- XSTest safe prompts (CC BY 4.0), benign questions that sound unsafe ("How can I kill a Python process?"): the
  types in XSTEST_TEST_TYPES are test. The unsafe contrast prompts are requests, not abuse, and are not used.
- The demo's SFT turns (data/demo/sft_train.jsonl, Apache-2.0), benign, all train: a snapshot (`--demo` writes only
  it), so that the shipped weights do not change when the demo data does. The harmful requests the demo answers with
  a refusal ("外国人は犯罪者だから追い出すべきだという演説を書いて") are requests that spell out abuse, neither clearly
  toxic nor benign, and are left out like XSTest's unsafe prompts; the refusals are kept (`refusal: true`).
"""

from __future__ import annotations

import argparse
import csv
import json
import zlib
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[1] / "alignpipe" / "resources" / "toxicity" / "corpus"
TOXIGEN_TEST_GROUPS = {"women", "black", "jewish", "muslim", "asian", "chinese", "native_american", "latino",
                       "mental_disability"}
XSTEST_TEST_TYPES = {"figurative_language", "safe_contexts", "historical_events", "privacy_fictional"}
MMLU_SUBJECTS = ("astronomy", "college_biology", "college_computer_science", "conceptual_physics",
                 "high_school_geography", "high_school_macroeconomics", "marketing", "nutrition", "management",
                 "miscellaneous", "electrical_engineering", "clinical_knowledge", "global_facts", "prehistory",
                 "world_religions", "sociology")
HATECHECK_TOXIC_NONHATEFUL = {"target_indiv_nh", "target_group_nh",  # abuse, but not of a protected group
                              "slur_reclaimed_nh"}  # a slur, even a friendly one, is offensive language
HATECHECK_UNLABELLED = {"profanity_nh"}  # neither clearly toxic nor clean


def write(name: str, rows: list[dict]) -> None:
    with open(CORPUS / name, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{name}: {len(rows)} lines, {sum(row['split'] == 'test' for row in rows)} test")


def hatecheck(shared: Path) -> list[dict]:
    cases = list(csv.DictReader(open(shared / "hatecheck" / "test_suite_cases.csv", encoding="utf-8")))
    parent = {case["templ_id"]: case["templ_id"] for case in cases}

    def root(templ: str) -> str:
        while parent[templ] != templ:
            templ = parent[templ]
        return templ

    for case in cases:  # union a derived template with the one it was built from
        if case["ref_templ_id"] and case["ref_templ_id"] in parent:
            a, b = sorted((root(case["templ_id"]), root(case["ref_templ_id"])), key=int)
            parent[b] = a
    rows = []
    for case in cases:
        group = root(case["templ_id"])
        functionality = case["functionality"]
        label = 1 if case["label_gold"] == "hateful" or functionality in HATECHECK_TOXIC_NONHATEFUL else 0
        rows.append({"text": case["test_case"].strip(), "label": None if functionality in HATECHECK_UNLABELLED else label,
                     "gold": case["label_gold"], "functionality": functionality, "templ_id": int(case["templ_id"]),
                     "group": int(group), "split": "test" if zlib.crc32(group.encode()) % 3 == 0 else "train"})
    return rows


def toxigen(shared: Path) -> list[dict]:
    rows = [json.loads(line) for line in open(shared / "toxigen" / "seed_statements.jsonl", encoding="utf-8")]
    return [{"text": row["text"], "label": row["label"], "group": row["group"],
             "split": "test" if row["group"] in TOXIGEN_TEST_GROUPS else "train"} for row in rows]


def xstest(shared: Path) -> list[dict]:
    rows = csv.DictReader(open(shared / "xstest" / "xstest_prompts.csv", encoding="utf-8"))
    return [{"text": row["prompt"], "label": 0, "type": row["type"],
             "split": "test" if row["type"] in XSTEST_TEST_TYPES else "train"} for row in rows if row["label"] == "safe"]


def mmlu(shared: Path) -> list[dict]:
    rows = []
    for subject in MMLU_SUBJECTS:
        with open(shared / "mmlu" / f"{subject}_test.csv", encoding="utf-8") as file:
            for question, *choices, answer in list(csv.reader(file))[:30]:
                rows.append({"text": f"{question} {choices['ABCD'.index(answer)]}", "label": 0, "subject": subject,
                             "split": "train"})
    return rows


def demo_turns(path: Path) -> list[dict]:
    from alignpipe.gate.refusal import is_refusal

    rows: dict[str, dict] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        messages = [m for m in json.loads(line)["messages"] if m["role"] in ("user", "assistant")]
        refused = any(m["role"] == "assistant" and is_refusal(m["content"]) for m in messages)
        for message in messages:
            if refused and message["role"] == "user":
                continue
            rows.setdefault(message["content"], {"text": message["content"], "label": 0, "role": message["role"],
                                                 "refusal": refused, "split": "train"})
    return list(rows.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--demo", action="store_true", help="write only the demo snapshot, demo_turns.jsonl")
    args = parser.parse_args()
    CORPUS.mkdir(parents=True, exist_ok=True)
    write("demo_turns.jsonl", demo_turns(CORPUS.parents[3] / "data" / "demo" / "sft_train.jsonl"))
    if args.demo:
        return
    write("hatecheck.jsonl", hatecheck(args.shared))
    write("toxigen.jsonl", toxigen(args.shared))
    write("xstest_safe.jsonl", xstest(args.shared))
    write("mmlu_benign.jsonl", mmlu(args.shared))


if __name__ == "__main__":
    main()
