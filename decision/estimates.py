"""Production estimates from the decision log: miss rate, recall, block precision, queue share.

Once the service decides automatically, a verdict exists only where a person looked: every human
review, and the audits of automated decisions, each drawn with a known inclusion probability pi
(`decision.audit`: Poisson sampling, pi = 1 for a review). Each labelled row then stands for 1/pi
rows of traffic, which is what makes these estimates unbiased for the traffic the service decided.

Estimator (post-stratified Hajek; Sarndal, Swensson & Wretman 1992, Model Assisted Survey Sampling,
on Bernoulli and Poisson sampling and on post-stratification). Rows are grouped into strata
h = (decision, pi). In stratum h, N_h rows were logged and n_h got a verdict; y_h is the share of
violations among those n_h. The estimated number of violations among decisions d (auto_pass,
human_review, auto_block) is t_d = sum_h N_h y_h over the strata of d, and

* miss rate = t_pass / N_pass (violations among auto-passed listings),
* block precision = t_block / N_block,
* recall = (t_review + t_block) / (t_pass + t_review + t_block) (violations not auto-passed),
* violation rate = (t_pass + t_review + t_block) / N,
* queue share = N_review / N (known exactly for the window; its interval is for the rate of the
  traffic that produced it, a Wilson interval on N decisions).

Why unbiased: under Poisson sampling, conditionally on the number n_h drawn in stratum h, the drawn
rows are a simple random sample without replacement of the stratum: every subset of size n_h has the
same probability pi^n_h (1 - pi)^(N_h - n_h), since all its rows share one pi (Bernoulli sampling).
So E[y_h | n_h] is the stratum's true violation share and E[N_h y_h | n_h >= 1] its true count: t_d is
unbiased for the violations among decisions d, miss rate and block precision (known denominators) are
unbiased, and recall (a ratio of estimates) has the usual O(1/n) ratio bias. Within a stratum every
weight is 1/pi, so y_h is at once the Horvitz-Thompson and the Hajek mean.

Pending verdicts: a row without a verdict yet (a review still queued, an audit not done) is treated
as not sampled. The estimates then stay unbiased only if pending rows are missing at random within
their stratum (whether a verdict has arrived does not depend on what it says); a queue that reviews
easy items first breaks that assumption. The count of rows without a verdict is reported with the
estimates so a reader can judge. A stratum with rows but no verdict at all is merged with the other
strata of its decision (collapsed strata): each labelled row weighted by 1/pi, its variance on Kish's
effective size (sum w)^2 / sum w^2. A decision with no verdict at all has no estimate (NaN).

Intervals. Each decision's violation share p_d = t_d / N_d has the stratified variance
V(p_d) = sum_h (N_h / N_d)^2 (1 - n_h / N_h) s_h^2 / n_h (the finite-population correction makes a
fully reviewed stratum exact), with s_h^2 = c_h (1 - c_h) taken at the Jeffreys centre
c_h = (x_h + 1/2) / (n_h + 1), so that a stratum where no violation was seen still counts. Miss rates
are small and audits few, so a Wald interval would collapse to a point when no miss is observed:
instead the Wilson score interval of p_d is computed on the effective sample size
n* = c_d (1 - c_d) / V(p_d), c_d = sum_h (N_h / N_d) c_h (Korn & Graubard 1998, "Confidence intervals
for proportions with small expected number of positive counts estimated from survey data", Survey
Methodology 24; Wilson 1927). With one stratum n* = n_h / (1 - f_h): the labelled count, grown by the
finite-population correction, so that a fully reviewed decision is exact. Recall and violation rate
combine the per-decision intervals by the method of variance estimates recovery: sums with MOVER
(Zou & Donner 2008, Statistics in Medicine 27:1693), the ratio missed / caught with MOVER-R (Donner
& Zou 2012, Statistical Methods in Medical Research 21:347; Newcombe 2016), then
recall = 1 / (1 + missed / caught). The decisions' estimates are independent (Poisson sampling draws
each row independently), which MOVER requires.

`tests/decision/test_estimates.py` checks unbiasedness and coverage of the stated confidence on
simulated logs with known truth (600 windows of 5,000 decisions, 20% of verdicts pending: coverage of
the 95% intervals 0.947 to 0.960 for miss rate, recall, block precision and violation rate).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

ESTIMATES = ("miss_rate", "recall", "block_precision", "queue_share", "violation_rate")
_PASS, _REVIEW, _BLOCK = 0, 1, 2


@dataclass(frozen=True)
class Estimate:
    """A production estimate with its confidence interval and the number of verdicts behind it.
    NaN estimate and bounds: nothing to estimate from (no such decisions, or none with a verdict), and
    `why` says which, in words (empty when there is an estimate)."""

    estimate: float
    low: float
    high: float
    n_labelled: int
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "estimate": _finite_or_none(self.estimate),
            "low": _finite_or_none(self.low),
            "high": _finite_or_none(self.high),
            "n_labelled": self.n_labelled,
            "why": (self.why or "nothing to estimate from") if math.isnan(self.estimate) else None,
        }


@dataclass(frozen=True)
class _Share:
    """One decision's estimated violation share, its interval and the counts behind it."""

    n_rows: int
    n_labelled: int
    share: float
    low: float
    high: float


