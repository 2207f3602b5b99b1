"""Drift alarms: is production traffic still the traffic the model was certified on?

Three checks, each with a status ok / warn / alarm:

* Population stability (PSI) of the calibrated risk and of the key listing features against the
  reference the bundle saved at training time (`reference.json`, computed on the test split):
  PSI = sum_i (a_i - e_i) ln(a_i / e_i) over bins, e the reference proportions and a production's.
  Numeric bins are the reference's deciles (edges at its quantiles, so each bin held about a tenth of
  the reference), plus a bin for missing values; categorical bins are the reference's most frequent
  values plus "other" and "missing". The usual reading (Lewis 1994, An Introduction to Credit Scoring;
  Yurdakul 2018, Statistical properties of the population stability index): below 0.1 no material
  shift, 0.1 to 0.25 a shift worth a look (warn), above 0.25 a major shift (alarm). PSI is the
  symmetrised Kullback-Leibler divergence; with n production rows and no drift it is about
  (bins - 1) / n on average, so a window with fewer than `MIN_ROWS` rows is reported, not judged.
* Routing mix: the shares auto-passed / queued / auto-blocked against the split the simulator expects
  for the policy in force on the bundle's reference set, by the same PSI and thresholds.
* Production recall: the estimate from `decision.estimates` against the policy's recall target: alarm
  when the whole interval lies below the target (recall is below it at the stated confidence), warn
  when the estimate is below the target but the interval still reaches it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Status = Literal["ok", "warn", "alarm", "insufficient_data", "no_reference"]

PSI_WARN, PSI_ALARM = 0.10, 0.25
MIN_ROWS = 200  # fewer production rows than this: PSI is mostly sampling noise, not judged
N_BINS = 10
TOP_CATEGORIES = 20
_FLOOR = 1e-4  # an empty bin counts as this share, so that ln(a / e) stays finite
_OTHER, _MISSING = "__other__", "__missing__"
_SEVERITY = {"no_reference": 0, "insufficient_data": 0, "ok": 0, "warn": 1, "alarm": 2}


@dataclass(frozen=True)
class NumericBins:
    """A numeric variable's reference distribution: interior bin edges (at reference quantiles) and the
    share of reference rows per bin, the last share being missing values."""

    edges: tuple[float, ...]
    shares: tuple[float, ...]

    def counts(self, values: np.ndarray | Sequence[Any]) -> np.ndarray:
        values = _as_float(values)
        finite = np.isfinite(values)
        bins = np.searchsorted(np.asarray(self.edges), values[finite], side="right")
        counts = np.bincount(bins, minlength=len(self.edges) + 1).astype(np.float64)
        return np.append(counts, np.count_nonzero(~finite))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "numeric", "edges": list(self.edges), "shares": list(self.shares)}


@dataclass(frozen=True)
class CategoricalBins:
    """A categorical variable's reference distribution: its most frequent values, then other, missing."""

    categories: tuple[str, ...]
    shares: tuple[float, ...]

    def counts(self, values: Sequence[Any] | np.ndarray) -> np.ndarray:
        index = {c: i for i, c in enumerate(self.categories)}
        codes = np.fromiter(
            (index.get(_category(v), len(self.categories) - 2) for v in values), dtype=np.int64, count=len(values)
        )
        return np.bincount(codes, minlength=len(self.categories)).astype(np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "categorical", "categories": list(self.categories), "shares": list(self.shares)}


Bins = NumericBins | CategoricalBins


def numeric_bins(values: np.ndarray, n_bins: int = N_BINS) -> NumericBins:
    """Reference bins of a numeric variable: edges at its quantiles (ties merged), shares per bin."""
    values = _as_float(values)
    finite = values[np.isfinite(values)]
    quantiles = np.quantile(finite, np.linspace(0, 1, n_bins + 1)[1:-1]) if len(finite) else np.array([])
    bins = NumericBins(tuple(float(e) for e in np.unique(quantiles)), ())
    return NumericBins(bins.edges, _shares(bins.counts(values)))


