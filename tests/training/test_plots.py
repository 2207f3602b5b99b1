"""The simulator's curve as a PNG (training.plots)."""

from __future__ import annotations

from pathlib import Path

from decision.simulate import simulate, sweep
from tests.decision.test_simulate import SMALL
from training.plots import plot_curve


def test_plot_curve_writes_a_png(tmp_path: Path) -> None:
    curve = sweep(SMALL, t_block=0.9, daily_volume=5000, n_points=20)
    png = plot_curve(curve, simulate(SMALL, 0.05, 0.9, 5000), tmp_path / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