def production_estimates(
    codes: np.ndarray, pi: np.ndarray, label: np.ndarray, confidence: float = 0.95
) -> dict[str, Estimate]:
    """Estimates of miss rate, recall, block precision, queue share and violation rate (see the module
    docstring) from logged decision codes (0 auto_pass, 1 human_review, 2 auto_block), inclusion
    probabilities `pi` and verdict labels (1 violation, 0 none, NaN no verdict yet)."""
    codes, pi, label = _validated(codes, pi, label, confidence)
    shares = [_decision_share(pi[codes == d], label[codes == d], confidence) for d in (_PASS, _REVIEW, _BLOCK)]
    n = len(codes)
    labelled = int(np.count_nonzero(~np.isnan(label)))
    totals = [_total(s) for s in shares]  # (estimate, low, high) of violations per decision
    caught = _mover_sum([totals[_REVIEW], totals[_BLOCK]])
    missed = totals[_PASS]
    violations = _mover_sum(totals)
    unlabelled = _unlabelled_decisions(shares)
    no_decisions = "no decisions in the window"
    recall = _recall(caught, missed)
    if not math.isnan(recall[0]):
        why_no_recall = ""
    elif unlabelled or not n:
        why_no_recall = unlabelled or no_decisions
    else:
        why_no_recall = "no violation among the verdicts: recall has no denominator"
    return {
        "miss_rate": _estimate(shares[_PASS], _PASS),
        "recall": Estimate(*recall, n_labelled=labelled, why=why_no_recall),
        "block_precision": _estimate(shares[_BLOCK], _BLOCK),
        "queue_share": Estimate(*_wilson(shares[_REVIEW].n_rows / n, n, confidence), n_labelled=n)
        if n
        else _empty(0, no_decisions),
        "violation_rate": Estimate(violations[0] / n, violations[1] / n, violations[2] / n, labelled, unlabelled)
        if n
        else _empty(0, no_decisions),
    }


_DECISION_NAMES = {_PASS: "auto-passed", _REVIEW: "reviewed", _BLOCK: "auto-blocked"}
_VERDICT_SOURCE = {
    _PASS: "none was drawn for audit, or its audits are pending",
    _REVIEW: "its reviews are pending",
    _BLOCK: "none was drawn for audit, or its audits are pending",
}


def _why_no_share(share: _Share, decision: int) -> str:
    """Why one decision's violation share is unknown: no such decisions, or none with a verdict yet."""
    name = _DECISION_NAMES[decision]
    if share.n_rows == 0:
        return f"no {name} decisions in the window"
    return f"none of the {share.n_rows} {name} decisions has a verdict yet ({_VERDICT_SOURCE[decision]})"


