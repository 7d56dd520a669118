"""Training curves as PNG files in the run directory: people would rather look at a loss curve than read it."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def save_training_curves(log_history: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Plot every logged loss-like series (train loss, eval loss, rewards...) against the step."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = {}
    for entry in log_history:
        step = entry.get("step")
        for key, value in entry.items():
            if key in ("loss", "eval_loss") or key.startswith("reward"):
                if step is not None and isinstance(value, (int, float)):
                    series.setdefault(key, []).append((step, float(value)))
    if not series:
        return None
    figure, axis = plt.subplots(figsize=(7, 4))
    for name, points in series.items():
        steps, values = zip(*points)
        axis.plot(steps, values, marker="o" if len(points) < 30 else None, label=name)
    axis.set_xlabel("step")
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
