"""The Japanese demo's training data (recipes/demo-ja.yaml): the demo's own rows with the Japanese half weighted up.

Every Japanese row of `data/demo/sft_train.jsonl` and `pref_train.jsonl` appears twice and every English row once,
shuffled with a fixed seed, so a CPU-sized number of steps sees about two Japanese examples for each English one
while the English answers (and the English gate checks) are not forgotten. The held-out files are the demo's own
(`data/demo/sft_eval.jsonl`, `pref_eval.jsonl`), half Japanese already. Run from anywhere:

    python data/demo/make_ja_data.py
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

HERE = Path(__file__).parent
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")  # kana or kanji anywhere in the row
JAPANESE_WEIGHT = 2
SEED = 7


def weighted_rows(source: Path) -> list[str]:
    lines = [line for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = []
    for line in lines:
        text = json.dumps(json.loads(line), ensure_ascii=False)
        rows += [line] * (JAPANESE_WEIGHT if JAPANESE.search(text) else 1)
    random.Random(SEED).shuffle(rows)
    return rows


def main() -> None:
    (HERE / "ja").mkdir(exist_ok=True)
    for name in ("sft_train.jsonl", "pref_train.jsonl"):
        rows = weighted_rows(HERE / name)
        (HERE / "ja" / name).write_text("\n".join(rows) + "\n", encoding="utf-8")
        japanese = sum(bool(JAPANESE.search(json.dumps(json.loads(row), ensure_ascii=False))) for row in rows)
        print(f"data/demo/ja/{name}: {len(rows)} rows, {japanese} Japanese")


if __name__ == "__main__":
    main()
