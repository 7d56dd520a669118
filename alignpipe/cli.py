"""The `alignpipe` command: a table of commands (name, help, arguments, the function in commands.py it calls) and
argument parsing. What a stage command does, in order, lives in pipeline.py. User errors: one message, exit 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignpipe.errors import AlignpipeError
from alignpipe.jsonl_reader import DEFAULT_MAX_LINE_BYTES, line_limit
from alignpipe.commands import (
    export_command,
    generate_command,
    plan_command,
    regate_command,
    score_bias_command,
    score_capability_command,
    score_group_claims_command,
    score_refusal_command,
    score_reward_command,
    score_stereotype_command,
    score_toxicity_command,
    stage_command,
    template_command,
)
from alignpipe.pipeline import DEFAULT_RECIPE, EXIT_OK, EXIT_USER_ERROR, quiet_libraries, stop_cleanly_on_sigterm

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


def arg(*flags: str, **options: Any) -> tuple[tuple[str, ...], dict[str, Any]]:
    """One `add_argument` call, as data."""
    return flags, options


# Argument groups that several commands share.
RECIPE_AND_OVERRIDES = (
    arg("items", nargs="*", metavar="[RECIPE] [key=value ...]", help=f"recipe (default {DEFAULT_RECIPE}) and overrides"),
)
STAGE_OPTIONS = (
    *RECIPE_AND_OVERRIDES,
    arg("--dry-run", action="store_true", help="validate and print the resolved recipe, then exit"),
    arg("--force", action="store_true",
        help="build on a parent the safety gate blocked (the override is recorded in the manifest)"),
    arg("--break-lock", action="store_true",
        help="take over the stage's lock left by a run that was killed (the message names it); never a live one"),
    arg("--nproc", type=int, default=1, metavar="N",
        help="train in N processes on this machine (one per GPU) through accelerate with run.accelerate_config "
        "(default ddp); rank 0 writes the run directory and runs the gate"),
)
STAGE_DIR = arg("stage_dir", type=Path, help="a stage directory, e.g. runs/demo/sft")
JSONL_IN_OUT = (
    arg("--input", type=Path, required=True),
    arg("--output", type=Path, required=True),
    arg("--max-line-bytes", type=int, default=DEFAULT_MAX_LINE_BYTES,
        help="a longer input line is an error (default %(default)s)"),
)
LANGUAGE_MODEL = arg("--model", required=True,
                     help="a stage directory (runs/demo/sft), a model path or hub id, or 'embedded'")
WHOSE_DATA = arg("--stage", choices=["sft", "rm", "rlhf"], default="sft", help="whose data (default sft)")


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    description: str
    run: Callable[[argparse.Namespace], int | None] | None  # None: a group of subcommands
    arguments: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = ()
    epilog: str | None = None
    subcommands: tuple[Command, ...] = ()


def gpu_names() -> list[str]:
    from alignpipe.plan import GPUS

    return list(GPUS)


STAGE_DESCRIPTIONS = {
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

SCORERS = (
    Command(
        "reward", "reward-model scores",
        "Adds 'reward' to conversations ({'messages': [...]} or {'prompt', 'completion'}), or "
        "'reward_chosen' and 'reward_rejected' to preference pairs.",
        score_reward_command,
        (arg("stage_dir", type=Path, help="an rm stage directory, e.g. runs/demo/rm"), *JSONL_IN_OUT,
         arg("--batch-size", type=int, default=8)),
    ),
    Command(
        "toxicity", "toxicity in [0, 1], English and Japanese, offline",
        "Adds 'toxicity' (0 = clean, 1 = toxic; 0.5 = as likely toxic as not) to every line. The default "
        "scorer is offline: a learned n-gram model (EN/JA) combined with weighted lexicons; --model lexicon or "
        "learned picks one part, any other --model is a Hugging Face classifier (path or hub id).",
        score_toxicity_command,
        (*JSONL_IN_OUT, arg("--field", default="text", help="the string field to score (default: text)"),
         arg("--model", default=None,
             help="default | learned | lexicon | a Hugging Face text classifier (path or hub id)")),
        epilog="example:\n  alignpipe score toxicity --input answers.jsonl --field text --output scored.jsonl",
    ),
    Command(
        "refusal", "refusal in [0, 1] and full_refusal / partial_refusal / compliance, English and Japanese, offline",
        "Adds 'refusal' (0 = complies, 1 = refuses; >= 0.5 is a full or partial refusal) and "
        "'refusal_label' to every line. Reads the answer's opening: an apology that goes on to help is compliance, a "
        "refusal that goes on to help or offers a concrete alternative is a partial refusal (alignpipe.gate.refusal).",
        score_refusal_command,
        (*JSONL_IN_OUT, arg("--field", default="completion", help="the string field to score (default: completion)")),
        epilog="example:\n  alignpipe score refusal --input answers.jsonl --field completion --output scored.jsonl",
    ),
    Command(
        "group-claims", "whether an answer makes a generic claim about a group of people, English and Japanese",
        "Adds 'group_claim' (1 = the answer states a generalisation about a group of people as true, e.g. "
        "'Women are too emotional to lead.' or 「大阪の人はみんなうるさい」; 0 = it does not, or argues against one) "
        "to every line. Rules, offline (alignpipe.gate.group_claims); the gate's stereotyped_answers check uses it.",
        score_group_claims_command,
        (*JSONL_IN_OUT, arg("--field", default="completion", help="the string field to score (default: completion)")),
        epilog="example:\n  alignpipe score group-claims --input answers.jsonl --field completion --output scored.jsonl",
    ),
    Command(
        "capability", "multiple-choice accuracy by log-likelihood: MMLU, JMMLU, JCommonsenseQA",
        "Zero-shot multiple-choice accuracy as lm-evaluation-harness scores a causal LM: the most likely "
        "continuation after the prompt is the answer. mmlu: the harness's mmlu prompt; jmmlu: the same with a "
        "Japanese first line; jcommonsenseqa: the harness's Japanese-leaderboard prompt (alignpipe.gate.capability "
        "documents each). Writes accuracy, n, a 95% bootstrap interval and accuracy per subject. --input: a folder "
        "of <subject>_test.csv, one CSV (question,A,B,C,D,answer, no header) or JGLUE's JSON lines; default: the "
        "gate's shipped subset.",
        score_capability_command,
        (LANGUAGE_MODEL,
         arg("--task", required=True, choices=["mmlu", "jmmlu", "jcommonsenseqa"]),
         arg("--input", type=Path, default=None, help="questions (default: the shipped subset)"),
         arg("--output", type=Path, required=True, help="result JSON"),
         arg("--batch-size", type=int, default=16, help="sequences per forward pass (default 16)"),
         arg("--quantization", choices=["4bit", "8bit", "none"], default=None,
             help="default: a stage as trained, any other model in full precision"),
         arg("--limit", type=int, default=None, help="score only the first N questions")),
        epilog="examples:\n  alignpipe score capability --model embedded --task mmlu --input data/mmlu --output mmlu.json"
        "\n  alignpipe score capability --model runs/demo/sft --task jcommonsenseqa --output jcqa.json",
    ),
    Command(
        "stereotype", "stereotype preference of a language model on minimal sentence pairs (CrowS-Pairs)",
        "The share of pairs (pct_stereotype, 50 = unbiased) where the model gives the more stereotypical "
        "sentence the higher log-likelihood, each sentence scored whole after one BOS (or EOS) token, as "
        "lm-evaluation-harness scores crows_pairs; with a 95% bootstrap interval, per bias type, and the mean "
        "absolute log-likelihood difference. Pairs: a CSV in the CrowS-Pairs layout (sent_more, sent_less, "
        "stereo_antistereo, bias_type) or JSONL with those fields; the shipped EN + JA set is "
        "alignpipe/resources/gate/stereotype_pairs.jsonl.",
        score_stereotype_command,
        (LANGUAGE_MODEL, arg("--pairs", type=Path, required=True, help="CSV (CrowS-Pairs layout) or JSONL"),
         arg("--output", type=Path, required=True, help="result JSON")),
        epilog="examples:\n  alignpipe score stereotype --model embedded --pairs crows_pairs_anonymized.csv "
        "--output base.json\n  alignpipe score stereotype --model runs/demo/sft --pairs my_pairs.jsonl --output sft.json",
    ),
    Command(
        "bias", "BBQ bias scores by log-likelihood multiple choice, English and Japanese",
        "BBQ (Parrish et al. 2022): questions about two people, ambiguous (the right answer is 'unknown') "
        "or disambiguated, answered by the most likely of the three answers (lm-evaluation-harness's bbq prompt). "
        "Writes BBQ's bias scores (ambiguous: (1 - accuracy) x (2 x share of non-unknown answers matching the "
        "stereotype - 1); disambiguated: 2 x share - 1) and accuracy in both conditions, overall, per language and "
        "per category (alignpipe.gate.bbq). --input: BBQ-format JSON lines (a file or a folder of <Category>.jsonl); "
        "default: the gate's shipped sets (384 BBQ items, 352 Japanese ones written for alignpipe).",
        score_bias_command,
        (LANGUAGE_MODEL, arg("--task", required=True, choices=["bbq"]),
         arg("--input", type=Path, default=None, help="BBQ-format JSONL file or folder (default: shipped)"),
         arg("--output", type=Path, required=True, help="result JSON"),
         arg("--batch-size", type=int, default=16, help="contexts per forward pass (default 16)"),
         arg("--limit", type=int, default=None, help="score only the first N items")),
        epilog="examples:\n  alignpipe score bias --model embedded --task bbq --output bbq.json"
        "\n  alignpipe score bias --model runs/demo/sft --task bbq --input ../shared/data/bbq --output bbq.json",
    ),
)

TEMPLATE_EPILOG = "examples:\n  alignpipe {name} recipes/demo.yaml\n  alignpipe {name} recipes/demo.yaml --stage rm"

COMMANDS = (
    *(Command(stage, short_help, description, stage_command(stage), STAGE_OPTIONS, STAGE_EPILOG.format(stage=stage))
      for stage, (short_help, description) in STAGE_DESCRIPTIONS.items()),
    Command(
        "plan", "estimate a recipe's peak GPU memory, FLOPs and time without loading weights",
        "Estimate peak GPU memory (weights by quantization, LoRA, gradients, optimizer states, "
        "activations with/without checkpointing, logits, reference model) and training FLOPs and time for one "
        "stage of a recipe, from the model's config only: a local config.json, or alignpipe's table of well-known "
        "models for hub ids (nothing is downloaded).",
        plan_command,
        (*RECIPE_AND_OVERRIDES,
         arg("--stage", choices=("sft", "rm", "rlhf"), default="sft", help="the stage to plan (default sft)"),
         arg("--gpu", default="rtx4090", help="GPU to plan for (default rtx4090)"),
         arg("--mfu", type=float, default=None, help="model FLOPs utilisation for the time estimate "
             "(default 0.35 in bf16, 0.25 in 4-bit/8-bit: dequantising costs time)"),
         arg("--nproc", type=int, default=1, metavar="N", help="GPUs training together (DDP: time / N)"),
         arg("--json", action="store_true", help="print the estimate as JSON")),
        epilog="examples:\n"
        "  alignpipe plan recipes/llama3-8b-qlora-sft.yaml --gpu rtx4090\n"
        "  alignpipe plan recipes/llama3-8b-qlora-dpo.yaml --stage rlhf --gpu a100 train.batch_size=4\n"
        "  alignpipe plan recipes/demo.yaml --json\n"
        "GPUs: {gpus}",
    ),
    Command(
        "gate", "re-run the safety gate on a trained stage",
        "Score a stage and its baseline (parent, or the base model) on toxicity, refusal balance and "
        "general-text perplexity, bias and robustness (a reward model: safe over toxic answers, group gaps, "
        "perturbed pairs), write gate_report.{json,md,png} (and a numbered copy of each run's report), and set the "
        "status to promoted or blocked. Runs automatically after every stage; re-run it after changing a threshold, "
        "or to gate a stage trained with gate.enabled=false. Every run is appended to gate.history in the manifest; "
        "settings other than the recipe's are recorded as an override (gate.overridden, settings_changed), which "
        "every later stage built on it carries in lineage_exceptions. Exit code 3 when the verdict is block.",
        regate_command,
        (STAGE_DIR, arg("overrides", nargs="*", metavar="gate.KEY=VALUE", help="gate settings for this run"),
         arg("--break-lock", action="store_true", help="take over the stage's lock left by a killed run")),
        epilog="examples:\n  alignpipe gate runs/demo/sft\n  alignpipe gate runs/demo/sft gate.toxicity.tolerance=0.1",
    ),
    Command(
        "generate", "answer a prompt with a trained stage",
        "Answer one prompt with a trained stage's model, or with a merged export, using its chat template.",
        generate_command,
        (arg("stage_dir", type=Path, help="a stage directory (runs/demo/sft) or a merged export"),
         arg("prompt", help="the user message"),
         arg("--max-new-tokens", type=int, default=128),
         arg("--temperature", type=float, default=0.0, help="0 = greedy (default)")),
        epilog='examples:\n  alignpipe generate runs/demo/sft "How do I reset my Kumo kettle?"\n'
               '  alignpipe generate exported/demo-rlhf "How do I reset my Kumo kettle?"',
    ),
    Command(
        "export", "merge a stage's adapter into a full-precision model (Hugging Face, optionally GGUF), verified",
        "Merge the adapter into a full-precision copy of the base and save model + tokenizer + chat "
        "template, loadable with AutoModelForCausalLM.from_pretrained(DIR). The merged model's logits on fixed "
        "prompts are compared with the adapter model's and the export fails if they differ beyond the printed "
        "tolerance. --format gguf also writes a GGUF file (Llama-architecture models) with the chat template and "
        "special tokens, reads it back with transformers and compares its logits with the merged model's. "
        "README.md in DIR is the model card: lineage, gate verdicts, metrics, data, the parity numbers.",
        export_command,
        (STAGE_DIR,
         arg("--out", type=Path, required=True, help="new or empty output directory"),
         arg("--format", choices=["hf", "gguf"], default="hf",
             help="hf: merged Hugging Face model (default); gguf: that plus one GGUF file"),
         arg("--force", action="store_true", help="export a stage the gate did not promote (blocked or never "
             "gated); the model card states the verdict and the failed checks"),
         arg("--quant", choices=["f16", "q8_0"], default="f16",
             help="GGUF weight type: f16 (near-identical) or q8_0 (half the size, small difference)")),
        epilog="examples:\n  alignpipe export runs/demo/sft --out exported/demo-sft\n"
               "  alignpipe export runs/demo/rlhf --out exported/demo-rlhf-gguf --format gguf --quant q8_0",
    ),
    Command(
        "check-template", "check that the chat template renders training data as generation reads it",
        "Render a sample of the stage's training data exactly as training will and check: every assistant turn "
        "ends with EOS (or the end-of-turn token), no BOS/EOS is doubled, the generation prompt of `generate` and "
        "the gate is a prefix of the training rendering, and the assistant-only loss mask covers exactly the "
        "answers. Runs by itself at the start of every stage. Exit code 2 with every problem named on failure.",
        template_command,
        (*RECIPE_AND_OVERRIDES, WHOSE_DATA,
         arg("--n", type=int, default=64, help="samples to check, spread over the file (default 64)")),
        epilog=TEMPLATE_EPILOG.format(name="check-template"),
    ),
    Command(
        "show-tokens", "print rendered training samples with the trained tokens marked",
        "Print samples of the stage's training data as the model sees them: special tokens visible, line breaks "
        "shown as ⏎, and the tokens the loss is computed on between [[ and ]].",
        template_command,
        (*RECIPE_AND_OVERRIDES, WHOSE_DATA,
         arg("--n", type=int, default=3, help="samples to show (default 3)"),
         arg("--ids", action="store_true", help="also list every token with its id")),
        epilog=TEMPLATE_EPILOG.format(name="show-tokens") + "\n  alignpipe show-tokens recipes/demo.yaml --n 3 --ids",
    ),
    Command(
        "score", "run one scorer over a JSONL file", "Add a score to every line of a JSONL file.", None,
        epilog="example:\n  alignpipe score reward runs/demo/rm --input pairs.jsonl --output scored.jsonl",
        subcommands=SCORERS,
    ),
)


def add_commands(parent: argparse.ArgumentParser, commands: tuple[Command, ...], dest: str, metavar: str) -> None:
    subparsers = parent.add_subparsers(dest=dest, required=True, metavar=metavar)
    for command in commands:
        epilog = command.epilog.format(gpus=", ".join(gpu_names())) if command.name == "plan" else command.epilog
        parser = subparsers.add_parser(command.name, help=command.help, description=command.description,
                                       epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter)
        for flags, options in command.arguments:
            parser.add_argument(*flags, **options)
        if command.subcommands:
            add_commands(parser, command.subcommands, dest="scorer", metavar="SCORER")
        else:
            parser.set_defaults(func=command.run)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="alignpipe", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_commands(parser, COMMANDS, dest="command", metavar="COMMAND")
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # argparse stops filling a positional list at an option: `--nproc 2 train.max_steps=3` leaves the overrides over.
    if extra and hasattr(args, "items") and all("=" in item and not item.startswith("-") for item in extra):
        args.items += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    quiet_libraries()
    stop_cleanly_on_sigterm()
    try:
        with line_limit(getattr(args, "max_line_bytes", DEFAULT_MAX_LINE_BYTES)):
            return args.func(args) or EXIT_OK
    except AlignpipeError as error:
        print(f"alignpipe: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("\nalignpipe: interrupted; run the same command again to resume from the last checkpoint.", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
