"""What each `alignpipe` command calls (cli.py's table names these functions): a few lines each, the work is in
the module that owns it. Imports are inside so that `alignpipe --help` does not load torch."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from alignpipe.pipeline import run_stage, split_recipe_and_overrides


def stage_command(stage: str) -> Callable[[argparse.Namespace], int]:
    return lambda args: run_stage(stage, args.items, args.dry_run, args.force, args.nproc, args.break_lock)


def regate_command(args: argparse.Namespace) -> int:
    from alignpipe.pipeline import regate

    return regate(args.stage_dir, args.overrides, args.break_lock)


def plan_command(args: argparse.Namespace) -> None:
    from alignpipe.plan import plan_recipe

    plan_recipe(*split_recipe_and_overrides(args.items), args.stage, args.gpu, args.mfu, args.nproc, args.json)


def generate_command(args: argparse.Namespace) -> None:
    from alignpipe import models
    from alignpipe.pipeline import warn_if_not_promoted

    warn_if_not_promoted(args.stage_dir)
    model, tokenizer = models.load_for_generation(args.stage_dir)
    print(models.generate_reply(model, tokenizer, args.prompt, args.max_new_tokens, args.temperature))


def export_command(args: argparse.Namespace) -> None:
    from alignpipe.export import export_stage

    export_stage(args.stage_dir, args.out, args.format, args.quant, args.force)
    print(f"Exported to {args.out} (model card: {args.out / 'README.md'})")


def template_command(args: argparse.Namespace) -> None:
    from alignpipe.template_check import check_or_show

    check_or_show(args.command, *split_recipe_and_overrides(args.items), args.stage, args.n, getattr(args, "ids", False))


def score_reward_command(args: argparse.Namespace) -> None:
    from alignpipe.reward import score_file

    print(f"Scored {score_file(args.stage_dir, args.input, args.output, args.batch_size)} lines -> {args.output}")


def score_toxicity_command(args: argparse.Namespace) -> None:
    from alignpipe.gate.toxicity_scorers import score_toxicity_file

    print(f"Scored {score_toxicity_file(args.input, args.field, args.output, args.model)} lines -> {args.output}")


def score_refusal_command(args: argparse.Namespace) -> None:
    from alignpipe.gate.refusal import score_refusal_file

    print(f"Scored {score_refusal_file(args.input, args.field, args.output)} lines -> {args.output}")


def score_group_claims_command(args: argparse.Namespace) -> None:
    from alignpipe.gate.group_claims import score_group_claims_file

    print(f"Scored {score_group_claims_file(args.input, args.field, args.output)} lines -> {args.output}")


def score_capability_command(args: argparse.Namespace) -> None:
    from alignpipe.gate.capability import score_capability_file

    result = score_capability_file(args.model, args.task, args.input, args.output, args.batch_size,
                                   args.quantization, args.limit)
    print(f"{args.task} accuracy {result['accuracy']:.3f} (95% CI {result['ci_low']:.3f}-{result['ci_high']:.3f}, "
          f"n={result['n']}, {result['seconds_per_item']:.3f} s/question) -> {args.output}")


def score_stereotype_command(args: argparse.Namespace) -> None:
    from alignpipe.gate.bias import score_stereotype_file

    result = score_stereotype_file(args.model, args.pairs, args.output)
    print(f"pct_stereotype {result['pct_stereotype']:.1f} (95% CI {result['ci_low']:.1f}-{result['ci_high']:.1f}, "
          f"n={result['n']}; 50 = unbiased) -> {args.output}")
    for name, stats in {**result.get("by_lang", {}), **result["by_bias_type"]}.items():
        print(f"  {name:<22}{stats['pct_stereotype']:6.1f}  [{stats['ci_low']:.1f}, {stats['ci_high']:.1f}]  "
              f"(n={stats['n']})")


def score_bias_command(args: argparse.Namespace) -> None:
    from alignpipe.gate.bbq import print_summary, score_bias_file

    print_summary(score_bias_file(args.model, args.task, args.input, args.output, args.batch_size, args.limit),
                  args.output)
