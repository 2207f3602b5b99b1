"""Finite-sample guarantees for the two routing thresholds, computed on the calibration split.

Everything works on one ascending sort of the scores followed by cumulative sums, so every threshold
and every bound is an index lookup. The two guarantees each get half of the error budget `delta`:

* Recall (t_pass). Sort the n1 violating listings' risks ascending. Passing everything below the
  (k+1)-th smallest, the miss rate on new data is F(r_(k+1)) ~ Beta(k+1, n1-k), so
  P(miss rate > 1-R) = BinomCDF(k; n1, 1-R). Take k* = max{k : BinomCDF(k; n1, 1-R) <= delta/2} and
  t_pass = r_(k*+1). No such k exists when R^n1 > delta/2, i.e. n1 < ln(delta/2)/ln(R).
* Block precision (t_block). For a candidate t, with n(t) listings at or above t of which w(t) are good
  (wrongly blocked), the p-value of "precision < P" is BinomCDF(w(t); n(t), 1-P) (exact binomial tail;
  the issue's "BinomCDF(#good; n, 1-P)" counts the wrong class). Fixed-sequence testing (Learn then
  Test): test candidates from strict to lenient and stop at the first p-value above delta/2; every
  candidate tested before the stop is certified simultaneously.
  The sequence cannot start at the very strictest candidate: with one listing above it the p-value is
  at least P, so the walk would always stop at step one. It starts where the test is likeliest to
  pass if the risks are calibrated (`sequence_start`); choosing the start from risks alone, not
  labels, keeps the procedure valid.

Risks are assumed calibrated on data other than these labels (or monotone in a score that was);
with ties the thresholds only get more conservative.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
from scipy import stats

DEFAULT_REVIEW_SECONDS = 60.0  # used only when the reference carries no handling time at all


@dataclass(frozen=True)
class RankedScores:
    """Calibration rows sorted by risk, with prefix sums (index i = rows with risk < sorted[i])."""

    risk: np.ndarray  # ascending
    violating_risk: np.ndarray  # ascending risks of label == 1
    cum_violating: np.ndarray  # length n+1
    cum_seconds: np.ndarray  # length n+1
    cum_risk: np.ndarray  # length n+1
    seconds_imputed: bool

    @classmethod
    def build(cls, risk: np.ndarray, label: np.ndarray, review_seconds: np.ndarray | None = None) -> RankedScores:
        risk = np.asarray(risk, dtype=np.float64)
        label = np.asarray(label).astype(bool)
        if risk.shape != label.shape or risk.ndim != 1:
            raise ValueError("risk and label must be 1-d arrays of the same length")
        if not np.all(np.isfinite(risk)) or risk.min(initial=0.0) < 0 or risk.max(initial=0.0) > 1:
            raise ValueError("risk: calibrated risk must be finite and within [0, 1]")
        seconds, imputed = _fill_seconds(review_seconds, len(risk))
        order = np.argsort(risk, kind="stable")
        risk, label, seconds = risk[order], label[order], seconds[order]
        return cls(
            risk=risk,
            violating_risk=risk[label],
            cum_violating=np.r_[0, np.cumsum(label, dtype=np.int64)],
            cum_seconds=np.r_[0.0, np.cumsum(seconds)],
            cum_risk=np.r_[0.0, np.cumsum(risk)],
            seconds_imputed=imputed,
        )

    @property
    def n(self) -> int:
        return len(self.risk)

    @property
    def n_violating(self) -> int:
        return len(self.violating_risk)

    def below(self, t: float | np.ndarray) -> np.ndarray:
        """Number of rows with risk < t."""
        return np.searchsorted(self.risk, t, side="left")

    def point(self, t_pass: float, t_block: float, alpha: float, alpha_block: float | None = None) -> OperatingPoint:
        """Routing counts, point estimates and one-sided bounds for one threshold pair: the miss rate's at
        1 - alpha, the block precision's at 1 - alpha_block (default: alpha as well)."""
        alpha_block = alpha if alpha_block is None else alpha_block
        i_pass = int(self.below(t_pass))
        i_block = max(int(self.below(t_block)), i_pass)
        misses = int(self.cum_violating[i_pass])
        blocked = self.n - i_block
        wrong = blocked - int(self.cum_violating[-1] - self.cum_violating[i_block])
        queue = i_block - i_pass
        n1 = self.n_violating
        return OperatingPoint(
            t_pass=float(t_pass),
            t_block=float(t_block),
            n=self.n,
            n_violating=n1,
            recall=1.0 - misses / n1 if n1 else float("nan"),
            block_precision=1.0 - wrong / blocked if blocked else float("nan"),
            auto_pass_share=i_pass / self.n,
            queue_share=queue / self.n,
            auto_block_share=blocked / self.n,
            queue_items=queue,
            auto_blocked=blocked,
            misses=misses,
            wrongful_blocks=wrong,
            reviewer_hours=float(self.cum_seconds[i_block] - self.cum_seconds[i_pass]) / 3600.0,
            miss_rate_upper=miss_rate_upper(misses, n1, alpha),
            block_precision_lower=precision_lower(blocked - wrong, blocked, alpha_block),
            recall_confidence=1.0 - alpha,
            block_confidence=1.0 - alpha_block if alpha_block > 0 else None,
        )


