"""Gate reports: gate_report.json (docs/design.md 3), gate_report.md (readable on its own) and gate_report.png."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_report(stage_dir: Path, report: dict[str, Any]) -> tuple[Path, Path]:
    """Write this gate run's numbered report (gate_report.N.json/.md, never overwritten) and the latest
    (gate_report.json/.md/.png); return (latest JSON, numbered JSON)."""
    number = 1 + max((int(path.name.split(".")[1]) for path in stage_dir.glob("gate_report.*.json")
                      if path.name.split(".")[1].isdigit()), default=0)
    text, page = json.dumps(report, indent=2, ensure_ascii=False) + "\n", markdown(report)
    numbered = stage_dir / f"gate_report.{number}.json"
    for path, content in ((numbered, text), (numbered.with_suffix(".md"), page),
                          (stage_dir / "gate_report.json", text), (stage_dir / "gate_report.md", page)):
        write_atomically(path, content)
    plot(report, stage_dir / "gate_report.png")
    return stage_dir / "gate_report.json", numbered


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# Gate report: {report['stage_dir']}",
        "",
        f"**Verdict: {report['verdict']}** (stage {report['stage']}; baseline: {report['baseline']}; "
        f"{report['seconds']:.0f} s)",
        "",
        *(["**Settings other than the recipe's** (recorded as an override): "
           + ", ".join(f"`{key}` {old!r} -> {new!r}" for key, (old, new) in report["settings_changed"].items()), ""]
          if report.get("settings_changed") else []),
        "A check blocks when the candidate crosses its limit, or is worse than the baseline by more than the "
        "tolerance even at the better end of the 95% paired-bootstrap interval of the change; worse at the point "
        "estimate only warns. *Detectable*: the smallest change the check can tell from none at its n (half the width "
        "of that interval; for shares of items at least 3/n, the rule of three); **underpowered** when it is above "
        "the tolerance: such a check blocks only a change of more than twice its tolerance. **no_signal**: both models "
        "scored one constant on every item (e.g. neither ever refuses), so the check saw nothing to compare; it is "
        "not a pass.",
        "",
        "| check | family | baseline | candidate | 95% CI of change | tolerance | detectable | limit | n | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for check in report["checks"]:
        interval = "-" if check["ci_low"] is None else f"[{check['ci_low']:+.3f}, {check['ci_high']:+.3f}]"
        detectable = _number(check.get("detectable_change")) + (" **underpowered**" if check.get("underpowered") else "")
        lines.append(
            f"| {check['name']} | {check['family']} | {_number(check['baseline_value'])} | {_number(check['value'])} "
            f"| {interval} | {_number(check['threshold'])} | {detectable} | {_number(check['limit'])} | {check['n']} "
            f"| **{check['verdict']}** |"
        )
    weak = [check for check in report["checks"] if check.get("underpowered")]
    if weak:
        lines += ["", "**Underpowered at these sizes** (a pass says little; about this many items would detect the "
                  "tolerance): " + ", ".join(f"{check['name']} (n {check['n']} -> "
                                               f"{check['n_needed'] if check.get('n_needed') else 'no n: zero tolerance'})"
                                               for check in weak)]
    blind = [check["name"] for check in report["checks"] if check["verdict"] == "no_signal"]
    if blind:
        lines += ["", "**No signal** (every item scored the same for both models; these checks could not have seen a "
                  "change): " + ", ".join(blind)]
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
                                                                   "block": "tab:red",
                                                                   "no_signal": "lightgray"}[check["verdict"]]]
        if check["baseline_value"] is not None:
            names.insert(0, "baseline")
            values.insert(0, check["baseline_value"])
            colors.insert(0, "tab:gray")
        axis.bar(names, values, color=colors)
        if check["ci_low"] is not None and "perplexity" not in check["name"]:  # perplexity intervals are relative
            # An interval is of the change from the baseline, or of the value itself when there is no baseline.
            anchor = check["baseline_value"] if check["baseline_value"] is not None else 0.0
            low, high = anchor + check["ci_low"], anchor + check["ci_high"]
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
        if check.get("breakdown"):
            plot_breakdown(check, path.with_name(f"gate_{check['name']}.png"))


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


CJK_FONTS = ("Noto Sans CJK JP", "Noto Sans JP", "IPAexGothic", "IPAGothic", "TakaoGothic", "Hiragino Sans",
             "Yu Gothic", "MS Gothic")


def japanese_font() -> str | None:
    """An installed font with Japanese glyphs, for Japanese group names in plots; None when there is none."""
    from matplotlib import font_manager

    for name in CJK_FONTS:
        try:
            font_manager.findfont(name, fallback_to_default=False)
            return name
        except ValueError:
            continue
    return None


def plot_breakdown(check: dict[str, Any], path: Path) -> None:
    """One bar per group, bias type or perturbation kind: the candidate (with its interval) beside the baseline.

    Japanese group names need a font with Japanese glyphs (e.g. fonts-noto-cjk); without one they show as boxes in
    the PNG, and the names stay readable in gate_report.md and .json.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing from font")
        _plot_breakdown(check, path)


def _plot_breakdown(check: dict[str, Any], path: Path) -> None:
    import matplotlib.pyplot as plt

    labels = list(check["breakdown"])
    rows = [check["breakdown"][label] for label in labels]
    positions = list(range(len(labels)))
    figure, axis = plt.subplots(figsize=(7, 1.2 + 0.28 * len(labels)))
    has_baseline = all("baseline" in row for row in rows)
    height = 0.4 if has_baseline else 0.7
    if has_baseline:
        axis.barh([p + height for p in positions], [row["baseline"] for row in rows], height, color="tab:gray",
                  label="baseline")
    errors = None
    if all("low" in row for row in rows):
        errors = [[max(0.0, row["candidate"] - row["low"]) for row in rows],
                  [max(0.0, row["high"] - row["candidate"]) for row in rows]]
    axis.barh(positions, [row["candidate"] for row in rows], height, xerr=errors, capsize=2, color="tab:blue",
              label="candidate (95% interval)" if errors else "candidate")
    font = japanese_font() if any(not label.isascii() for label in labels) else None
    axis.set_yticks([p + (height / 2 if has_baseline else 0) for p in positions], labels, fontsize=7,
                    **({"fontfamily": [font, "DejaVu Sans"]} if font else {}))
    axis.invert_yaxis()
    axis.axvline(0, color="black", linewidth=0.5)
    axis.set_title(f"{check['name']} ({check['verdict']})", fontsize=9)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
