"""The `alignpipe` command: argument parsing only. User errors print one message and exit with code 2."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from pathlib import Path

from alignpipe.errors import AlignpipeError
from alignpipe.jsonl_reader import DEFAULT_MAX_LINE_BYTES, line_limit

DEFAULT_RECIPE = "recipes/demo.yaml"
# Exit codes of every command (README): 1 is an unexpected crash (a traceback, please report it).
EXIT_OK, EXIT_USER_ERROR, EXIT_BLOCKED = 0, 2, 3

DESCRIPTION = """\
alignpipe: staged alignment of a language model (SFT -> reward model -> RLHF) with LoRA / 4-bit adapters.

Each stage writes runs/<run.name>/<stage>/ with adapter/, manifest.json and plots.
Run `alignpipe <command> --help` for a command's options.

exit codes: 0 done (a stage: promoted by its gate), 2 user error (one message, nothing lost),
3 the stage's safety gate blocked it (everything written, the report named), 1 a crash."""

STAGE_EPILOG = """\
examples:
  alignpipe {stage}                                    # recipes/demo.yaml on the embedded model
  alignpipe {stage} recipes/demo.yaml train.max_steps=3 run.name=try
  alignpipe {stage} recipes/llama3-8b-qlora-sft.yaml --dry-run   # print the resolved recipe, load nothing
  alignpipe {stage} recipes/demo.yaml --nproc 2        # 2 processes through accelerate (DDP; gloo on CPU)
  alignpipe {stage} RECIPE --nproc 4 run.accelerate_config=fsdp   # or deepspeed-zero2, deepspeed-zero3, a file

overrides: any recipe key as key=value (train.learning_rate=1e-4, model.quantization=none, lora.r=8);
{stage}.train.max_steps=... overrides only this stage. An interrupted stage resumes from its last checkpoint
when run again (run.resume=false moves it aside and starts over); a finished stage is never overwritten.

exit code 3: the safety gate blocked the stage (so `make sft rm rlhf` stops there); 2: a user error."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alignpipe", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    stage_help = {
        "sft": ("supervised instruction tuning (LoRA / QLoRA)",
                "Supervised instruction tuning on conversations ({'messages': [...]}) or raw text ({'text': ...})."),
        "rm": ("reward model on preference pairs (LoRA / QLoRA + score head)",
               "Train a reward model on {'prompt','chosen','rejected'} pairs, starting from this run's sft stage."),
        "rlhf": ("align the sft policy: dpo/kto/orpo/simpo offline, grpo/rloo/ppo online with the reward model",
                 "Align this run's sft policy. rlhf.algorithm: dpo (rlhf.loss_type: sigmoid, ipo, hinge, robust, ...), "
                 "kto, orpo, simpo learn from preference data; grpo, rloo and ppo (actor-critic, rlhf.ppo.*) sample "
                 "answers to prompts and reinforce what this run's reward model scores high, with a KL pull "
                 "(rlhf.beta) to the sft policy. Afterwards "
                 "held-out prompts are answered before and after, scored, and written to samples.jsonl."),
    }
    for stage, (short_help, description) in stage_help.items():
        stage_parser = commands.add_parser(
            stage,
            help=short_help,
            description=description,
            epilog=STAGE_EPILOG.format(stage=stage),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        stage_parser.add_argument(
            "items", nargs="*", metavar="[RECIPE] [key=value ...]", help=f"recipe (default {DEFAULT_RECIPE}) and overrides"
        )
        stage_parser.add_argument("--dry-run", action="store_true", help="validate and print the resolved recipe, then exit")
        stage_parser.add_argument(
            "--force", action="store_true",
            help="build on a parent the safety gate blocked (the override is recorded in the manifest)",
        )
        stage_parser.add_argument(
            "--break-lock", action="store_true",
            help="take over the stage's lock left by a run that was killed (the message names it); never a live one",
        )
        stage_parser.add_argument(
            "--nproc", type=int, default=1, metavar="N",
            help="train in N processes on this machine (one per GPU) through accelerate with run.accelerate_config "
            "(default ddp); rank 0 writes the run directory and runs the gate",
        )

    plan = commands.add_parser(
        "plan",
        help="estimate a recipe's peak GPU memory, FLOPs and time without loading weights",
        description="Estimate peak GPU memory (weights by quantization, LoRA, gradients, optimizer states, "
        "activations with/without checkpointing, logits, reference model) and training FLOPs and time for one "
        "stage of a recipe, from the model's config only: a local config.json, or alignpipe's table of well-known "
        "models for hub ids (nothing is downloaded).",
        epilog="examples:\n"
        "  alignpipe plan recipes/llama3-8b-qlora-sft.yaml --gpu rtx4090\n"
        "  alignpipe plan recipes/llama3-8b-qlora-dpo.yaml --stage rlhf --gpu a100 train.batch_size=4\n"
        "  alignpipe plan recipes/demo.yaml --json\n"
        "GPUs: " + ", ".join(gpu_names()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plan.add_argument("items", nargs="*", metavar="[RECIPE] [key=value ...]", help=f"recipe (default {DEFAULT_RECIPE}) and overrides")
    plan.add_argument("--stage", choices=("sft", "rm", "rlhf"), default="sft", help="the stage to plan (default sft)")
    plan.add_argument("--gpu", default="rtx4090", help="GPU to plan for (default rtx4090)")
    plan.add_argument("--mfu", type=float, default=None, help="model FLOPs utilisation for the time estimate "
                      "(default 0.35 in bf16, 0.25 in 4-bit/8-bit: dequantising costs time)")
    plan.add_argument("--nproc", type=int, default=1, metavar="N", help="GPUs training together (DDP: time / N)")
    plan.add_argument("--json", action="store_true", help="print the estimate as JSON")

    gate = commands.add_parser(
        "gate",
        help="re-run the safety gate on a trained stage",
        description="Score a stage and its baseline (parent, or the base model) on toxicity, refusal balance and "
        "general-text perplexity, bias and robustness (a reward model: safe over toxic answers, group gaps, "
        "perturbed pairs), write gate_report.{json,md,png} (and a numbered copy of each run's report), and set the "
        "status to promoted or blocked. Runs automatically after every stage; re-run it after changing a threshold, "
        "or to gate a stage trained with gate.enabled=false. Every run is appended to gate.history in the manifest; "
        "settings other than the recipe's are recorded as an override (gate.overridden, settings_changed), which "
        "every later stage built on it carries in lineage_exceptions. Exit code 3 when the verdict is block.",
        epilog="examples:\n  alignpipe gate runs/demo/sft\n  alignpipe gate runs/demo/sft gate.toxicity.tolerance=0.1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gate.add_argument("stage_dir", type=Path, help="a stage directory, e.g. runs/demo/sft")
    gate.add_argument("overrides", nargs="*", metavar="gate.KEY=VALUE", help="gate settings for this run")
    gate.add_argument("--break-lock", action="store_true", help="take over the stage's lock left by a killed run")

    generate = commands.add_parser(
        "generate",
        help="answer a prompt with a trained stage",
        description="Answer one prompt with a trained stage's model, or with a merged export, using its chat template.",
        epilog='examples:\n  alignpipe generate runs/demo/sft "How do I reset my Kumo kettle?"\n'
               '  alignpipe generate exported/demo-rlhf "How do I reset my Kumo kettle?"',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    generate.add_argument("stage_dir", type=Path, help="a stage directory (runs/demo/sft) or a merged export")
    generate.add_argument("prompt", help="the user message")
    generate.add_argument("--max-new-tokens", type=int, default=128)
    generate.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")

    export = commands.add_parser(
        "export",
        help="merge a stage's adapter into a full-precision model (Hugging Face, optionally GGUF), verified",
        description="Merge the adapter into a full-precision copy of the base and save model + tokenizer + chat "
        "template, loadable with AutoModelForCausalLM.from_pretrained(DIR). The merged model's logits on fixed "
        "prompts are compared with the adapter model's and the export fails if they differ beyond the printed "
        "tolerance. --format gguf also writes a GGUF file (Llama-architecture models) with the chat template and "
        "special tokens, reads it back with transformers and compares its logits with the merged model's. "
        "README.md in DIR is the model card: lineage, gate verdicts, metrics, data, the parity numbers.",
        epilog="examples:\n  alignpipe export runs/demo/sft --out exported/demo-sft\n"
               "  alignpipe export runs/demo/rlhf --out exported/demo-rlhf-gguf --format gguf --quant q8_0",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("stage_dir", type=Path, help="a stage directory, e.g. runs/demo/sft")
    export.add_argument("--out", type=Path, required=True, help="new or empty output directory")
    export.add_argument("--format", choices=["hf", "gguf"], default="hf",
                        help="hf: merged Hugging Face model (default); gguf: that plus one GGUF file")
    export.add_argument("--force", action="store_true",
                        help="export a stage the gate did not promote (blocked or never gated); the model card "
                        "states the verdict and the failed checks")
    export.add_argument("--quant", choices=["f16", "q8_0"], default="f16",
                        help="GGUF weight type: f16 (near-identical) or q8_0 (half the size, small difference)")

    for name, short_help, description in (
        ("check-template", "check that the chat template renders training data as generation reads it",
         "Render a sample of the stage's training data exactly as training will and check: every assistant turn "
         "ends with EOS (or the end-of-turn token), no BOS/EOS is doubled, the generation prompt of `generate` and "
         "the gate is a prefix of the training rendering, and the assistant-only loss mask covers exactly the "
         "answers. Runs by itself at the start of every stage. Exit code 2 with every problem named on failure."),
        ("show-tokens", "print rendered training samples with the trained tokens marked",
         "Print samples of the stage's training data as the model sees them: special tokens visible, line breaks "
         "shown as ⏎, and the tokens the loss is computed on between [[ and ]]."),
    ):
        template = commands.add_parser(
            name, help=short_help, description=description, formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog=f"examples:\n  alignpipe {name} recipes/demo.yaml\n  alignpipe {name} recipes/demo.yaml --stage rm"
                   + ("\n  alignpipe show-tokens recipes/demo.yaml --n 3 --ids" if name == "show-tokens" else ""),
        )
        template.add_argument(
            "items", nargs="*", metavar="[RECIPE] [key=value ...]", help=f"recipe (default {DEFAULT_RECIPE}) and overrides"
        )
        template.add_argument("--stage", choices=["sft", "rm", "rlhf"], default="sft", help="whose data (default sft)")
        if name == "show-tokens":
            template.add_argument("--n", type=int, default=3, help="samples to show (default 3)")
            template.add_argument("--ids", action="store_true", help="also list every token with its id")
        else:
            template.add_argument("--n", type=int, default=64, help="samples to check, spread over the file (default 64)")
    score = commands.add_parser(
        "score",
        help="run one scorer over a JSONL file",
        description="Add a score to every line of a JSONL file.",
        epilog="example:\n  alignpipe score reward runs/demo/rm --input pairs.jsonl --output scored.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    scorers = score.add_subparsers(dest="scorer", required=True, metavar="SCORER")
    reward = scorers.add_parser(
        "reward",
        help="reward-model scores",
        description="Adds 'reward' to conversations ({'messages': [...]} or {'prompt', 'completion'}), or "
        "'reward_chosen' and 'reward_rejected' to preference pairs.",
    )
    reward.add_argument("stage_dir", type=Path, help="an rm stage directory, e.g. runs/demo/rm")
    reward.add_argument("--input", type=Path, required=True)
    reward.add_argument("--output", type=Path, required=True)
    reward.add_argument("--max-line-bytes", type=int, default=DEFAULT_MAX_LINE_BYTES,
                        help="a longer input line is an error (default %(default)s)")
    reward.add_argument("--batch-size", type=int, default=8)
    toxicity = scorers.add_parser(
        "toxicity",
        help="toxicity in [0, 1], English and Japanese, offline",
        description="Adds 'toxicity' (0 = clean, 1 = toxic; 0.5 = as likely toxic as not) to every line. The default "
        "scorer is offline: a learned n-gram model (EN/JA) combined with weighted lexicons; --model lexicon or "
        "learned picks one part, any other --model is a Hugging Face classifier (path or hub id).",
        epilog="example:\n  alignpipe score toxicity --input answers.jsonl --field text --output scored.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    toxicity.add_argument("--input", type=Path, required=True)
    toxicity.add_argument("--output", type=Path, required=True)
    toxicity.add_argument("--max-line-bytes", type=int, default=DEFAULT_MAX_LINE_BYTES,
                        help="a longer input line is an error (default %(default)s)")
    toxicity.add_argument("--field", default="text", help="the string field to score (default: text)")
    toxicity.add_argument("--model", default=None,
                          help="default | learned | lexicon | a Hugging Face text classifier (path or hub id)")
    refusal = scorers.add_parser(
        "refusal",
        help="refusal in [0, 1] and full_refusal / partial_refusal / compliance, English and Japanese, offline",
        description="Adds 'refusal' (0 = complies, 1 = refuses; >= 0.5 is a full or partial refusal) and "
        "'refusal_label' to every line. Reads the answer's opening: an apology that goes on to help is compliance, a "
        "refusal that goes on to help or offers a concrete alternative is a partial refusal (alignpipe.gate.refusal).",
        epilog="example:\n  alignpipe score refusal --input answers.jsonl --field completion --output scored.jsonl",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    refusal.add_argument("--input", type=Path, required=True)
    refusal.add_argument("--output", type=Path, required=True)
    refusal.add_argument("--field", default="completion", help="the string field to score (default: completion)")
    capability = scorers.add_parser(
        "capability",
        help="multiple-choice accuracy by log-likelihood: MMLU, JMMLU, JCommonsenseQA",
        description="Zero-shot multiple-choice accuracy as lm-evaluation-harness scores a causal LM: the most likely "
        "continuation after the prompt is the answer. mmlu: the harness's mmlu prompt; jmmlu: the same with a "
        "Japanese first line; jcommonsenseqa: the harness's Japanese-leaderboard prompt (alignpipe.gate.capability "
        "documents each). Writes accuracy, n, a 95% bootstrap interval and accuracy per subject. --input: a folder "
        "of <subject>_test.csv, one CSV (question,A,B,C,D,answer, no header) or JGLUE's JSON lines; default: the "
        "gate's shipped subset.",
        epilog="examples:\n  alignpipe score capability --model embedded --task mmlu --input data/mmlu --output mmlu.json"
        "\n  alignpipe score capability --model runs/demo/sft --task jcommonsenseqa --output jcqa.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    capability.add_argument("--model", required=True,
                            help="a stage directory (runs/demo/sft), a model path or hub id, or 'embedded'")
    capability.add_argument("--task", required=True, choices=["mmlu", "jmmlu", "jcommonsenseqa"])
    capability.add_argument("--input", type=Path, default=None, help="questions (default: the shipped subset)")
    capability.add_argument("--output", type=Path, required=True, help="result JSON")
    capability.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass (default 16)")
    capability.add_argument("--quantization", choices=["4bit", "8bit", "none"], default=None,
                            help="default: a stage as trained, any other model in full precision")
    capability.add_argument("--limit", type=int, default=None, help="score only the first N questions")
    stereotype = scorers.add_parser(
        "stereotype",
        help="stereotype preference of a language model on minimal sentence pairs (CrowS-Pairs)",
        description="The share of pairs (pct_stereotype, 50 = unbiased) where the model gives the more stereotypical "
        "sentence the higher log-likelihood, each sentence scored whole after one BOS (or EOS) token, as "
        "lm-evaluation-harness scores crows_pairs; with a 95% bootstrap interval, per bias type, and the mean "
        "absolute log-likelihood difference. Pairs: a CSV in the CrowS-Pairs layout (sent_more, sent_less, "
        "stereo_antistereo, bias_type) or JSONL with those fields; the shipped EN + JA set is "
        "alignpipe/resources/gate/stereotype_pairs.jsonl.",
        epilog="examples:\n  alignpipe score stereotype --model embedded --pairs crows_pairs_anonymized.csv "
        "--output base.json\n  alignpipe score stereotype --model runs/demo/sft --pairs my_pairs.jsonl --output sft.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    stereotype.add_argument("--model", required=True,
                            help="a stage directory (runs/demo/sft), a model path or hub id, or 'embedded'")
    stereotype.add_argument("--pairs", type=Path, required=True, help="CSV (CrowS-Pairs layout) or JSONL")
    stereotype.add_argument("--output", type=Path, required=True, help="result JSON")
    bias = scorers.add_parser(
        "bias",
        help="BBQ bias scores by log-likelihood multiple choice, English and Japanese",
        description="BBQ (Parrish et al. 2022): questions about two people, ambiguous (the right answer is 'unknown') "
        "or disambiguated, answered by the most likely of the three answers (lm-evaluation-harness's bbq prompt). "
        "Writes BBQ's bias scores (ambiguous: (1 - accuracy) x (2 x share of non-unknown answers matching the "
        "stereotype - 1); disambiguated: 2 x share - 1) and accuracy in both conditions, overall, per language and "
        "per category (alignpipe.gate.bbq). --input: BBQ-format JSON lines (a file or a folder of <Category>.jsonl); "
        "default: the gate's shipped sets (384 BBQ items, 352 Japanese ones written for alignpipe).",
        epilog="examples:\n  alignpipe score bias --model embedded --task bbq --output bbq.json"
        "\n  alignpipe score bias --model runs/demo/sft --task bbq --input ../shared/data/bbq --output bbq.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bias.add_argument("--model", required=True, help="a stage directory (runs/demo/sft), a model path or hub id, or "
                      "'embedded'")
    bias.add_argument("--task", required=True, choices=["bbq"])
    bias.add_argument("--input", type=Path, default=None, help="BBQ-format JSONL file or folder (default: shipped)")
    bias.add_argument("--output", type=Path, required=True, help="result JSON")
    bias.add_argument("--batch-size", type=int, default=16, help="contexts per forward pass (default 16)")
    bias.add_argument("--limit", type=int, default=None, help="score only the first N items")
    return parser


def split_recipe_and_overrides(items: list[str]) -> tuple[str, list[str]]:
    if items and "=" not in items[0]:
        return items[0], items[1:]
    return DEFAULT_RECIPE, items


def gpu_names() -> list[str]:
    from alignpipe.plan import GPUS

    return list(GPUS)


def run_stage(stage: str, items: list[str], dry_run: bool, force: bool, nproc: int = 1, break_lock: bool = False) -> int:
    from alignpipe import runs
    from alignpipe.config import load_recipe, missing_required_keys, recipe_as_yaml
    from alignpipe.runs import MANIFEST, is_main_process, read_manifest, stage_dir_for, world_size

    recipe_path, overrides = split_recipe_and_overrides(items)
    flags = (["run.force=true"] if force else []) + (["run.break_lock=true"] if break_lock else [])
    recipe = load_recipe(recipe_path, stage, overrides + flags)
    # Checked before anything loads, and by --dry-run: where the run goes, and what it cannot start without.
    problems = missing_required_keys(recipe)
    if problems:
        raise AlignpipeError(f"Invalid recipe {recipe_path} for the {stage} stage:\n  " + "\n  ".join(problems))
    runs.check_output_root(recipe)
    runs.stage_dir_for(recipe, stage)
    if recipe.model.base != "embedded":
        from alignpipe.models import check_model_reference

        check_model_reference(recipe.model.base)
    if is_main_process():
        print(f"# alignpipe {stage}: resolved recipe from {recipe_path}\n{recipe_as_yaml(recipe, stage)}", flush=True)
    if nproc < 1:
        raise AlignpipeError(f"--nproc must be at least 1, not {nproc}")
    if nproc > 1 and world_size() == 1 and not dry_run:  # not yet launched: launch N copies of this command
        from alignpipe.launch import launch_stage

        code = launch_stage(stage, items + (["run.break_lock=true"] if break_lock else []), force, nproc,
                            recipe.run.accelerate_config)
        # Rank 0's exit code 3 reaches us through accelerate as a failure: the manifest says what happened.
        manifest = stage_dir_for(recipe, stage) / MANIFEST
        blocked = manifest.is_file() and read_manifest(manifest.parent).get("status") == "blocked"
        return EXIT_BLOCKED if code != 0 and blocked else code
    if dry_run:
        if nproc > 1:
            from alignpipe.launch import accelerate_config_file

            print(f"--nproc {nproc}: would launch through {accelerate_config_file(recipe.run.accelerate_config)}")
        from alignpipe.data import describe_sources

        print("\n".join(describe_sources(recipe.data)))
        print("Dry run: recipe is valid; nothing loaded.")
        return 0
    from alignpipe.stages import rlhf, rm, sft

    try:
        stage_dir = {"sft": sft.run, "rm": rm.run, "rlhf": rlhf.run}[stage](recipe)
        if not is_main_process():
            return 0  # rank 0 gates the stage once
        return gate_after_training(stage_dir, recipe.gate.enabled)
    except BaseException as error:  # whatever failed after the stage directory was taken: it ends `failed`, not `running`
        runs.record_failure(runs.stage_dir_for(recipe, stage), error)
        raise
    finally:
        runs.release_stage_locks()  # the stage and its gate wrote under one lock


def gate_after_training(stage_dir: Path, enabled: bool) -> int:
    """The gate runs after the stage's function returned, so the trainer's model is freed before it loads its own."""
    from alignpipe.gate.gate import gate_stage
    from alignpipe.runs import record_gate_skipped

    if not enabled:
        record_gate_skipped(stage_dir)
        print(f"WARNING: gate.enabled=false: {stage_dir} stays `trained` (verdict skipped), unchecked. A next stage "
              f"builds on it only with --force (recorded); `alignpipe gate {stage_dir}` gates it.", flush=True)
        return EXIT_OK
    return EXIT_BLOCKED if gate_stage(stage_dir) == "block" else EXIT_OK


def plan_recipe(items: list[str], stage: str, gpu: str, mfu: float | None, nproc: int, as_json: bool) -> None:
    import json

    from alignpipe.config import load_recipe
    from alignpipe.plan import format_plan, plan_stage

    recipe_path, overrides = split_recipe_and_overrides(items)
    recipe = load_recipe(recipe_path, stage, overrides)
    estimate = plan_stage(recipe, stage, gpu, mfu=mfu, nproc=nproc)
    print(json.dumps(estimate, indent=2) if as_json else format_plan(estimate, f"{recipe_path} ({stage})"))


def check_template(command: str, items: list[str], stage: str, n: int, with_ids: bool) -> None:
    from alignpipe import template_check
    from alignpipe.config import load_recipe

    recipe_path, overrides = split_recipe_and_overrides(items)
    recipe = load_recipe(recipe_path, stage, overrides)
    with line_limit(recipe.data.max_line_bytes):
        tokenizer, records, assistant_only = template_check.stage_tokenizer_and_records(recipe, stage)
    if command == "check-template":
        checked, problems = template_check.check_records(tokenizer, records, assistant_only, limit=n)
        if problems:
            raise AlignpipeError(template_check.failure_report(problems, checked, str(recipe.data.train)))
        print(f"Chat template OK on {checked} samples of {recipe.data.train} ({stage}): EOS after every assistant "
              "turn, no doubled BOS/EOS, generation prompt a prefix of the training rendering"
              + (", loss mask exactly on the answers." if assistant_only else "."))
        return
    for number, index in enumerate(template_check.sample_indices(len(records), n), start=1):
        rendered = template_check.render_sample(tokenizer, records[index], assistant_only, with_ids)
        print(f"--- sample {number} of {min(n, len(records))} ({recipe.data.train}, record {index}): {rendered}\n")


def quiet_libraries() -> None:
    """Keep the training progress bar and our messages; drop library chatter that says nothing to a user."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers 5 renames, TRL-internal
    # bitsandbytes looks for optional CPU kernels on the hub at import and logs that it cannot fetch them.
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()