@dataclass(frozen=True)
class OperatingPoint:
    """A threshold pair counted on calibration rows. Each bound is one-sided at its own confidence: the
    recall's at `recall_confidence` (tiered: every tier's bound at once), the block precision's at
    `block_confidence` (None: the confidence budget gave the block no statement)."""

    t_pass: float
    t_block: float
    n: int
    n_violating: int
    recall: float
    block_precision: float  # NaN when nothing is auto-blocked
    auto_pass_share: float
    queue_share: float
    auto_block_share: float
    queue_items: int
    auto_blocked: int
    misses: int
    wrongful_blocks: int
    reviewer_hours: float  # queue handling time of these rows
    miss_rate_upper: float  # so recall >= 1 - miss_rate_upper
    block_precision_lower: float  # NaN when nothing is auto-blocked (vacuous)
    recall_confidence: float
    block_confidence: float | None

    def to_dict(self) -> dict[str, float | int | None]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(self).items()}


def _fill_seconds(review_seconds: np.ndarray | None, n: int) -> tuple[np.ndarray, bool]:
    if review_seconds is None:
        return np.full(n, DEFAULT_REVIEW_SECONDS), True
    seconds = np.asarray(review_seconds, dtype=np.float64)
    known = np.isfinite(seconds) & (seconds >= 0)
    if known.all():
        return seconds, False
    fill = float(np.median(seconds[known])) if known.any() else DEFAULT_REVIEW_SECONDS
    return np.where(known, seconds, fill), True


def miss_rate_upper(misses: int, n_violating: int, alpha: float) -> float:
    """Clopper-Pearson upper bound (1-alpha) on the miss rate: the Beta quantile of the order statistic."""
    if n_violating == 0:
        return 1.0
    if misses >= n_violating:
        return 1.0
    return float(stats.beta.ppf(1.0 - alpha, misses + 1, n_violating - misses))


def precision_lower(good: int, n: int, alpha: float) -> float:
    """Clopper-Pearson lower bound (1-alpha) on precision; NaN when n == 0 (nothing blocked)."""
    if n == 0:
        return float("nan")
    if good == 0:
        return 0.0
    return float(stats.beta.ppf(alpha, good, n - good + 1))


def pass_order_index(n_violating: int, recall: float, alpha: float) -> int | None:
    """k* = max{k : BinomCDF(k; n1, 1-R) <= alpha}; None when even k = 0 fails."""
    if n_violating == 0 or recall**n_violating > alpha:
        return None
    k = int(stats.binom.ppf(alpha, n_violating, 1.0 - recall))  # smallest k with cdf >= alpha
    while k >= 0 and stats.binom.cdf(k, n_violating, 1.0 - recall) > alpha:
        k -= 1
    while k + 1 < n_violating and stats.binom.cdf(k + 1, n_violating, 1.0 - recall) <= alpha:
        k += 1
    return k if k >= 0 else None


def pass_score(tier_risk: np.ndarray, recalls: np.ndarray) -> np.ndarray:
    """s = max_k r_k / (1 - R_k): a listing is passed at level u when s < u, i.e. when every tier's risk is
    below u (1 - R_k). Thresholds grow in proportion to each tier's allowed miss rate."""
    return (np.asarray(tier_risk, dtype=np.float64) / (1.0 - np.asarray(recalls, dtype=np.float64))).max(axis=1)


