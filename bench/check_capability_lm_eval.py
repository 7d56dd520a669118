"""Check alignpipe's MMLU scoring against lm-evaluation-harness itself, question by question.

    pip install --no-deps --target /tmp/lmeval lm-eval==0.4.13      # not a dependency of alignpipe
    PYTHONPATH=/tmp/lmeval:. python bench/check_capability_lm_eval.py --model embedded --limit 510

Builds one harness task per subject from the harness's own `mmlu` template (`_default_template_yaml`) and each
subject's own `description`, reading the questions from the shipped subset (or --input, the same JSONL layout)
instead of the hub, runs `lm_eval.simple_evaluate` zero-shot on the same model object, and compares every
question's choice and summed log-likelihoods with `alignpipe.gate.capability` (batched). Prints the agreement.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml


def harness_tasks(items_rows: list[dict], folder: Path) -> list[str]:
    import lm_eval

    tasks_dir = Path(lm_eval.__file__).parent / "tasks" / "mmlu" / "default"
    template = yaml.safe_load((tasks_dir / "_default_template_yaml").read_text())
    names = []
    for subject in sorted({row["subject"] for row in items_rows}):
        data = folder / f"{subject}.jsonl"
        data.write_text("".join(json.dumps({"question": r["question"], "subject": subject,
                                            "choices": [r[x] for x in "ABCD"], "answer": "ABCD".index(r["answer"])},
                                           ensure_ascii=False) + "\n" for r in items_rows if r["subject"] == subject))
        own = yaml.safe_load((tasks_dir / f"mmlu_{subject}.yaml").read_text())
        config = {key: value for key, value in template.items() if key not in ("fewshot_split", "fewshot_config")}
        config.update(task=f"check_mmlu_{subject}", dataset_path="json", dataset_kwargs={"data_files": {"test": str(data)}},
                      test_split="test", description=own["description"])
        (folder / f"check_mmlu_{subject}.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
        names.append(config["task"])
    return names


def main() -> None:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from alignpipe import models
    from alignpipe.gate.capability import SHIPPED, continuation_log_likelihoods, load_items

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--input", type=Path, default=Path("alignpipe/resources/gate") / SHIPPED["mmlu"])
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.input.read_text(encoding="utf-8").splitlines() if line.strip()][: args.limit]
    items = load_items("mmlu", args.input)[: args.limit]
    model, tokenizer = models.load_plain_causal_lm(args.model)
    started = time.perf_counter()
    ours = continuation_log_likelihoods(model, tokenizer, [(i.context, c) for i in items for c in i.continuations],
                                        args.batch_size)
    our_seconds = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        names = harness_tasks(rows, Path(folder))
        started = time.perf_counter()
        output = simple_evaluate(model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size),
                                 tasks=names, task_manager=TaskManager(include_path=folder), num_fewshot=0,
                                 log_samples=True)
        harness_seconds = time.perf_counter() - started
    theirs: dict[tuple[str, str], list[float]] = {}
    for name in names:
        for sample in output["samples"][name]:
            doc = sample["doc"]
            theirs[(doc["subject"], doc["question"])] = [float(r[0]) for r in sample["filtered_resps"]]
    agree, largest, ours_correct, theirs_correct = 0, 0.0, 0, 0
    for index, (item, row) in enumerate(zip(items, rows)):
        mine = ours[4 * index : 4 * index + 4]
        other = theirs[(row["subject"], row["question"])]
        largest = max(largest, max(abs(a - b) for a, b in zip(mine, other)))
        agree += mine.index(max(mine)) == other.index(max(other))
        ours_correct += mine.index(max(mine)) == item.answer
        theirs_correct += other.index(max(other)) == item.answer
    n = len(items)
    print(json.dumps({"n": n, "same_choice": agree / n, "accuracy_alignpipe": ours_correct / n,
                      "accuracy_lm_eval": theirs_correct / n, "max_abs_loglik_difference": largest,
                      "seconds_alignpipe": our_seconds, "seconds_lm_eval": harness_seconds}, indent=2))


if __name__ == "__main__":
    main()
