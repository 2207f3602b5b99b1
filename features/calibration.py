"""Probability calibration as plain knots, so serving applies it with one `np.interp`.

Isotonic regression fitted on the calibration split, then centred (each flat block replaced by its
midpoint, linear in between): the map stays monotone but is strictly increasing between blocks, so
thresholds on calibrated risk keep the model's ranking instead of collapsing it into ties; a tie-break
of at most 5e-7 keeps the ranking inside flat blocks and the clipped tails too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.isotonic import IsotonicRegression

RISK_FLOOR = 1e-6
RANK_TIE_BREAK = 1e-6  # < 2 * RISK_FLOOR, so calibrated risk stays strictly inside (0, 1)


@dataclass(frozen=True)
class Calibrator:
    x: np.ndarray  # raw model scores (knots, increasing)
    y: np.ndarray  # calibrated risk at each knot (non-decreasing, within [0, 1])

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float64)
        # Strictly increasing in the model's score: a flat isotonic block (or the clipped tails) would tie
        # every listing in it, and a threshold cannot split tied listings. The tie-break moves risk by at
        # most RANK_TIE_BREAK / 2, far below any calibration error, and keeps it inside (0, 1).
        return np.interp(raw, self.x, self.y) + RANK_TIE_BREAK * (np.clip(raw, 0.0, 1.0) - 0.5)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"method": "centred_isotonic", "x": self.x.tolist(), "y": self.y.tolist()}))

    @classmethod
    def load(cls, path: str | Path) -> Calibrator:
        raw = json.loads(Path(path).read_text())
        return cls(np.asarray(raw["x"], dtype=np.float64), np.asarray(raw["y"], dtype=np.float64))


def fit_calibrator(raw: np.ndarray, labels: np.ndarray, weight: np.ndarray | None = None) -> Calibrator:
    """Fit centred isotonic calibration of raw scores to observed rejection; with `weight` (inverse
    inclusion probabilities), to the rejection rate of traffic rather than of the labelled rows."""
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    iso.fit(np.asarray(raw, dtype=np.float64), np.asarray(labels, dtype=np.float64), sample_weight=weight)
    xs, ys = np.asarray(iso.X_thresholds_), np.asarray(iso.y_thresholds_)
    block_start = np.r_[True, np.diff(ys) != 0]
    block_id = np.cumsum(block_start) - 1
    counts = np.bincount(block_id)
    centres = np.bincount(block_id, weights=xs) / counts
    levels = ys[block_start]
    # Keep the outermost knots so the map covers the fitted range before clipping.
    x = np.r_[xs[0], centres, xs[-1]]
    y = np.r_[levels[0], levels, levels[-1]]
    x, keep = np.unique(x, return_index=True)
    # Never certain: a risk of exactly 0 or 1 would make t_pass = 0 / t_block = 1 ("nothing passes" /
    # "nothing blocks") route some listings automatically after all.
    return Calibrator(x, np.clip(y[keep], RISK_FLOOR, 1.0 - RISK_FLOOR))
