"""Check alignpipe's MMLU and JCommonsenseQA scoring against lm-evaluation-harness itself, question by question.

    pip install --no-deps --target /tmp/lmeval lm-eval==0.4.13 sacrebleu portalocker tabulate colorama lxml
    PYTHONPATH=/tmp/lmeval:. python bench/check_capability_lm_eval.py --model embedded --task mmlu

(lm-eval is not a dependency of alignpipe.) mmlu: one harness task per subject from the harness's own `mmlu`
template (`_default_template_yaml`) and each subject's own `description`; jcommonsenseqa: the harness's
`ja_leaderboard_jcommonsenseqa.yaml` zero-shot. The questions come from the shipped subset (or --input, the same
layout) instead of the hub. Runs `lm_eval.simple_evaluate` on the same model object and compares every question's
choice and summed log-likelihoods with `alignpipe.gate.capability` (batched). Prints the agreement.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import yaml


def harness_tasks(task: str, rows: list[dict], folder: Path) -> list[str]:
    import lm_eval

    tasks_dir = Path(lm_eval.__file__).parent / "tasks"
    if task == "jcommonsenseqa":
        data = folder / "jcqa.jsonl"
        data.write_text("".join(json.dumps({**r, "choices": [r[f"choice{i}"] for i in range(5)]}, ensure_ascii=False)
                                + "\n" for r in rows))
        loader = type("Loader", (yaml.SafeLoader,), {})
        loader.add_constructor("!function", lambda _loader, _node: None)
        source = (tasks_dir / "japanese_leaderboard" / "ja_leaderboard_jcommonsenseqa.yaml").read_text()
        config = {key: value for key, value in yaml.load(source, Loader=loader).items()
                  if key not in ("process_docs", "tag", "training_split", "validation_split", "fewshot_split",
                                 "num_fewshot")}
        config.update(task="check_jcqa", dataset_path="json", dataset_name=None, test_split="test",
                      dataset_kwargs={"data_files": {"test": str(data)}})
        (folder / "check_jcqa.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
        return ["check_jcqa"]
    template = yaml.safe_load((tasks_dir / "mmlu" / "default" / "_default_template_yaml").read_text())
    names = []
    for subject in sorted({row["subject"] for row in rows}):
        data = folder / f"{subject}.jsonl"
        data.write_text("".join(json.dumps({"question": r["question"], "subject": subject,
                                            "choices": [r[x] for x in "ABCD"], "answer": "ABCD".index(r["answer"])},
                                           ensure_ascii=False) + "\n" for r in rows if r["subject"] == subject))
        own = yaml.safe_load((tasks_dir / "mmlu" / "default" / f"mmlu_{subject}.yaml").read_text())
        config = {key: value for key, value in template.items() if key not in ("fewshot_split", "fewshot_config")}
        config.update(task=f"check_mmlu_{subject}", dataset_path="json", dataset_kwargs={"data_files": {"test": str(data)}},
                      test_split="test", description=own["description"])
        (folder / f"check_mmlu_{subject}.yaml").write_text(yaml.safe_dump(config, allow_unicode=True))
        names.append(config["task"])
    return names


def question_key(task: str, doc: dict) -> tuple:
    return (doc["q_id"],) if task == "jcommonsenseqa" else (doc["subject"], doc["question"])


def main() -> None:
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    from alignpipe import models
    from alignpipe.gate.capability import SHIPPED, continuation_log_likelihoods, load_items

    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--task", choices=["mmlu", "jcommonsenseqa"], default="mmlu")
    parser.add_argument("--input", type=Path, default=None, help="default: the shipped subset")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    path = args.input or Path("alignpipe/resources/gate") / SHIPPED[args.task]
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()][: args.limit]
    items = load_items(args.task, path)[: args.limit]
    model, tokenizer = models.load_plain_causal_lm(args.model)
    started = time.perf_counter()
    ours = continuation_log_likelihoods(model, tokenizer, [(i.context, c) for i in items for c in i.continuations],
                                        args.batch_size)
    our_seconds = time.perf_counter() - started
    print(f"alignpipe: {len(items)} questions in {our_seconds:.0f} s", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        names = harness_tasks(args.task, rows, Path(folder))
        started = time.perf_counter()
        output = simple_evaluate(model=HFLM(pretrained=model, tokenizer=tokenizer, batch_size=args.batch_size),
                                 tasks=names, task_manager=TaskManager(include_path=folder), num_fewshot=0,
                                 log_samples=True)
        harness_seconds = time.perf_counter() - started
    theirs: dict[tuple[str, str], list[float]] = {}
    for name in names:
        for sample in output["samples"][name]:
            doc = sample["doc"]
            theirs[question_key(args.task, doc)] = [float(r[0]) for r in sample["filtered_resps"]]
    agree, largest, ours_correct, theirs_correct = 0, 0.0, 0, 0
    width = len(items[0].continuations)
    for index, (item, row) in enumerate(zip(items, rows)):
        mine = ours[width * index : width * index + width]
        other = theirs[question_key(args.task, row)]
        largest = max(largest, max(abs(a - b) for a, b in zip(mine, other)))
        agree += mine.index(max(mine)) == other.index(max(other))
        ours_correct += mine.index(max(mine)) == item.answer
        theirs_correct += other.index(max(other)) == item.answer
    n = len(items)
    print(json.dumps({"task": args.task, "model": args.model, "n": n, "same_choice": agree / n, "accuracy_alignpipe": ours_correct / n,
                      "accuracy_lm_eval": theirs_correct / n, "max_abs_loglik_difference": largest,
                      "seconds_alignpipe": our_seconds, "seconds_lm_eval": harness_seconds}, indent=2))


if __name__ == "__main__":
    main()
