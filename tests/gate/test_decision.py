"""The gate's decision rule on constructed scores: paired bootstrap intervals, block / warn / pass, limits."""

from __future__ import annotations

import pytest

from alignpipe.gate.decision import Check, decide, overall_verdict, paired_bootstrap_interval


def test_interval_brackets_the_mean_and_shrinks_with_more_items():
    small = paired_bootstrap_interval([0.0, 1.0] * 5, resamples=500, seed=0)
    large = paired_bootstrap_interval([0.0, 1.0] * 200, resamples=500, seed=0)
    assert small[0] < 0.5 < small[1] and large[0] < 0.5 < large[1]
    assert large[1] - large[0] < (small[1] - small[0]) / 3


def test_clearly_worse_blocks_and_noise_passes():
    baseline = [0.1] * 40
    assert decide([0.4] * 40, baseline, "lower_is_better", tolerance=0.05)[0] == "block"
    noisy = [0.1 + (0.02 if i % 2 else -0.02) for i in range(40)]
    assert decide(noisy, baseline, "lower_is_better", tolerance=0.05)[0] == "pass"
    # better than the baseline is never a problem
    assert decide([0.0] * 40, baseline, "lower_is_better", tolerance=0.05)[0] == "pass"


def test_worse_at_the_point_but_not_with_confidence_only_warns():
    baseline = [0.0] * 10
    candidate = [0.0] * 9 + [1.0]  # mean +0.1 over tolerance 0.05, but one prompt carries it all
    verdict, low, high = decide(candidate, baseline, "lower_is_better", tolerance=0.05)
    assert verdict == "warn" and low <= 0.05 < high


def test_higher_is_better_and_absolute_limits():
    assert decide([0.5] * 20, [0.9] * 20, "higher_is_better", tolerance=0.1)[0] == "block"
    assert decide([0.95] * 20, [0.9] * 20, "higher_is_better", tolerance=0.1)[0] == "pass"
    assert decide([0.6] * 20, None, "higher_is_better", None, limit=0.75)[0] == "block"  # under the floor
    assert decide([0.3] * 20, [0.3] * 20, "lower_is_better", 0.05, limit=0.25)[0] == "block"  # over the ceiling
    assert decide([0.9] * 20, [0.0] * 20, "lower_is_better", 0.05, can_block=False)[0] == "warn"


def test_overall_verdict_is_the_worst():
    def check(verdict: str) -> Check:
        return Check(name="c", family="toxicity", value=0.0, baseline_value=0.0, threshold=0.0,
                     direction="lower_is_better", ci_low=None, ci_high=None, verdict=verdict, n=1)

    assert overall_verdict([check("pass"), check("warn")]) == "warn"
    assert overall_verdict([check("warn"), check("block"), check("pass")]) == "block"


def test_the_bootstrap_is_reproducible_for_a_seed_and_varies_with_it():
    differences = [0.0, 1.0, 0.5, 0.2, 0.9, 0.1] * 5
    assert paired_bootstrap_interval(differences, 1000, seed=3) == paired_bootstrap_interval(differences, 1000, seed=3)
    assert paired_bootstrap_interval(differences, 1000, seed=3) != paired_bootstrap_interval(differences, 1000, seed=4)
    low, high = paired_bootstrap_interval([0.25] * 30, 1000, seed=0)  # no spread: the interval is the value
    assert low == high == 0.25


def test_power_is_the_half_width_or_the_rule_of_three_for_shares():
    from alignpipe.gate.decision import power

    # Continuous scores: half the width of the interval of the change; enough items -> not underpowered.
    assert power([0.3] * 40, [0.2] * 40, low=0.08, high=0.12, tolerance=0.05) == (pytest.approx(0.02), False, None)
    # Wide interval: underpowered, and the half-width falls as 1/sqrt(n): 4x the items halve it.
    detectable, underpowered, needed = power([0.3] * 40, [0.2] * 40, low=0.0, high=0.2, tolerance=0.05)
    assert detectable == pytest.approx(0.1) and underpowered and needed == 160
    # Shares (0/1 per item) that never differ: the interval has no width, yet 3/n of the items could change unseen.
    assert power([1.0] * 10, [1.0] * 10, low=0.0, high=0.0, tolerance=0.1) == (pytest.approx(0.3), True, 30)
    assert power([1.0] * 100, [1.0] * 100, low=0.0, high=0.0, tolerance=0.1) == (pytest.approx(0.03), False, None)
    # A zero tolerance: no n detects it.
    assert power([0.3] * 40, [0.2] * 40, low=0.08, high=0.12, tolerance=0.0)[1:] == (True, None)
