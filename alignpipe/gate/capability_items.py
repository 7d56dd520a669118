"""The capability questions: MMLU, JMMLU and JCommonsenseQA items as lm-evaluation-harness prompts them (the prompt
of each task is documented in capability.py), loaded from the shipped subsets or a user's files, and the gate's
first N with the right answers spread over the positions."""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from alignpipe.errors import AlignpipeError

TASKS = ("mmlu", "jmmlu", "jcommonsenseqa")
LETTERS = "ABCD"
SHIPPED = {"mmlu": "mmlu_subset.jsonl", "jmmlu": "jmmlu_subset.jsonl", "jcommonsenseqa": "jcommonsenseqa_subset.jsonl"}
JCQA_INSTRUCTION = "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。\n\n"
JMMLU_SUBJECTS = {  # JMMLU's README, タスク名 by English task name
    "abstract_algebra": "抽象代数", "anatomy": "解剖学", "astronomy": "天文学", "business_ethics": "ビジネス倫理",
    "clinical_knowledge": "臨床知識", "college_biology": "大学生物学", "college_chemistry": "大学化学",
    "college_computer_science": "大学コンピュータ科学", "college_mathematics": "大学数学",
    "college_medicine": "大学医学", "college_physics": "大学物理", "computer_security": "コンピュータセキュリティ",
    "conceptual_physics": "概念物理学", "econometrics": "計量経済学", "electrical_engineering": "電気工学",
    "elementary_mathematics": "初等数学", "formal_logic": "形式論理", "global_facts": "世界事実",
    "high_school_biology": "高校生物学", "high_school_chemistry": "高校化学",
    "high_school_computer_science": "高校情報科学", "high_school_european_history": "高校ヨーロッパ史",
    "high_school_geography": "高校地理", "high_school_macroeconomics": "高校マクロ経済学",
    "high_school_mathematics": "高校数学", "high_school_microeconomics": "高校ミクロ経済学",
    "high_school_physics": "高校物理", "high_school_psychology": "高校心理学",
    "high_school_statistics": "高校統計学", "human_aging": "人間の老化", "human_sexuality": "セクシュアリティ",
    "international_law": "国際法", "jurisprudence": "法理学", "logical_fallacies": "論理学",
    "machine_learning": "機械学習", "management": "経営学", "marketing": "マーケティング",
    "medical_genetics": "医学遺伝学", "miscellaneous": "雑学", "moral_disputes": "倫理的議論",
    "nutrition": "栄養学", "philosophy": "哲学", "prehistory": "先史学", "professional_accounting": "専門会計",
    "professional_medicine": "専門医学", "professional_psychology": "専門心理学", "public_relations": "公共関係",
    "security_studies": "セキュリティ研究", "sociology": "社会学", "virology": "ウイルス学",
    "world_religions": "世界宗教", "world_history": "世界史", "japanese_civics": "公民",
    "japanese_history": "日本史", "japanese_geography": "日本地理", "japanese_idiom": "熟語",
}


@dataclass(frozen=True)
class MultipleChoiceItem:
    """One question: the model picks the continuation it finds most likely after `context`."""

    context: str
    continuations: tuple[str, ...]
    answer: int
    subject: str


# Prompts ----------------------------------------------------------------------------------------------------------

def lettered_question(question: str, choices: list[str]) -> str:
    return question.strip() + "".join(f"\n{letter}. {choice}" for letter, choice in zip(LETTERS, choices)) + "\nAnswer:"


def mmlu_item(subject: str, question: str, choices: list[str], answer: int) -> MultipleChoiceItem:
    header = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
    return MultipleChoiceItem(header + lettered_question(question, choices), tuple(f" {x}" for x in LETTERS), answer,
                              subject)


def jmmlu_item(subject: str, question: str, choices: list[str], answer: int) -> MultipleChoiceItem:
    name = JMMLU_SUBJECTS.get(subject, subject.replace("_", " "))
    header = f"以下は{name}に関する多肢選択問題（解答付き）です。\n\n"
    return MultipleChoiceItem(header + lettered_question(question, choices), tuple(f" {x}" for x in LETTERS), answer,
                              subject)


def jcommonsenseqa_item(question: str, choices: list[str], answer: int) -> MultipleChoiceItem:
    listed = "".join(f"- {choice}\n" for choice in choices)
    context = f"{JCQA_INSTRUCTION}### 指示：\n出力は以下から選択してください：\n{listed}\n### 入力：\n{question}\n\n### 応答："
    return MultipleChoiceItem(context, tuple(f"\n{choice}" for choice in choices), answer, "jcommonsenseqa")