def categorical_bins(values: Sequence[Any] | np.ndarray, top: int = TOP_CATEGORIES) -> CategoricalBins:
    """Reference bins of a categorical variable: its `top` most frequent values, other, missing."""
    names, counts = np.unique(np.array([_category(v) for v in values], dtype=object), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    kept = [str(names[i]) for i in order if names[i] != _MISSING][:top]
    bins = CategoricalBins((*kept, _OTHER, _MISSING), ())
    return CategoricalBins(bins.categories, _shares(bins.counts(values)))


def bins_from_dict(raw: Mapping[str, Any]) -> Bins:
    if raw.get("kind") == "numeric":
        return NumericBins(tuple(float(e) for e in raw["edges"]), tuple(float(s) for s in raw["shares"]))
    if raw.get("kind") == "categorical":
        return CategoricalBins(tuple(str(c) for c in raw["categories"]), tuple(float(s) for s in raw["shares"]))
    raise ValueError(f"drift reference: unknown bins kind {raw.get('kind')!r}")


def psi(expected: np.ndarray | Sequence[float], actual_counts: np.ndarray | Sequence[float]) -> float:
    """Population stability index of observed counts against expected shares (same bins); empty bins
    count as a share of 1e-4 on either side."""
    e = np.maximum(np.asarray(expected, dtype=np.float64), _FLOOR)
    counts = np.asarray(actual_counts, dtype=np.float64)
    a = np.maximum(counts / max(counts.sum(), 1.0), _FLOOR)
    return float(((a - e) * np.log(a / e)).sum())


def _psi_of(expected: np.ndarray | Sequence[float], counts: np.ndarray) -> float | None:
    """`psi` rounded for a report; None over no rows at all (every bin empty is no distribution to compare:
    `psi` would read it as a share of 1e-4 in every bin, a large PSI on an idle service)."""
    return round(psi(expected, counts), 6) if counts.sum() > 0 else None


def psi_status(value: float, n_rows: int) -> Status:
    if n_rows < MIN_ROWS:
        return "insufficient_data"
    return "alarm" if value > PSI_ALARM else "warn" if value > PSI_WARN else "ok"


def variable_drift(bins: Bins, values: Sequence[Any] | np.ndarray) -> dict[str, Any]:
    """PSI of production values against one variable's reference bins, with its status and the bins'
    shares side by side (reference, production)."""
    counts = bins.counts(values)
    n = int(counts.sum())
    value = _psi_of(bins.shares, counts)
    return {
        "psi": value,
        "status": psi_status(value or 0.0, n),
        "n": n,
        "reference_shares": [round(s, 6) for s in bins.shares],
        "production_shares": [round(s, 6) for s in _shares(counts)],
    }


def routing_drift(expected: Mapping[str, float], observed: Mapping[str, int]) -> dict[str, Any]:
    """The routing mix (auto_pass / human_review / auto_block counts) against the expected shares."""
    decisions = ("auto_pass", "human_review", "auto_block")
    counts = np.array([observed.get(d, 0) for d in decisions], dtype=np.float64)
    shares = _shares(counts)
    value = _psi_of([expected[d] for d in decisions], counts)
    return {
        "psi": value,
        "status": psi_status(value or 0.0, int(counts.sum())),
        "n": int(counts.sum()),
        "expected": {d: round(float(expected[d]), 6) for d in decisions},
        "observed": {d: round(s, 6) for d, s in zip(decisions, shares, strict=True)},
    }


def recall_check(estimate: float, low: float, high: float, target: float | None) -> dict[str, Any]:
    """Production recall against its target: alarm when the interval is wholly below it."""
    status: Status
    if target is None:
        status = "no_reference"
    elif not math.isfinite(estimate):
        status = "insufficient_data"
    elif math.isfinite(high) and high < target:
        status = "alarm"
    elif estimate < target:
        status = "warn"
    else:
        status = "ok"
    return {
        "target": target,
        "estimate": _finite(estimate),
        "low": _finite(low),
        "high": _finite(high),
        "status": status,
    }


def overall_status(statuses: Sequence[str]) -> Status:
    """The worst of the checks' statuses (a check that could not judge counts as ok)."""
    worst = max((_SEVERITY.get(s, 0) for s in statuses), default=0)
    return "alarm" if worst == 2 else "warn" if worst == 1 else "ok"


def _as_float(values: np.ndarray | Sequence[Any]) -> np.ndarray:
    """Values as floats; anything that is not a number (None, text) becomes NaN, counted as missing."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.array([_float_or_nan(v) for v in values], dtype=np.float64)


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _category(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)) or value == "":
        return _MISSING
    return str(value)


def _shares(counts: np.ndarray) -> tuple[float, ...]:
    total = counts.sum()
    return tuple(float(c / total) if total else 0.0 for c in counts)


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
