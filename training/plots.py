"""Plots of the what-if simulator for the CLI: the recall / reviewer-hours curve as a PNG.

The simulation itself is `decision.simulate`; only the matplotlib drawing lives in training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from decision.simulate import SimulationResult


def plot_curve(curve: pd.DataFrame, point: SimulationResult | dict[str, float] | None, path: str | Path) -> Path:
    """PNG of recall against reviewer-hours per day, with the current operating point marked."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(7, 4.5), dpi=120)
    ax = fig.add_subplot()
    ax.plot(curve["reviewer_hours_per_day"], curve["recall"], lw=1.8, label="t_pass sweep (t_block fixed)")
    if point is not None:
        hours, recall = (
            (point.reviewer_hours_per_day.value, point.recall.value)
            if isinstance(point, SimulationResult)
            else (point["reviewer_hours_per_day"], point["recall"])
        )
        ax.scatter([hours], [recall], color="crimson", zorder=3, label=f"current: {recall:.4f} @ {hours:,.0f} h/day")
    ax.set_xlabel("reviewer-hours per day")
    ax.set_ylabel("recall (violations not auto-passed)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    return path
