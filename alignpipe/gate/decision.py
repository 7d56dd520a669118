"""The gate's decision rule, a pure function: candidate vs baseline per item, with a paired bootstrap interval.

A check blocks when the candidate crosses an absolute limit (a ceiling on something bad, a floor on something good),
or when it is worse than the baseline by more than the tolerance *with confidence*: the 95% interval of the mean
paired difference (candidate - baseline over the same prompts, resampled 1000 times) lies beyond the tolerance even
at its better end. Worse than the tolerance at the point estimate only warns, since with a few dozen prompts a
point estimate moves by chance (Efron & Tibshirani 1993, ch. 13; paired resampling as in Koehn 2004).

No signal (issue 24): a group-gap check whose underlying scores are one constant for both models (neither ever
refuses, no answer is ever toxic: every gap is 0 because the instrument never moved) could not have seen a gap, so
its verdict is `no_signal`, never `pass` (`checks.group_gap_check`). It ranks like a pass in the stage's verdict (it
cannot block what it cannot see) and the report lists it apart.

Power, stated (issue 17): each check also reports the smallest change it can tell from none at its n, and is
*underpowered* when that is larger than its tolerance: such a check can only block a change more than twice its
tolerance (it blocks only when the interval's better end is beyond the tolerance), and a pass says little. See
`power`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

Direction = Literal["lower_is_better", "higher_is_better"]
VERDICT_ORDER = {"no_signal": 0, "pass": 0, "warn": 1, "block": 2}
NO_SIGNAL = "no_signal"  # the scores of both models were one constant: the check saw nothing it could compare


@dataclass(kw_only=True)
class Check:
    """One row of gate_report.json (docs/design.md 3): interval bounds are of the mean difference candidate - baseline."""

    name: str
    family: str  # toxicity | refusal | capability | bias | robustness
    value: float
    baseline_value: float | None
    threshold: float | None  # the tolerance on the change from the baseline
    direction: Direction
    ci_low: float | None
    ci_high: float | None
    verdict: str  # pass | warn | block | no_signal (see the module docstring)
    n: int
    limit: float | None = None  # an absolute ceiling (lower_is_better) or floor (higher_is_better)
    note: str = ""
    samples: list[dict[str, Any]] = field(default_factory=list)
    scores: dict[str, list[float]] = field(default_factory=dict)  # per item, for distribution plots
    # Per group, bias type or perturbation kind: {"candidate": mean, "baseline": mean, optional "low"/"high"}.
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)
    # Power (`detectable_change`), in the units of `threshold`; None where the check has no tolerance.
    detectable_change: float | None = None
    underpowered: bool = False
    n_needed: int | None = None  # items for the detectable change to reach the tolerance, when underpowered


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def paired_bootstrap_interval(differences: list[float], resamples: int, seed: int) -> tuple[float, float]:
    """95% percentile interval of the mean of `differences`, resampling items with replacement."""
    values = np.asarray(differences, dtype=np.float64)
    rows = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    means = np.sort(values[rows].mean(axis=1))
    return float(means[int(0.025 * (resamples - 1))]), float(means[int(0.975 * (resamples - 1))])


def decide(
    candidate: list[float],
    baseline: list[float] | None,
    direction: Direction,
    tolerance: float | None,
    limit: float | None = None,
    can_block: bool = True,
    resamples: int = 1000,
    seed: int = 0,
) -> tuple[str, float | None, float | None]:
    """(verdict, ci_low, ci_high) for per-item scores of the candidate and, on the same items, the baseline."""
    value = mean(candidate)
    worst = "block" if can_block else "warn"
    crossed = limit is not None and (value > limit if direction == "lower_is_better" else value < limit)
    if baseline is None or tolerance is None:
        return (worst if crossed else "pass"), None, None
    if len(baseline) != len(candidate):
        raise ValueError("candidate and baseline must be scored on the same items")
    differences = [c - b for c, b in zip(candidate, baseline)]
    low, high = paired_bootstrap_interval(differences, resamples, seed)
    # How much worse than the baseline: at the point estimate, and at the interval's better end.
    sign = 1.0 if direction == "lower_is_better" else -1.0
    worse_at_point = sign * mean(differences)
    worse_at_best = sign * low if direction == "lower_is_better" else sign * high
    if crossed or worse_at_best > tolerance:
        return worst, low, high
    if worse_at_point > tolerance:
        return "warn", low, high
    return "pass", low, high


def power(candidate: list[float], baseline: list[float], low: float, high: float,
          tolerance: float) -> tuple[float, bool, int | None]:
    """(detectable change, underpowered, items needed) of a paired check whose change has the 95% interval [low, high].

    The detectable change is the smallest change the check can tell from none at its n: half the width of the
    interval (a true change smaller than that is inside the noise). For shares of items (every item 0 or 1: refused,
    correct, above 0.5) it is at least 3/n: when few items changed the interval collapses towards zero width, yet a
    change of up to 3/n of the items can go unseen in n items at 95% (the rule of three, Hanley & Lippman-Hand 1983).
    Underpowered: the detectable change is above the tolerance. Items needed (only then): the half-width falls as
    1/sqrt(n), the 3/n floor as 1/n; None for a zero tolerance, which no n reaches.
    """
    n = len(candidate)
    shares = all(value in (0.0, 1.0) for value in candidate + baseline)
    half_width = (high - low) / 2
    detectable = max(half_width, 3 / n) if shares else half_width
    if detectable <= tolerance:
        return detectable, False, None
    if tolerance <= 0:
        return detectable, True, None
    needed = max(n * (half_width / tolerance) ** 2, 3 / tolerance if shares else 0.0)
    return detectable, True, math.ceil(needed)


def overall_verdict(checks: list[Check]) -> str:
    """The worst check's verdict; a stage whose checks all had no signal passes (pass | warn | block)."""
    worst = max((check.verdict for check in checks), key=VERDICT_ORDER.__getitem__, default="pass")
    return "pass" if worst == NO_SIGNAL else worst
