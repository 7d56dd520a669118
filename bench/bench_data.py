"""Benchmark: `dedup --near` on 100,000 short documents (target: under 2 minutes on 2 cores), and near-duplicate
recall and precision on the seeded test sets of tests/data_prep/synthetic.py.

    make bench-data                          # 100,000 documents
    python bench/bench_data.py 300000        # more

The corpus: short English and Japanese documents (25-45 words), a tenth of them lightly edited copies of another
(typos, spacing, a word or two changed). The dedup runs as a separate process, so its wall time and peak RSS are
its own. Numbers are printed, not asserted: speed targets live here, never in unit tests.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "data_prep"))
sys.path.insert(0, str(REPO))

from synthetic import english_document, japanese_document, lightly_edit, near_duplicate_corpus  # noqa: E402


def write_corpus(path: Path, documents: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    originals: list[tuple[str, bool]] = []
    with path.open("w", encoding="utf-8") as out:
        for index in range(documents):
            if originals and rng.random() < 0.1:
                text, japanese = rng.choice(originals)
                text = lightly_edit(text, rng, japanese)
            else:
                japanese = rng.random() < 0.5
                text = (japanese_document if japanese else english_document)(rng, rng.randint(25, 45))
                originals.append((text, japanese))
            out.write(json.dumps({"text": text, "id": index}, ensure_ascii=False) + "\n")


def time_dedup(documents: int, folder: Path) -> dict[str, float]:
    corpus = folder / "corpus.jsonl"
    write_corpus(corpus, documents)
    command = [sys.executable, "-m", "data_prep", "dedup", "--near", str(corpus), str(folder / "dedup.jsonl")]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONPATH": str(REPO)})
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        raise SystemExit(f"dedup failed:\n{process.stdout.read()[-3000:]}")
    summary = json.loads(process.stdout.read().split("dedup: ", 1)[1])
    return {"documents": documents, "seconds": round(seconds, 1), "docs_per_second": round(documents / seconds),
            "peak_rss_mib": round(usage.ru_maxrss / 1024), "kept": summary["written"],
            "near_duplicates_removed": summary.get("rejected", {}).get("near_duplicate", 0)}


def recall_precision(folder: Path, japanese: bool, originals: int = 2000, copies: int = 2) -> dict[str, float]:
    from data_prep.dedup import dedup_file

    texts, edited = near_duplicate_corpus(originals, copies, japanese, seed=7)
    source = folder / f"recall-{'ja' if japanese else 'en'}.jsonl"
    with source.open("w", encoding="utf-8") as out:
        for index, text in enumerate(texts):
            out.write(json.dumps({"text": text, "original": index}, ensure_ascii=False) + "\n")
        for text, index in edited:
            out.write(json.dumps({"text": text, "copy_of": index}, ensure_ascii=False) + "\n")
    kept = folder / f"kept-{source.name}"
    dedup_file(source, kept, progress=False)
    kept_records = [json.loads(line) for line in kept.open(encoding="utf-8")]
    originals_lost = originals - sum("original" in record for record in kept_records)
    copies_kept = sum("copy_of" in record for record in kept_records)
    removed = originals + len(edited) - len(kept_records)
    return {"originals": originals, "copies": len(edited), "kept": len(kept_records),
            "recall": round((len(edited) - copies_kept) / len(edited), 4),
            "precision": round((removed - originals_lost) / removed, 4) if removed else 1.0,
            "originals_lost": originals_lost}


def main() -> None:
    documents = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    with tempfile.TemporaryDirectory() as folder:
        speed = time_dedup(documents, Path(folder))
        print(f"dedup --near on {documents} short documents: {speed['seconds']} s, {speed['docs_per_second']} docs/s, "
              f"peak RSS {speed['peak_rss_mib']} MiB (kept {speed['kept']}, removed "
              f"{speed['near_duplicates_removed']}); {os.cpu_count()} CPUs visible", flush=True)
        for japanese in (False, True):
            quality = recall_precision(Path(folder), japanese)
            print(f"near-dup {'Japanese' if japanese else 'English'}: {quality}", flush=True)


if __name__ == "__main__":
    main()
