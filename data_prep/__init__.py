"""Data preparation: raw files -> clean train/eval JSONL in alignpipe's formats (`python -m data_prep ...`).

One module per command, each with a file-level function that streams and a per-record function for use elsewhere
(for example `datasets.map(..., num_proc=N)`, see the README):

- convert: `convert_file`, `convert_record`          - dedup: `dedup_file`, `NearDuplicateIndex`
- filter (filters.py): `filter_file`, `quality_problem`  - pii: `pii_file`, `mask_pii`
- decontaminate: `decontaminate_file`, `ngrams`      - split: `split_file`
- stats: `stats_file`                                - pipeline: `run_pipeline` (steps from a YAML file)
"""
