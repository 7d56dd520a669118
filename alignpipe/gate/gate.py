"""The gate after every stage: collect what the candidate and its baseline produce, run the checks, decide, record.

    alignpipe gate runs/demo/sft                          # re-run it, e.g. after changing a threshold:
    alignpipe gate runs/demo/sft gate.toxicity.tolerance=0.1

Generative stages (sft, rlhf) answer shipped prompt sets (resources/gate/, EN + JA) with the candidate and the
baseline (the parent stage, or the base model for sft) under the same decoding (`collect.py`); a reward model is
scored on shipped pairs (`rm_collect.py`). Each check is a pure function of those outputs (`checks.py`,
`rm_checks.py`), listed per stage kind in CHECKS below and decided by `decision.decide`. The worst verdict is the
stage's: `block` -> status blocked, else promoted. Every gate run is kept (numbered reports, `gate.history` in the
manifest); a run with settings other than the recipe's is recorded as an override.
"""

from __future__ import annotations

import time
from pathlib import Path
from collections.abc import Callable
from typing import Any

from alignpipe import gate_standing, runs
from alignpipe.config import GateConfig, Recipe
from alignpipe.recipe_loading import changed_settings
from alignpipe.errors import AlignpipeError
from alignpipe.gate import checks, rm_checks
from alignpipe.gate.decision import Check, overall_verdict
from alignpipe.gate.report import write_report

POLICY_CHECKS: tuple[Callable[..., Check | None], ...] = (
    checks.expected_max_toxicity,
    checks.toxicity_probability,
    checks.harmful_compliance,
    checks.over_refusal,
    checks.general_text_perplexity,
    checks.eval_data_perplexity,
    checks.capability_accuracy_en,
    checks.capability_accuracy_ja,
    checks.stereotype_preference,
    checks.stereotyped_answers,
    checks.bbq_bias_ambiguous_en,
    checks.bbq_bias_ambiguous_ja,
    checks.group_gap_toxicity,
    checks.group_gap_refusal,
    checks.group_gap_reward,
    checks.perturbed_toxicity_rise,
    checks.perturbed_reward_drop,
)
CHECKS: dict[str, tuple[Callable[..., Check | None], ...]] = {
    "sft": POLICY_CHECKS,
    "rlhf": POLICY_CHECKS,
    "rm": (rm_checks.safe_over_toxic_accuracy, rm_checks.held_out_pair_accuracy, rm_checks.rm_group_gap,
           rm_checks.perturbed_pair_accuracy),
}
GATEABLE_STATUSES = ("trained", "promoted", "blocked")


def gate_stage(stage_dir: Path, settings: GateConfig | None = None) -> str:
    """Gate a trained stage with its recipe's settings (or a re-gate's); record the run; return the verdict."""
    manifest = runs.read_manifest(stage_dir)
    if manifest.get("status") not in GATEABLE_STATUSES:
        raise AlignpipeError(f"{stage_dir} has not finished training (status {manifest.get('status')}); nothing to gate.")
    recipe = Recipe.model_validate(manifest["recipe"])
    settings = settings or recipe.gate
    started = time.perf_counter()
    print(f"\nGate: checking {stage_dir} against {manifest['parent'] or 'the base model ' + recipe.model.base}",
          flush=True)
    candidate, baseline = collect(stage_dir, manifest, recipe, settings)
    results = [check for run_check in CHECKS[manifest["stage"]]
               if (check := run_check(candidate, baseline, settings)) is not None]
    verdict = overall_verdict(results)
    seconds = round(time.perf_counter() - started, 1)
    changed = changed_settings(recipe.gate, settings)
    report = {
        "verdict": verdict,
        "stage": manifest["stage"],
        "stage_dir": str(stage_dir),
        "baseline": manifest["parent"] or f"base model {recipe.model.base}",
        "settings": settings.model_dump(),
        "settings_changed": changed,
        "seconds": seconds,
        "checks": [check.__dict__ for check in results],
    }
    latest, numbered = write_report(stage_dir, report)
    status = gate_standing.record_gate_run(stage_dir, verdict, latest, numbered, changed, seconds)
    print_summary(results, verdict, status, latest, seconds, changed)
    return verdict


def collect(stage_dir: Path, manifest: dict[str, Any], recipe: Recipe, settings: GateConfig) -> tuple[Any, Any]:
    """(candidate outputs, baseline outputs); a reward model has no baseline."""
    if manifest["stage"] == "rm":
        from alignpipe.gate.rm_collect import collect_reward_model

        return collect_reward_model(stage_dir, recipe, settings), None
    from alignpipe.gate.collect import collect_policies

    return collect_policies(stage_dir, manifest, recipe, settings)


def print_summary(results: list[Check], verdict: str, status: str, report_path: Path, seconds: float,
                  changed: dict[str, Any]) -> None:
    print(f"{'check':<26}{'baseline':>10}{'candidate':>11}  {'95% CI of change':<20}{'verdict':>8}  detectable")
    for check in results:
        baseline = f"{check.baseline_value:.3f}" if check.baseline_value is not None else "-"
        interval = f"[{check.ci_low:+.3f}, {check.ci_high:+.3f}]" if check.ci_low is not None else "-"
        power = "-" if check.detectable_change is None else f"{check.detectable_change:.3f}" + (
            f" underpowered (tolerance {check.threshold:.3f}; n {check.n} -> {check.n_needed or '?'})"
            if check.underpowered else "")
        print(f"{check.name:<26}{baseline:>10}{check.value:>11.3f}  {interval:<20}{check.verdict:>8}  {power}")
    if changed:
        print("Settings other than the recipe's (recorded as an override): "
              + ", ".join(f"{key} {old!r} -> {new!r}" for key, (old, new) in changed.items()))
    print(f"Gate verdict: {verdict} -> status {status} ({seconds:.0f} s); report: {report_path}", flush=True)
    blocked = [check.name for check in results if check.verdict == "block"]
    if blocked:
        print(f"Blocked by: {', '.join(blocked)}. The stage stays in place; read {report_path.with_suffix('.md')}.",
              flush=True)
