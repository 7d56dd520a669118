"""Benchmark: peak memory of loading a large SFT file through alignpipe.data (1,000,000 rows by default).

    make bench-loading                               # 1,000,000 rows, JSONL (messages) and Parquet (Alpaca)
    python bench/bench_loading.py 200000             # fewer rows

Each measurement runs in its own process, so its peak RSS (ru_maxrss) is its own: the load as an sft stage does it
(read row by row, convert, check, write memory-mapped Arrow, hold out data.eval_fraction), and for comparison the
way alignpipe loaded data before (every parsed line in one Python list, as `data.read_jsonl` still returns it).
The file sizes are printed next to the peaks: a load that held every row as Python objects would need several times
the file's size. Peak RSS counts the pages of the memory-mapped Arrow files a pass has touched (the kernel drops them
under pressure); RssAnon and RssFile at the end split private memory from those file pages. Numbers are printed
and written to bench/loading_results.json, not asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {repo!r})
started = time.perf_counter()
from alignpipe import data
from alignpipe.config import DataConfig
if {mode!r} == "list":
    rows = data.read_jsonl({path!r})
    result = {{"rows": len(rows)}}
else:
    config = DataConfig(train={path!r}, eval_fraction=0.01)
    train, held_out, lineage = data.load_train_and_eval(config, seed=0, purpose="sft")
    # Touch every row once, as a trainer's epoch would (memory-mapped reads, not a second copy).
    turns = sum(len(messages) for batch in train.iter(batch_size=10_000) for messages in batch["messages"])
    result = {{"rows": len(train) + len(held_out), "turns": turns, "layout": lineage["train"]["layout"]}}
result["seconds"] = time.perf_counter() - started
result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
# Now, after the pass: private memory (Python objects) apart from file pages (the memory-mapped Arrow files).
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
for key in ("RssAnon", "RssFile"):
    result[key.lower() + "_mib_at_end"] = int(status[key].split()[0]) / 1024
print(json.dumps(result))
"""


def conversation(index: int) -> tuple[str, str]:
    if index % 2:
        return (f"ケトル K{index % 97} の保証期間は何年ですか。注文番号 {index} について教えてください。",
                f"K{index % 97} の保証期間はご購入日から2年間です。注文番号 {index} の保証書は同封されています。")
    return (f"How do I reset kettle K{index % 97}? My order number is {index}.",
            f"Hold Temp and Power on K{index % 97} for ten seconds; the light blinks twice. Order {index} is covered.")


def write_files(rows: int, folder: Path) -> dict[str, Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    jsonl, parquet = folder / "sft.jsonl", folder / "alpaca.parquet"
    with jsonl.open("w", encoding="utf-8") as out:
        for index in range(rows):
            question, answer = conversation(index)
            messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            out.write(json.dumps({"messages": messages}, ensure_ascii=False) + "\n")
    with pq.ParquetWriter(parquet, pa.schema([("instruction", pa.string()), ("input", pa.string()),
                                              ("output", pa.string())])) as writer:
        for start in range(0, rows, 100_000):
            pairs = [conversation(index) for index in range(start, min(rows, start + 100_000))]
            writer.write_table(pa.table({"instruction": [q for q, _ in pairs], "input": [""] * len(pairs),
                                         "output": [a for _, a in pairs]}))
    return {"jsonl": jsonl, "parquet": parquet}


def measure(mode: str, path: Path) -> dict:
    code = CHILD.format(repo=str(REPO), mode=mode, path=str(path))
    environment = {**os.environ, "HF_DATASETS_CACHE": str(path.parent / "cache")}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=environment, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    load = os.getloadavg()
    results = {"rows": rows, "cpus": os.cpu_count(), "load_average_at_start": [round(x, 1) for x in load]}
    with tempfile.TemporaryDirectory(prefix="alignpipe-bench-loading-") as temporary:
        folder = Path(temporary)
        started = time.perf_counter()
        files = write_files(rows, folder)
        print(f"wrote {rows:,} rows in {time.perf_counter() - started:.0f} s", flush=True)
        for name, path in files.items():
            results[f"{name}_file_mib"] = round(path.stat().st_size / 2**20, 1)
        for label, mode, path in (("jsonl, alignpipe.data (stage load)", "stage", files["jsonl"]),
                                  ("parquet, alignpipe.data (stage load)", "stage", files["parquet"]),
                                  ("jsonl, every row in a Python list (the old load)", "list", files["jsonl"])):
            result = measure(mode, path)
            results[label] = result
            print(f"{label}: {result}", flush=True)
    results["load_average_at_end"] = [round(x, 1) for x in os.getloadavg()]
    (REPO / "bench" / "loading_results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