def stop_cleanly_on_sigterm() -> None:
    """`kill PID` (SIGTERM) unwinds like an error: the stage is marked failed and its lock released. Only kill -9 can
    leave a `running` stage and a stale lock behind (the next run names it; --break-lock takes it over)."""
    import signal
    import threading

    def stop(signal_number: int, frame: object) -> None:
        raise SystemExit(128 + signal_number)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, stop)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops filling a positional list at an option: `--nproc 2 train.max_steps=3` leaves the overrides over.
    if extra and hasattr(args, "items") and all("=" in item and not item.startswith("-") for item in extra):
        args.items += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    quiet_libraries()
    stop_cleanly_on_sigterm()
    try:
        if args.command in ("sft", "rm", "rlhf"):
            return run_stage(args.command, args.items, args.dry_run, args.force, args.nproc, args.break_lock)
        elif args.command == "plan":
            plan_recipe(args.items, args.stage, args.gpu, args.mfu, args.nproc, args.json)
        elif args.command == "gate":
            from alignpipe.config import regate_settings
            from alignpipe.gate.gate import gate_stage
            from alignpipe.runs import read_manifest

            from alignpipe.runs import stage_lock

            settings = regate_settings(read_manifest(args.stage_dir)["recipe"], args.overrides)
            with stage_lock(args.stage_dir, args.break_lock):  # one writer: not while the stage or another gate runs
                verdict = gate_stage(args.stage_dir, settings)
            return EXIT_BLOCKED if verdict == "block" else EXIT_OK
        elif args.command == "generate":
            from alignpipe import models

            warn_if_not_promoted(args.stage_dir)
            model, tokenizer = models.load_for_generation(args.stage_dir)
            print(models.generate_reply(model, tokenizer, args.prompt, args.max_new_tokens, args.temperature))
        elif args.command == "export":
            from alignpipe.export import export_stage

            export_stage(args.stage_dir, args.out, args.format, args.quant, args.force)
            print(f"Exported to {args.out} (model card: {args.out / 'README.md'})")
        elif args.command in ("check-template", "show-tokens"):
            check_template(args.command, args.items, args.stage, args.n, getattr(args, "ids", False))
        elif args.command == "score" and args.scorer == "reward":
            from alignpipe.reward import score_file

            with line_limit(args.max_line_bytes):
                count = score_file(args.stage_dir, args.input, args.output, args.batch_size)
            print(f"Scored {count} lines -> {args.output}")
        elif args.command == "score" and args.scorer == "refusal":
            from alignpipe.gate.refusal import score_refusal_file

            count = score_refusal_file(args.input, args.field, args.output)
            print(f"Scored {count} lines -> {args.output}")
        elif args.command == "score" and args.scorer == "capability":
            from alignpipe.gate.capability import score_capability_file

            result = score_capability_file(args.model, args.task, args.input, args.output, args.batch_size,
                                           args.quantization, args.limit)
            print(f"{args.task} accuracy {result['accuracy']:.3f} (95% CI {result['ci_low']:.3f}-{result['ci_high']:.3f}, "
                  f"n={result['n']}, {result['seconds_per_item']:.3f} s/question) -> {args.output}")
        elif args.command == "score" and args.scorer == "stereotype":
            from alignpipe.gate.bias import score_stereotype_file

            result = score_stereotype_file(args.model, args.pairs, args.output)
            print(f"pct_stereotype {result['pct_stereotype']:.1f} (95% CI {result['ci_low']:.1f}-{result['ci_high']:.1f}, "
                  f"n={result['n']}; 50 = unbiased) -> {args.output}")
            for name, stats in {**result.get("by_lang", {}), **result["by_bias_type"]}.items():
                print(f"  {name:<22}{stats['pct_stereotype']:6.1f}  [{stats['ci_low']:.1f}, {stats['ci_high']:.1f}]  "
                      f"(n={stats['n']})")
        elif args.command == "score" and args.scorer == "bias":
            from alignpipe.gate.bbq import print_summary, score_bias_file

            print_summary(score_bias_file(args.model, args.task, args.input, args.output, args.batch_size, args.limit),
                          args.output)
        elif args.command == "score":
            from alignpipe.gate.toxicity_scorers import score_toxicity_file

            with line_limit(args.max_line_bytes):
                count = score_toxicity_file(args.input, args.field, args.output, args.model)
            print(f"Scored {count} lines -> {args.output}")
    except AlignpipeError as error:
        print(f"alignpipe: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("\nalignpipe: interrupted; run the same command again to resume from the last checkpoint.", file=sys.stderr)
        return 130
    return EXIT_OK


def warn_if_not_promoted(stage_dir: Path) -> None:
    """Looking at a blocked or ungated stage is allowed (people need to), with one line saying what it is."""
    from alignpipe.runs import MANIFEST, read_manifest

    if not (stage_dir / MANIFEST).is_file():
        return  # a merged export: its model card tells its verdicts
    manifest = read_manifest(stage_dir)
    if manifest.get("status") != "promoted":
        report = (manifest.get("gate") or {}).get("report")
        print(f"warning: {stage_dir} is {manifest.get('status')}, not promoted by the safety gate"
              + (f" (report: {report})" if report else ""), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
