"""Gate reports: gate_report.json (DESIGN.md 3), gate_report.md (readable on its own) and gate_report.png."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def write_report(stage_dir: Path, report: dict[str, Any]) -> Path:
    """Write the three report files; return the JSON path (the one the manifest names)."""
    json_path = stage_dir / "gate_report.json"
    json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (stage_dir / "gate_report.md").write_text(markdown(report), encoding="utf-8")
    plot(report, stage_dir / "gate_report.png")
    return json_path


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Gate report: {report['stage_dir']}",
        "",
        f"**Verdict: {report['verdict']}** (stage {report['stage']}; baseline: {report['baseline']}; "
        f"{report['seconds']:.0f} s)",
        "",
        "A check blocks when the candidate crosses its limit, or is worse than the baseline by more than the "
        "tolerance even at the better end of the 95% paired-bootstrap interval of the change; worse at the point "
        "estimate only warns.",
        "",
        "| check | family | baseline | candidate | 95% CI of change | tolerance | limit | n | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for check in report["checks"]:
        interval = "-" if check["ci_low"] is None else f"[{check['ci_low']:+.3f}, {check['ci_high']:+.3f}]"
        lines.append(
            f"| {check['name']} | {check['family']} | {_number(check['baseline_value'])} | {_number(check['value'])} "
            f"| {interval} | {_number(check['threshold'])} | {_number(check['limit'])} | {check['n']} "
            f"| **{check['verdict']}** |"
        )
    notes = [f"- {check['name']}: {check['note']}" for check in report["checks"] if check["note"]]
    lines += ["", *notes, "", "## Worst samples of the candidate", ""]
    for check in report["checks"]:
        if check["samples"]:
            lines.append(f"### {check['name']}")
            for sample in check["samples"]:
                lines.append("- " + "; ".join(f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in sample.items()))
            lines.append("")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    """Baseline vs candidate per check, the candidate with its interval (baseline + change interval)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    checks = report["checks"]
    figure, axes = plt.subplots(1, len(checks), figsize=(2.6 * len(checks), 3.4), squeeze=False)
    for axis, check in zip(axes[0], checks):
        names, values, colors = ["candidate"], [check["value"]], [{"pass": "tab:green", "warn": "tab:orange",
                                                                   "block": "tab:red"}[check["verdict"]]]
        if check["baseline_value"] is not None:
            names.insert(0, "baseline")
            values.insert(0, check["baseline_value"])
            colors.insert(0, "tab:gray")
        axis.bar(names, values, color=colors)
        if check["ci_low"] is not None and check["family"] != "capability":  # capability intervals are relative
            low, high = check["baseline_value"] + check["ci_low"], check["baseline_value"] + check["ci_high"]
            axis.errorbar([len(names) - 1], [check["value"]], capsize=4, color="black",
                          yerr=[[max(0.0, check["value"] - low)], [max(0.0, high - check["value"])]])
        if check["limit"] is not None:
            axis.axhline(check["limit"], color="tab:red", linestyle="--", linewidth=1)
        axis.set_title(f"{check['name']}\n{check['verdict']}", fontsize=8)
        axis.tick_params(labelsize=7)
    figure.suptitle(f"gate: {report['stage_dir']} -> {report['verdict']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    for check in checks:
        if check.get("scores"):
            plot_distribution(check, path.with_name(f"gate_{check['name']}.png"))


def plot_distribution(check: dict[str, Any], path: Path) -> None:
    """Histogram of the per-prompt scores of candidate and baseline (e.g. each prompt's most toxic answer)."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 3.4))
    bins = [index / 20 for index in range(21)]
    for name, color in (("baseline", "tab:gray"), ("candidate", "tab:blue")):
        if name in check["scores"]:
            axis.hist(check["scores"][name], bins=bins, alpha=0.6, color=color, label=name)
    if check["limit"] is not None:
        axis.axvline(check["limit"], color="tab:red", linestyle="--", linewidth=1, label="ceiling (mean)")
    axis.set_xlabel(f"{check['name']} per prompt")
    axis.set_ylabel("prompts")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
