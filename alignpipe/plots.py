"""Training curves as PNG files in the run directory: people would rather look at a loss curve than read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


LOSS_SERIES = ("loss", "eval_loss")
# TRL's names: GRPO/RLOO log the (weighted) reward of the sampled completions; DPO-family the implicit rewards.
REWARD_SERIES = ("reward", "rewards/chosen", "rewards/rejected", "rewards/margins")


def save_training_curves(
    log_history: list[dict[str, Any]], path: Path, title: str, names: tuple[str, ...] = LOSS_SERIES
) -> Path | None:
    """Plot the logged series among `names` against the step; nothing is written when none was logged."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {}
    for entry in log_history:
        step = entry.get("step")
        for key, value in entry.items():
            if key in names:
                if step is not None and isinstance(value, (int, float)):
                    series.setdefault(key, []).append((step, float(value)))
    if not series:
        return None
    figure, axis = plt.subplots(figsize=(7, 4))
    for name, points in series.items():
        steps, values = zip(*points)
        line = axis.plot(steps, values, marker="o" if len(points) < 30 else None, alpha=0.6, label=name)[0]
        if len(points) >= 8:  # sampled rewards are noisy: the trend is what a reader looks for
            window = max(3, len(points) // 5)
            trend = [sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
                     for i in range(len(values))]
            axis.plot(steps, trend, color=line.get_color(), linewidth=2.5, label=f"{name} (mean of last {window})")
    axis.set_xlabel("step")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def save_curve_panels(log_history: list[dict[str, Any]], path: Path, title: str, names: tuple[str, ...]) -> Path | None:
    """One small plot per logged series (their scales differ: a reward, a KL, a loss, a fraction), side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = {name: [(entry["step"], float(entry[name])) for entry in log_history if name in entry] for name in names}
    series = {name: points for name, points in series.items() if points}
    if not series:
        return None
    columns = min(3, len(series))
    rows = -(-len(series) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4 * columns, 3 * rows), squeeze=False)
    for axis, (name, points) in zip(axes.flat, series.items()):
        steps, values = zip(*points)
        axis.plot(steps, values, marker="o" if len(points) < 30 else None)
        axis.set_title(name.replace("_", " "))
        axis.set_xlabel("step")
        axis.grid(alpha=0.3)
    for axis in list(axes.flat)[len(series):]:
        axis.set_visible(False)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
