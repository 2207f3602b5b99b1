"""Per-segment thresholds (by category, market, ...) at the same overall guarantees.

Why segments can win: a globally calibrated risk can still be miscalibrated inside a segment. The
workload-optimal policy at a given overall recall and block precision thresholds the *segment-wise*
calibrated risk at one common pair (the Lagrangian optimum), so:

1. split the calibration rows at random in halves A and B;
2. on A, fit a (centred isotonic, `features.calibration`) map g_s(risk) -> P(violation) per segment
   with enough data (thin segments keep the identity map, i.e. the model's own calibrated risk);
3. on B, which the maps never saw, certify one pair (tau_pass, tau_block) on g_s(risk) with the same
   finite-sample procedure as the global pair;
4. g_s is continuous and non-decreasing, so "g_s(risk) < tau" is exactly "risk < t_s" with t_s the
   first point where g_s reaches tau: the policy is per-segment (t_pass, t_block) on the ORIGINAL
   risk, which is what serving applies. Thin and unseen segments use (tau_pass, tau_block).

The caller compares this candidate with the global pair on B and keeps the one with less workload;
each candidate is certified with half the error budget, so the chosen one keeps confidence 1 - delta.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from decision.guarantees import Certified, RankedScores, certify, ordered_pair
from decision.policy import route
from features.calibration import Calibrator, fit_calibrator


def threshold_for(calibrator: Calibrator, tau: float) -> float:
    """Smallest original risk t with calibrator(t) >= tau: 0.0 if every risk reaches tau, 1.0 if none.

    The map is continuous, piecewise linear and non-decreasing, so {risk : map(risk) >= tau} is
    exactly [t, 1] (up to floating rounding at the boundary itself)."""
    x, y = calibrator.x, calibrator.y
    j = int(np.searchsorted(y, tau, side="left"))  # first knot reaching tau
    if j == 0:
        return 0.0
    if j == len(y):
        return 1.0
    return float(x[j - 1] + (tau - y[j - 1]) * (x[j] - x[j - 1]) / (y[j] - y[j - 1]))


@dataclass
class SegmentChoice:
    """The segmented candidate, certified on half B, and its comparison with the global pair on B."""

    certified: Certified  # on the re-calibrated scale, counted on B with the per-segment thresholds
    t_pass: float  # common pair: thin and unseen segments
    t_block: float
    segments: dict[str, tuple[float, float]]  # re-calibrated segments only
    rows: list[dict] = field(default_factory=list)  # per-segment report
    queue_segmented_b: int = 0
    queue_global_b: int = 0
    n_b: int = 0

    @property
    def relative_saving(self) -> float:
        return 1.0 - self.queue_segmented_b / self.queue_global_b if self.queue_global_b else 0.0


def choose_segmented(
    reference: pd.DataFrame,
    segment_by: str,
    recall: float,
    block_precision: float,
    delta: float,
    global_pair: tuple[float, float],
    *,
    min_segment_rows: int = 2000,
    min_segment_violations: int = 50,
    seed: int = 0,
) -> SegmentChoice | None:
    """Certify a per-segment policy at `delta`; None when no segment has enough data in half A."""
    codes, names = pd.factorize(reference[segment_by].astype(str), sort=True)  # hashing, not string sorts
    names = [str(n) for n in names]
    risk = reference["risk"].to_numpy(dtype=np.float64)
    label = reference["label"].to_numpy().astype(bool)
    seconds = reference["review_seconds"].to_numpy(dtype=np.float64) if "review_seconds" in reference else None
    in_a = np.zeros(len(risk), dtype=bool)
    in_a[np.random.default_rng(seed).permutation(len(risk))[: len(risk) // 2]] = True

    maps = _fit_maps(codes[in_a], len(names), risk[in_a], label[in_a], min_segment_rows, min_segment_violations)
    if not maps:
        return None
    b = ~in_a
    recalibrated = _apply_maps(maps, codes[b], risk[b])
    on_b = certify(
        RankedScores.build(recalibrated, label[b], seconds[b] if seconds is not None else None),
        recall,
        block_precision,
        delta,
    )
    pairs = {j: ordered_pair(threshold_for(m, on_b.t_pass), threshold_for(m, on_b.t_block)) for j, m in maps.items()}
    choice = SegmentChoice(
        certified=on_b,
        t_pass=on_b.t_pass,
        t_block=on_b.t_block,
        segments={names[j]: pair for j, pair in pairs.items()},
        n_b=int(b.sum()),
    )
    _compare_on_b(choice, names, codes[b], risk[b], global_pair)
    return choice


def _fit_maps(
    codes: np.ndarray,
    n_segments: int,
    risk: np.ndarray,
    label: np.ndarray,
    min_rows: int,
    min_violations: int,
) -> dict[int, Calibrator]:
    rows = np.bincount(codes, minlength=n_segments)
    violations = np.bincount(codes, weights=label, minlength=n_segments)
    order = np.argsort(codes, kind="stable")
    bounds = np.r_[0, np.cumsum(rows)]
    maps = {}
    for j in range(n_segments):
        if rows[j] >= min_rows and min_violations <= violations[j] < rows[j]:
            idx = order[bounds[j] : bounds[j + 1]]
            maps[j] = fit_calibrator(risk[idx], label[idx])
    return maps


def _apply_maps(maps: dict[int, Calibrator], codes: np.ndarray, risk: np.ndarray) -> np.ndarray:
    out = risk.copy()  # identity for thin segments
    for j, calibrator in maps.items():
        rows = codes == j
        out[rows] = calibrator(risk[rows])
    return out


def _compare_on_b(
    choice: SegmentChoice,
    names: list[str],
    codes: np.ndarray,
    risk: np.ndarray,
    global_pair: tuple[float, float],
) -> None:
    """Queue sizes on B of the per-segment thresholds (on original risk) and of the global pair."""
    pairs = np.array([choice.segments.get(n, (choice.t_pass, choice.t_block)) for n in names], dtype=np.float64)
    segmented = route(risk, pairs[codes, 0], pairs[codes, 1]) == 1
    global_queue = route(risk, *global_pair) == 1
    choice.queue_segmented_b = int(segmented.sum())
    choice.queue_global_b = int(global_queue.sum())
    counts = np.bincount(codes, minlength=len(names))
    seg_q = np.bincount(codes, weights=segmented, minlength=len(names))
    glob_q = np.bincount(codes, weights=global_queue, minlength=len(names))
    choice.rows = [
        {
            "segment": n,
            "rows_b": int(counts[j]),
            "recalibrated": n in choice.segments,
            "t_pass": float(pairs[j, 0]),
            "t_block": float(pairs[j, 1]),
            "queue_share_segmented": float(seg_q[j] / counts[j]) if counts[j] else None,
            "queue_share_global": float(glob_q[j] / counts[j]) if counts[j] else None,
        }
        for j, n in enumerate(names)
    ]