def _unlabelled_decisions(shares: list[_Share]) -> str:
    """Recall and violation rate need every decision's share: which decisions have rows but no verdict."""
    return "; ".join(
        _why_no_share(share, d) for d, share in enumerate(shares) if share.n_rows and share.n_labelled == 0
    )


def grouped_estimates(
    codes: np.ndarray, pi: np.ndarray, label: np.ndarray, groups: np.ndarray, confidence: float = 0.95
) -> dict[str, dict[str, Estimate]]:
    """`production_estimates` for each value of `groups` (a day, a tier, a category...), keyed by the
    value as text, in sorted order."""
    groups = np.asarray(groups, dtype=object)
    if groups.shape != np.shape(codes):
        raise ValueError(f"groups: {groups.shape[0]} values for {np.shape(codes)[0]} decisions")
    keys = np.array(["none" if g is None else str(g) for g in groups], dtype=object)
    return {
        key: production_estimates(
            np.asarray(codes)[keys == key], np.asarray(pi)[keys == key], np.asarray(label)[keys == key], confidence
        )
        for key in sorted(set(keys))
    }


def _validated(
    codes: np.ndarray, pi: np.ndarray, label: np.ndarray, confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    codes = np.asarray(codes, dtype=np.int64)
    pi = np.asarray(pi, dtype=np.float64)
    label = np.asarray(label, dtype=np.float64)
    if not (codes.shape == pi.shape == label.shape) or codes.ndim != 1:
        raise ValueError(f"codes, pi and label must be 1-d of one length, got {codes.shape}, {pi.shape}, {label.shape}")
    if not np.isin(codes, (_PASS, _REVIEW, _BLOCK)).all():
        raise ValueError(f"codes: {sorted(set(codes.tolist()) - {0, 1, 2})} are not decision codes 0, 1, 2")
    if not ((pi > 0) & (pi <= 1)).all():  # NaN fails too
        raise ValueError(f"pi: inclusion probabilities must be in (0, 1], got {pi[~((pi > 0) & (pi <= 1))][:5]}")
    if not np.isin(label[~np.isnan(label)], (0.0, 1.0)).all():
        raise ValueError("label: verdicts must be 1 (violation), 0 (none) or NaN (no verdict yet)")
    if not 0.5 <= confidence < 1:
        raise ValueError(f"confidence: {confidence!r} is not in [0.5, 1)")
    return codes, pi, label


def _decision_share(pi: np.ndarray, label: np.ndarray, confidence: float) -> _Share:
    """Post-stratified violation share of one decision (strata: distinct pi) with its Wilson interval
    on the effective sample size."""
    n_rows = len(pi)
    has = ~np.isnan(label)
    n_labelled = int(has.sum())
    if n_labelled == 0:
        return _Share(n_rows, 0, math.nan, math.nan, math.nan)
    levels, stratum = np.unique(pi, return_inverse=True)
    size = np.bincount(stratum, minlength=len(levels)).astype(np.float64)
    drawn = np.bincount(stratum[has], minlength=len(levels)).astype(np.float64)
    if (drawn == 0).any():  # collapse: one stratum, labelled rows weighted by 1/pi
        return _collapsed_share(pi, label, has, confidence)
    hits = np.bincount(stratum[has], weights=label[has], minlength=len(levels))
    weight = size / n_rows
    share = float((weight * hits / drawn).sum())
    # the variance at each stratum's Jeffreys centre (x + 1/2) / (n + 1) (Brown, Cai & DasGupta 2001):
    # a stratum where no violation was seen still contributes its uncertainty (at the observed 0 it
    # would claim none, and with many audits the interval under-covered: 0.90 at 95% in simulation)
    centre = (hits + 0.5) / (drawn + 1.0)
    variance = float((weight**2 * (1 - drawn / size) * centre * (1 - centre) / drawn).sum())
    smoothed = float((weight * centre).sum())
    n_eff = smoothed * (1 - smoothed) / variance if variance > 0 else math.inf
    return _Share(n_rows, n_labelled, *_wilson(share, n_eff, confidence))


def _collapsed_share(pi: np.ndarray, label: np.ndarray, has: np.ndarray, confidence: float) -> _Share:
    """Hajek share over the whole decision when some stratum has no verdict: weights 1/pi, Kish's
    effective size (sum w)^2 / sum w^2 divided by the finite-population correction."""
    weight = 1.0 / pi[has]
    share = float((weight * label[has]).sum() / weight.sum())
    unlabelled = 1.0 - has.sum() / len(pi)
    n_eff = weight.sum() ** 2 / (weight**2).sum() / unlabelled if unlabelled > 0 else math.inf
    return _Share(len(pi), int(has.sum()), *_wilson(share, n_eff, confidence))


def _wilson(p: float, n: float, confidence: float) -> tuple[float, float, float]:
    """(p, low, high): the Wilson score interval of a proportion p observed on n, an effective size
    that may be infinite (every row labelled: the interval is the point)."""
    if math.isinf(n):
        return p, p, p
    if n <= 0 or math.isnan(p):
        return p, 0.0, 1.0
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return p, max(0.0, centre - half), min(1.0, centre + half)


def _total(share: _Share) -> tuple[float, float, float]:
    """Estimated violations among one decision's rows, with interval; (0, 0, 0) when there are none."""
    if share.n_rows == 0:
        return 0.0, 0.0, 0.0
    return share.share * share.n_rows, share.low * share.n_rows, share.high * share.n_rows


def _mover_sum(parts: list[tuple[float, float, float]]) -> tuple[float, float, float]:
    """MOVER interval of a sum of independent estimates (Zou & Donner 2008): the recovered variances
    of each limit add, low = sum - sqrt(sum (est - low)^2), high = sum + sqrt(sum (high - est)^2)."""
    est = sum(p[0] for p in parts)
    low = est - math.sqrt(sum((p[0] - p[1]) ** 2 for p in parts))
    high = est + math.sqrt(sum((p[2] - p[0]) ** 2 for p in parts))
    return est, max(0.0, low), high


def _ratio(num: tuple[float, float, float], den: tuple[float, float, float]) -> tuple[float, float, float]:
    """MOVER-R interval of num / den for independent non-negative estimates, den > 0 (Donner & Zou 2012).
    The roots of num - r den = 0 at the recovered variances; an upper limit is infinite when the
    denominator's interval reaches 0."""
    (a, la, ua), (b, lb, ub) = num, den
    r = a / b
    low_den = ub * (2 * b - ub)
    if low_den > 0:
        low = (a * b - math.sqrt(max(0.0, (a * b) ** 2 - la * ub * (2 * a - la) * (2 * b - ub)))) / low_den
    else:
        low = 0.0
    high_den = lb * (2 * b - lb)
    if high_den > 0:
        high = (a * b + math.sqrt(max(0.0, (a * b) ** 2 - ua * lb * (2 * a - ua) * (2 * b - lb)))) / high_den
    else:
        high = math.inf
    return r, max(0.0, min(low, r)), max(high, r)


def _recall(caught: tuple[float, float, float], missed: tuple[float, float, float]) -> tuple[float, float, float]:
    """Recall = caught / (caught + missed) = 1 / (1 + missed / caught), monotone in the ratio."""
    if math.isnan(caught[0]) or math.isnan(missed[0]) or caught[0] + missed[0] <= 0:
        return math.nan, math.nan, math.nan
    if caught[0] <= 0:
        return 0.0, 0.0, 1.0 / (1.0 + missed[0] / caught[2]) if caught[2] > 0 else 0.0
    r, low, high = _ratio(missed, caught)
    return 1.0 / (1.0 + r), 1.0 / (1.0 + high), 1.0 / (1.0 + low)


def _estimate(share: _Share, decision: int) -> Estimate:
    why = _why_no_share(share, decision) if math.isnan(share.share) else ""
    return Estimate(share.share, share.low, share.high, share.n_labelled, why)


def _empty(n_labelled: int, why: str) -> Estimate:
    return Estimate(math.nan, math.nan, math.nan, n_labelled, why)


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None