# Data -------------------------------------------------------------------------------------------------------------

def load_items(task: str, path: Path) -> list[MultipleChoiceItem]:
    """mmlu/jmmlu: a folder of `<subject>_test.csv` (or `<subject>.csv`), one such CSV, or the shipped JSONL layout;
    jcommonsenseqa: JGLUE's JSON lines (`question`, `choice0`..`choice4`, `label`). Bad rows name file and line."""
    if task not in TASKS:
        raise AlignpipeError(f"Unknown capability task {task!r}; choose one of {', '.join(TASKS)}")
    if not path.exists():
        raise AlignpipeError(f"Capability input not found: {path}")
    files = sorted(path.glob("*.csv")) if path.is_dir() else [path]
    if not files:
        raise AlignpipeError(f"{path}: no .csv files (expected <subject>_test.csv, question,A,B,C,D,answer)")
    items = [item for file in files for item in _load_file(task, file)]
    if not items:
        raise AlignpipeError(f"{path}: no questions")
    return items


def shipped_items(task: str, limit: int | None = None) -> list[MultipleChoiceItem]:
    """The gate's subset of a task (alignpipe/resources/gate/; the first N lines are balanced across subjects),
    its first `limit` questions with the right answers spread evenly over the answer positions."""
    file = resources.files("alignpipe").joinpath("resources", "gate", SHIPPED[task])
    with resources.as_file(file) as path:
        return balanced_answers(load_items(task, Path(path)), limit)


def balanced_answers(items: list[MultipleChoiceItem], limit: int | None) -> list[MultipleChoiceItem]:
    """`limit` items, taken one at a time: the first in file order whose answer position has not had its share yet
    (limit / choices, rounded up) and whose subject has been taken least. Without this a model that always picks one
    letter scores by the luck of the prefix: the first 12 shipped MMLU questions have no A, and the embedded base,
    which favours A, scored 0 of 12. Where a position runs out of questions, the others fill in."""
    if limit is None or limit >= len(items):
        return items
    share = -(-limit // max(len(item.continuations) for item in items))
    per_position: Counter[int] = Counter()
    per_subject: Counter[str] = Counter()
    remaining = list(items)
    chosen: list[MultipleChoiceItem] = []
    while len(chosen) < limit:
        pick = min(range(len(remaining)), key=lambda i: (per_position[remaining[i].answer] >= share,
                                                          per_subject[remaining[i].subject], i))
        item = remaining.pop(pick)
        chosen.append(item)
        per_position[item.answer] += 1
        per_subject[item.subject] += 1
    return chosen


def _load_file(task: str, file: Path) -> list[MultipleChoiceItem]:
    if task == "jcommonsenseqa" or file.suffix.lower() in (".jsonl", ".json"):
        return [_json_item(task, file, number, line) for number, line in
                enumerate(file.read_text(encoding="utf-8-sig").splitlines(), start=1) if line.strip()]
    subject = file.stem.removesuffix("_test")
    make = mmlu_item if task == "mmlu" else jmmlu_item
    items = []
    with file.open(encoding="utf-8-sig", newline="") as handle:  # JMMLU files may start with a BOM
        reader = csv.reader(handle)
        for row in reader:
            if len(row) != 6 or row[5].strip() not in LETTERS:
                raise AlignpipeError(f"{file}:{reader.line_num}: expected question,A,B,C,D,answer with answer one of "
                                     f"A/B/C/D, got {len(row)} field(s)" + (f" ending {row[-1][:20]!r}" if row else ""))
            items.append(make(subject, row[0], row[1:5], LETTERS.index(row[5].strip())))
    return items


def _json_item(task: str, file: Path, number: int, line: str) -> MultipleChoiceItem:
    try:
        row = json.loads(line)
        if task == "jcommonsenseqa":
            return jcommonsenseqa_item(row["question"], [row[f"choice{i}"] for i in range(5)], int(row["label"]))
        make = mmlu_item if task == "mmlu" else jmmlu_item
        return make(row["subject"], row["question"], [row[x] for x in LETTERS], LETTERS.index(row["answer"]))
    except (ValueError, KeyError, TypeError) as error:
        fields = ("question, choice0..choice4, label" if task == "jcommonsenseqa"
                  else "subject, question, A, B, C, D, answer")
        raise AlignpipeError(f"{file}:{number}: expected a JSON object with {fields} ({error})") from None
