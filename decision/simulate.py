"""What-if simulator for PMs: replay the bundle's reference set through the routing policy.

The reference frame holds the calibration split's calibrated risk, review outcome (label),
handling time (review_seconds) and segment columns. Every listing goes through
`decision.policy.route`, the same function the service calls, and the counts are scaled to a daily
volume.

Intervals (default 95%) describe how well the reference set pins down each rate, not day-to-day
noise: Wilson score intervals for every share/rate (auto-pass, queue, misses, wrongful blocks,
recall, block precision), with Kish's effective sample size when rows are reweighted; a normal
interval for reviewer-hours (a mean of handling times). Prevalence shift ("what if violations
double") reweights violating rows by m and the others by (1 - m*pi) / (1 - pi), so the volume stays
the same and the prevalence becomes m*pi; risk per listing is unchanged (a label-shift what-if).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from decision.guarantees import DEFAULT_REVIEW_SECONDS
from decision.policy import CODE_REVIEW, Policy, route
from decision.rules import match_rules


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float | None]:
        return {k: (None if math.isnan(v) else v) for k, v in asdict(self).items()}


@dataclass
class SimulationResult:
    t_pass: float | None  # None when thresholds differ per listing (per-segment policy)
    t_block: float | None
    daily_volume: float
    productive_hours_per_fte: float
    prevalence_multiplier: float
    confidence: float
    n_reference: int
    prevalence: float  # after the prevalence shift
    auto_pass_share: Estimate
    queue_share: Estimate
    auto_block_share: Estimate
    queue_per_day: Estimate
    reviewer_hours_per_day: Estimate
    fte: Estimate
    missed_violations_per_day: Estimate
    wrongful_blocks_per_day: Estimate
    recall: Estimate
    block_precision: Estimate
    qa_sample_rate: float = 0.0
    qa_per_day: float = 0.0
    qa_hours_per_day: float = 0.0
    segments: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            out[key] = value.to_dict() if isinstance(value, Estimate) else value
        return out


def wilson(successes: float, n: float, confidence: float) -> tuple[float, float]:
    """Wilson score interval for a proportion (n may be an effective, non-integer size)."""
    if n <= 0:
        return float("nan"), float("nan")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def prevalence_weights(label: np.ndarray, multiplier: float) -> np.ndarray:
    """Row weights that multiply the share of violating listings by `multiplier`, volume unchanged."""
    prevalence = float(label.mean()) if len(label) else 0.0
    if multiplier <= 0 or multiplier * prevalence >= 1:
        raise ValueError(f"prevalence_multiplier: {multiplier} x prevalence {prevalence:.4f} must be in (0, 1)")
    negative = (1 - multiplier * prevalence) / (1 - prevalence) if prevalence < 1 else 0.0
    return np.where(label, multiplier, negative)


def _review_seconds(reference: pd.DataFrame) -> np.ndarray:
    if "review_seconds" not in reference:
        return np.full(len(reference), DEFAULT_REVIEW_SECONDS)
    seconds = reference["review_seconds"].to_numpy(dtype=np.float64)
    known = np.isfinite(seconds)
    if known.all():
        return seconds
    fill = float(np.median(seconds[known])) if known.any() else DEFAULT_REVIEW_SECONDS
    return np.where(known, seconds, fill)


@dataclass(frozen=True)
class _Rows:
    """Per-row inputs of one simulation, weighted."""

    codes: np.ndarray
    label: np.ndarray
    seconds: np.ndarray
    weight: np.ndarray


# Cells of (decision, label): index = 2 * decision code + label.
_PASS_OK, _PASS_BAD, _QUEUE_OK, _QUEUE_BAD, _BLOCK_OK, _BLOCK_BAD = range(6)


def _rate(
    w: np.ndarray, w2: np.ndarray, cells: list[int], within: list[int] | None, scale: float, confidence: float
) -> Estimate:
    """Weighted share of `cells` among `within` (all cells if None), times `scale`, Wilson interval."""
    within = list(range(6)) if within is None else within
    total, total_sq = float(w[within].sum()), float(w2[within].sum())
    if total == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    share = float(w[cells].sum()) / total
    n_eff = total * total / total_sq  # Kish; equals the row count when unweighted
    low, high = wilson(share * n_eff, n_eff, confidence)
    return Estimate(share * scale, low * scale, high * scale)


def _summarise(rows: _Rows, daily_volume: float, fte_hours: float, confidence: float) -> dict[str, Estimate]:
    cell = rows.codes.astype(np.int64) * 2 + rows.label
    w = np.bincount(cell, weights=rows.weight, minlength=6)
    w2 = np.bincount(cell, weights=rows.weight * rows.weight, minlength=6)
    hours = _hours_per_day(rows, daily_volume, confidence)
    pos, blocked = [_PASS_BAD, _QUEUE_BAD, _BLOCK_BAD], [_BLOCK_OK, _BLOCK_BAD]
    miss_share = _rate(w, w2, [_PASS_BAD], pos, 1.0, confidence)
    return {
        "auto_pass_share": _rate(w, w2, [_PASS_OK, _PASS_BAD], None, 1.0, confidence),
        "queue_share": _rate(w, w2, [_QUEUE_OK, _QUEUE_BAD], None, 1.0, confidence),
        "auto_block_share": _rate(w, w2, blocked, None, 1.0, confidence),
        "queue_per_day": _rate(w, w2, [_QUEUE_OK, _QUEUE_BAD], None, daily_volume, confidence),
        "reviewer_hours_per_day": hours,
        "fte": Estimate(hours.value / fte_hours, hours.low / fte_hours, hours.high / fte_hours),
        "missed_violations_per_day": _rate(w, w2, [_PASS_BAD], None, daily_volume, confidence),
        "wrongful_blocks_per_day": _rate(w, w2, [_BLOCK_OK], None, daily_volume, confidence),
        "recall": Estimate(1 - miss_share.value, 1 - miss_share.high, 1 - miss_share.low),
        "block_precision": _rate(w, w2, [_BLOCK_BAD], blocked, 1.0, confidence),
    }


def _hours_per_day(rows: _Rows, daily_volume: float, confidence: float) -> Estimate:
    """Mean queue handling time per listing (zero outside the queue) times volume; normal interval."""
    total = float(rows.weight.sum())
    queued = rows.codes == CODE_REVIEW
    x, w = rows.seconds[queued] / 3600.0, rows.weight[queued]
    mean = float((w * x).sum()) / total
    # sum over all rows of w^2 (x - mean)^2, rows outside the queue having x = 0
    spread = float((w * w * (x - mean) ** 2).sum()) + mean * mean * float((rows.weight[~queued] ** 2).sum())
    half = float(stats.norm.ppf(0.5 + confidence / 2)) * math.sqrt(spread) / total
    return Estimate(mean * daily_volume, max(0.0, mean - half) * daily_volume, (mean + half) * daily_volume)


def simulate(
    reference: pd.DataFrame,
    t_pass: float | np.ndarray,
    t_block: float | np.ndarray,
    daily_volume: float = 100_000,
    productive_hours_per_fte: float = 6.5,
    prevalence_multiplier: float = 1.0,
    *,
    confidence: float = 0.95,
    qa_sample_rate: float = 0.0,
    rule_block: np.ndarray | None = None,
    rule_review: np.ndarray | None = None,
    breakdown_by: str | None = None,
) -> SimulationResult:
    """Replay `reference` through `route` at (t_pass, t_block) and scale to `daily_volume` per day."""
    if daily_volume <= 0 or productive_hours_per_fte <= 0:
        raise ValueError("daily_volume and productive_hours_per_fte must be positive")
    label = reference["label"].to_numpy().astype(bool)
    weight = prevalence_weights(label, prevalence_multiplier)
    codes = route(reference["risk"].to_numpy(dtype=np.float64), t_pass, t_block, rule_block, rule_review)
    rows = _Rows(codes, label, _review_seconds(reference), weight)
    summary = _summarise(rows, daily_volume, productive_hours_per_fte, confidence)
    automated = codes != CODE_REVIEW
    automated_share = float((weight * automated).sum() / weight.sum())
    automated_seconds = float((weight * rows.seconds * automated).sum() / weight.sum())
    return SimulationResult(
        t_pass=float(t_pass) if np.ndim(t_pass) == 0 else None,
        t_block=float(t_block) if np.ndim(t_block) == 0 else None,
        daily_volume=daily_volume,
        productive_hours_per_fte=productive_hours_per_fte,
        prevalence_multiplier=prevalence_multiplier,
        confidence=confidence,
        n_reference=len(reference),
        prevalence=float((weight * label).sum() / weight.sum()),
        **summary,
        qa_sample_rate=qa_sample_rate,
        qa_per_day=qa_sample_rate * automated_share * daily_volume,
        qa_hours_per_day=qa_sample_rate * automated_seconds * daily_volume / 3600.0,
        segments=_breakdown(reference, rows, breakdown_by, daily_volume, productive_hours_per_fte, confidence),
    )


def simulate_policy(reference: pd.DataFrame, policy: Policy, **kwargs: Any) -> SimulationResult:
    """`simulate` with a policy's (per-segment) thresholds, its rules where the reference has the
    columns they read (e.g. category rules), and its QA sample rate."""
    t_pass: float | np.ndarray
    t_block: float | np.ndarray
    if policy.segment_by and policy.segment_by in reference:
        t_pass, t_block = policy.thresholds_for(reference[policy.segment_by].astype(str).to_numpy())
    else:
        t_pass, t_block = policy.t_pass, policy.t_block
    rule_block, rule_review, _ = match_rules(reference, policy.rules)
    kwargs.setdefault("qa_sample_rate", policy.qa_sample_rate)
    return simulate(reference, t_pass, t_block, rule_block=rule_block, rule_review=rule_review, **kwargs)


def _breakdown(
    reference: pd.DataFrame,
    rows: _Rows,
    column: str | None,
    daily_volume: float,
    fte_hours: float,
    confidence: float,
) -> list[dict[str, Any]]:
    if column is None:
        return []
    if column not in reference:
        raise ValueError(f"breakdown_by: reference has no column {column!r}")
    codes, names = pd.factorize(reference[column].astype(str), sort=True)
    total = float(rows.weight.sum())
    out = []
    for j, name in enumerate(names):
        mask = codes == j
        part = _Rows(rows.codes[mask], rows.label[mask], rows.seconds[mask], rows.weight[mask])
        volume = daily_volume * float(part.weight.sum()) / total
        summary = _summarise(part, volume, fte_hours, confidence)
        out.append(
            {
                column: name,
                "rows": int(mask.sum()),
                "daily_volume": volume,
                **{k: v.to_dict() for k, v in summary.items()},
            }
        )
    return out


def sweep(
    reference: pd.DataFrame,
    t_block: float = 1.0,
    daily_volume: float = 100_000,
    productive_hours_per_fte: float = 6.5,
    prevalence_multiplier: float = 1.0,
    n_points: int = 400,
) -> pd.DataFrame:
    """The workload-recall curve: every t_pass from 0 up to t_block (at quantiles of risk), at a fixed
    t_block. One sort and weighted cumulative sums; no rules, global thresholds."""
    risk = reference["risk"].to_numpy(dtype=np.float64)
    label = reference["label"].to_numpy().astype(bool)
    weight = prevalence_weights(label, prevalence_multiplier)
    order = np.argsort(risk, kind="stable")
    risk, label, weight = risk[order], label[order], weight[order]
    seconds = _review_seconds(reference)[order]
    cum_w = np.r_[0.0, np.cumsum(weight)]
    cum_pos = np.r_[0.0, np.cumsum(weight * label)]
    cum_sec = np.r_[0.0, np.cumsum(weight * seconds)]
    finite = risk[np.isfinite(risk) & (risk < t_block)]
    grid = np.unique(np.r_[0.0, np.quantile(finite, np.linspace(0, 1, n_points)) if len(finite) else [], t_block])
    i_pass = np.searchsorted(risk, grid, side="left")
    i_block = np.searchsorted(risk, t_block, side="left")
    total, positives = cum_w[-1], cum_pos[-1]
    queue_share = (cum_w[i_block] - cum_w[i_pass]) / total
    hours = (cum_sec[i_block] - cum_sec[i_pass]) / total * daily_volume / 3600.0
    return pd.DataFrame(
        {
            "t_pass": grid,
            "t_block": t_block,
            "auto_pass_share": cum_w[i_pass] / total,
            "queue_share": queue_share,
            "auto_block_share": (total - cum_w[i_block]) / total,
            "recall": 1.0 - cum_pos[i_pass] / positives if positives else np.nan,
            "missed_violations_per_day": cum_pos[i_pass] / total * daily_volume,
            "queue_per_day": queue_share * daily_volume,
            "reviewer_hours_per_day": hours,
            "fte": hours / productive_hours_per_fte,
        }
    )