def block_p_values(n_blocked: np.ndarray, n_wrong: np.ndarray, block_precision: float) -> np.ndarray:
    """p-value of H0 'precision < P' per candidate: P(Binom(n, 1-P) <= wrong)."""
    return stats.binom.cdf(n_wrong, n_blocked, 1.0 - block_precision)


def group_starts(sorted_risk: np.ndarray) -> np.ndarray:
    """Index of the first row of every distinct risk value (candidate thresholds)."""
    if len(sorted_risk) == 0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, sorted_risk[1:] != sorted_risk[:-1]])


def sequence_start(ranked: RankedScores, starts: np.ndarray, block_precision: float, alpha: float) -> int:
    """Candidate (index into `starts`) where fixed-sequence testing begins, chosen from risks only.

    The candidate whose test is likeliest to pass if the risks are calibrated: with n rows blocked, the
    test passes when the wrong blocks W <= c(n) = max{w : BinomCDF(w; n, 1-P) <= alpha}; W is taken
    as Poisson with mean sum(1 - risk) over the blocked rows (Le Cam), so P(pass) = PoissonCDF(c(n)).
    Ties go to the strictest candidate. Using the plain expected count in place of W would start where
    a single unexpected wrong block already fails the first test.
    """
    n_blocked = ranked.n - starts
    expected_wrong = np.maximum(n_blocked - (ranked.cum_risk[-1] - ranked.cum_risk[starts]), 0.0)
    p_fail = 1.0 - block_precision
    critical = stats.binom.ppf(alpha, n_blocked, p_fail)  # smallest w with cdf >= alpha
    critical = np.where(stats.binom.cdf(critical, n_blocked, p_fail) > alpha, critical - 1, critical)
    log_pass = np.where(critical >= 0, stats.poisson.logcdf(np.maximum(critical, 0), expected_wrong), -np.inf)
    return int(len(starts) - 1 - np.argmax(log_pass[::-1]))  # ties -> the strictest


def certify_block(ranked: RankedScores, block_precision: float, alpha: float) -> float | None:
    """Lowest t_block certified by fixed-sequence testing at level alpha; None if none is."""
    starts = group_starts(ranked.risk)
    if len(starts) == 0:
        return None
    first = sequence_start(ranked, starts, block_precision, alpha)
    tested = starts[: first + 1][::-1]  # strict -> lenient
    n_blocked = ranked.n - tested
    n_wrong = n_blocked - (ranked.cum_violating[-1] - ranked.cum_violating[tested])
    passed = block_p_values(n_blocked, n_wrong, block_precision) <= alpha
    n_passed = len(passed) if passed.all() else int(np.argmin(passed))
    if n_passed == 0:
        return None
    return float(ranked.risk[tested[n_passed - 1]])


@dataclass(frozen=True)
class Certified:
    """Outcome of certifying both thresholds on one calibration sample."""

    t_pass: float
    t_block: float
    pass_certified: bool
    block_certified: bool
    point: OperatingPoint


def certify(
    ranked: RankedScores, recall: float, block_precision: float, delta: float, alphas: tuple[float, float] | None = None
) -> Certified:
    """Minimum-queue pair with recall >= R and block precision >= P, each at confidence 1 - delta/2, or
    at the levels `alphas` = (recall's, block's), which sum to delta (`decision.alpha_split`; a block
    level of 0 certifies no block threshold)."""
    alpha, alpha_block = alphas if alphas is not None else (delta / 2.0, delta / 2.0)
    k = pass_order_index(ranked.n_violating, recall, alpha)
    t_pass = float(ranked.violating_risk[k]) if k is not None else 0.0
    certified_block = certify_block(ranked, block_precision, alpha_block) if alpha_block > 0 else None
    t_block = certified_block if certified_block is not None else 1.0
    t_pass, t_block = ordered_pair(t_pass, t_block)
    point = ranked.point(t_pass, t_block, alpha, alpha_block)
    return Certified(t_pass, t_block, k is not None, certified_block is not None, point)


def ordered_pair(t_pass: float, t_block: float) -> tuple[float, float]:
    """Make t_pass < t_block. When the certified thresholds cross, the queue is empty: lowering t_pass
    to just below t_block keeps the recall guarantee (fewer passes) and the same blocks."""
    if t_pass < t_block:
        return t_pass, t_block
    if t_block > 0.0:
        return float(np.nextafter(t_block, 0.0)), t_block
    return 0.0, float(np.nextafter(0.0, 1.0))
