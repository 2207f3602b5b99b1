"""Certification on logged labels: thresholds whose guarantees hold under audit sampling.

Once the service decides, a retraining export holds every reviewed listing (inclusion probability
pi = 1) but only an audited sample of the automated ones (pi = the audit rate, `decision.audit`).
Counting those rows as they are under-counts exactly the listings a new t_pass would pass, so an
unweighted certificate overstates recall (a replay of a 2% audit certified "recall >= 0.99" at a true
0.77). Here each row counts for 1 / pi listings of traffic (Horvitz & Thompson 1952) and every bound is
taken per sampling stratum.

Method (stratified Poisson bounds on a ratio, combined by Bonferroni, in a fixed sequence):

* Model. Logged listings are i.i.d. draws from traffic; each is labelled independently with its known
  pi, and the rows fall into H strata of equal pi. For a threshold, call a violation "kept" when the
  threshold holds it back (recall) or a blocked listing "kept" when it is a violation (precision), and
  "lost" otherwise. In stratum h the labelled count of each kind is Binomial(N, pi_h q_h) for the
  traffic share q_h of that kind in that stratum, so the traffic quantity certified,
  K / (K + L) with K = sum_h N q_h(kept) and L = sum_h N q_h(lost), is recall (resp. block precision).
* Bounds. For each stratum and kind, the exact Poisson (Garwood 1936) bounds on the count's mean, divided
  by pi_h, bound N q_h: an upper bound for the lost kind at level a_h, a lower bound for the kept kind at
  level b_h. Far-tail binomial probabilities are below the Poisson ones with the same mean (Anderson &
  Samuels 1967: the binomial is less dispersed), so each bound is conservative for binomial counts.
  By the union bound all 2H hold together with probability >= 1 - sum(a_h + b_h) = 1 - alpha, and then
  K / (K + L) >= K_low / (K_low + L_up) (the ratio is increasing in K and decreasing in L).
* Splitting alpha (`split_alpha`). Any split fixed before the labels are seen is valid, and the split
  here depends on the inclusion probabilities alone (a property of the audit design, not of the
  outcomes). What matters is the sampled strata's lost counts: a stratum audited at rate pi_h in which
  no lost listing was seen still bounds its lost traffic by ln(1 / a_h) / pi_h, and the sum of these over
  the strata, subject to sum(a_h) = A, is least at a_h = A (1 / pi_h) / sum_j(1 / pi_j) (Lagrange). So
  the lost side gets LOST_SHARE of alpha, split in proportion to 1 / pi_h; the kept side the rest, in
  proportion to pi_h, since the kept violations sit mostly in the fully reviewed stratum, where a
  count in the thousands makes its bound move slowly with its level (about z / sqrt(count)). With one
  stratum (no sampling) this is a 1/4 : 3/4 split of alpha between the two bounds. Before this split
  every bound took alpha / (2H); with strata (1, 0.1, 0.02) and no lost listing seen, the lost side's
  bound falls from 334 to 275 listings at alpha = 0.025.
* Thresholds. Candidates are tested in a fixed order (Learn then Test; Angelopoulos et al. 2021): for
  recall from the strictest t_pass upward, stopping at the first failure (the bound only falls as
  t_pass rises); for blocks from a start chosen from risks and pi alone (never labels) towards lower
  t_block. Every candidate passed before the stop holds at level alpha simultaneously.

With every pi = 1 this is a slightly more conservative version of the order-statistic certificate of
`decision.guarantees` (Poisson instead of exact binomial bounds); the pipeline uses it only when the
certification rows carry an inclusion probability below 1. What it costs: a stratum audited at rate pi
in which no miss was seen still bounds the misses of its traffic by about ln(1 / (LOST_SHARE alpha)) / pi
listings (about 4 / pi), so certifying recall R needs about 4 / (pi (1 - R)) violations in the
certification rows; `audit_rate_needed` says what audit rate a target needs, and `decision.audit_sizing`
sizes a policy's rates for the next certificate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

PI_DECIMALS = 9  # inclusion probabilities equal to this many decimals form one stratum
LOST_SHARE = 0.75  # of alpha, spent on the lost counts' upper bounds (the rest on the kept counts' lower ones)


def poisson_upper(count: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    """Exact (Garwood) upper confidence bound at level 1 - alpha on a Poisson mean, given counts."""
    count = np.asarray(count, dtype=np.float64)
    return 0.5 * stats.chi2.ppf(1.0 - alpha, 2.0 * count + 2.0)


def poisson_lower(count: np.ndarray, alpha: float | np.ndarray) -> np.ndarray:
    """Exact (Garwood) lower confidence bound at level 1 - alpha on a Poisson mean (0 for a zero count)."""
    count = np.asarray(count, dtype=np.float64)
    return np.where(count > 0, 0.5 * stats.chi2.ppf(alpha, np.maximum(2.0 * count, 1e-12)), 0.0)


@dataclass(frozen=True)
class Strata:
    """The distinct inclusion probabilities of the certification rows and each row's stratum."""

    pi: np.ndarray  # (H,)
    index: np.ndarray  # (n,) into pi

    @classmethod
    def of(cls, inclusion_prob: np.ndarray) -> Strata:
        pi = np.asarray(inclusion_prob, dtype=np.float64)
        if pi.ndim != 1 or not np.all(np.isfinite(pi)) or (pi.size and (pi.min() <= 0 or pi.max() > 1)):
            raise ValueError("inclusion_prob: every value must be a probability in (0, 1]")
        values, index = np.unique(np.round(pi, PI_DECIMALS), return_inverse=True)
        return cls(values, index.reshape(-1))

    @property
    def weighted(self) -> bool:
        """Whether any row was sampled (pi < 1): only then is the weighted certificate needed."""
        return bool(self.pi.size and self.pi.min() < 1.0)

    def counts(self, mask: np.ndarray) -> np.ndarray:
        """(H,) rows of `mask` per stratum."""
        return np.bincount(self.index[np.asarray(mask, dtype=bool)], minlength=len(self.pi))


def split_alpha(pi: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """(levels of the kept counts' lower bounds, levels of the lost counts' upper bounds), (H,) each,
    summing to alpha: LOST_SHARE of it to the lost side in proportion to 1 / pi, the rest to the kept side
    in proportion to pi (module docstring)."""
    pi = np.asarray(pi, dtype=np.float64)
    kept = (1.0 - LOST_SHARE) * alpha * pi / pi.sum()
    lost = LOST_SHARE * alpha * (1.0 / pi) / (1.0 / pi).sum()
    return kept, lost


def share_lower(kept: np.ndarray, lost: np.ndarray, pi: np.ndarray, alpha: float) -> np.ndarray:
    """Lower bound, holding with probability >= 1 - alpha, on the traffic share K / (K + L) for each row of
    (m, H) labelled counts of kept and lost listings per stratum (see the module docstring)."""
    kept, lost = np.atleast_2d(kept), np.atleast_2d(lost)
    alpha_kept, alpha_lost = split_alpha(pi, alpha)
    k_low = (poisson_lower(kept, alpha_kept) / pi).sum(axis=1)
    l_up = (poisson_upper(lost, alpha_lost) / pi).sum(axis=1)
    return np.where(k_low + l_up > 0, k_low / np.maximum(k_low + l_up, 1e-300), 0.0)


def weighted_share(kept: np.ndarray, lost: np.ndarray, pi: np.ndarray) -> float:
    """The Horvitz-Thompson point estimate of K / (K + L) from (H,) counts (NaN with no rows)."""
    k, ell = float((kept / pi).sum()), float((lost / pi).sum())
    return k / (k + ell) if k + ell > 0 else float("nan")


@dataclass(frozen=True)
class RecallCertificate:
    """The largest certified pass level on a score, for one group of violations."""

    threshold: float  # pass when score < threshold (0: nothing certified, nothing passes)
    certified: bool
    n_violating: int  # labelled violations
    misses: int  # labelled violations below the threshold
    recall: float  # Horvitz-Thompson estimate at the threshold
    recall_lower: float  # certified lower bound at 1 - alpha
    best_lower: float  # the bound with no miss at all: the strongest recall certifiable with these rows


def certify_recall(
    score: np.ndarray, strata: Strata, violating: np.ndarray, recall: float, alpha: float
) -> RecallCertificate:
    """Largest threshold u on `score` (pass when score < u) with recall >= `recall` certified at alpha.

    Ordering the violations by score, passing below the (k+1)-th smallest misses the first k; the bound
    only falls as k grows, so the fixed sequence k = 0, 1, ... stops at the first failure, and
    u = the (k*+1)-th smallest violation score for the last k* that passed.
    """
    violating = np.asarray(violating, dtype=bool)
    v_score = np.asarray(score, dtype=np.float64)[violating]
    v_stratum = strata.index[violating]
    order = np.argsort(v_score, kind="stable")
    v_score, v_stratum = v_score[order], v_stratum[order]
    n, H = len(v_score), len(strata.pi)
    total = np.bincount(v_stratum, minlength=H)
    onehot = np.zeros((n + 1, H), dtype=np.int64)
    if n:
        onehot[np.arange(1, n + 1), v_stratum] = 1
    missed = np.cumsum(onehot, axis=0)  # row k: the first k violations missed
    lower = share_lower(total - missed, missed, strata.pi, alpha)
    best = float(lower[0]) if n else 0.0
    passing = lower >= recall
    if n == 0 or not passing[0]:
        return RecallCertificate(0.0, False, n, 0, float("nan") if n == 0 else 1.0, best, best)
    k_star = int(np.argmin(passing)) - 1 if not passing.all() else n - 1
    threshold = float(v_score[k_star])  # pass below the (k*+1)-th smallest: k* misses
    misses = int((v_score < threshold).sum())  # ties only lower it
    lost = np.bincount(v_stratum[:misses], minlength=H)
    return RecallCertificate(
        threshold=threshold,
        certified=True,
        n_violating=n,
        misses=misses,
        recall=weighted_share(total - lost, lost, strata.pi),
        recall_lower=float(share_lower(total - lost, lost, strata.pi, alpha)[0]),
        best_lower=best,
    )


@dataclass(frozen=True)
class BlockCertificate:
    t_block: float  # 1.0: nothing certified
    certified: bool
    blocked: int  # labelled rows at or above t_block
    wrong: int
    precision: float  # Horvitz-Thompson estimate
    precision_lower: float

    @classmethod
    def none(cls) -> BlockCertificate:
        """Nothing certified: t_block = 1."""
        return cls(1.0, False, 0, 0, float("nan"), float("nan"))


def certify_block(
    risk: np.ndarray, strata: Strata, label: np.ndarray, block_precision: float, alpha: float
) -> BlockCertificate:
    """Lowest t_block with block precision >= target certified at alpha, by fixed-sequence testing.

    Candidates are the distinct risks, strict to lenient. The sequence starts at the candidate whose bound
    would be highest if the risks were calibrated (expected kept/lost counts from the risks, per stratum):
    a start chosen without labels keeps the procedure valid.
    """
    risk = np.asarray(risk, dtype=np.float64)
    label = np.asarray(label).astype(bool)
    none = BlockCertificate.none()
    if not len(risk):
        return none
    order = np.argsort(-risk, kind="stable")
    r, y, h = risk[order], label[order], strata.index[order]
    H = len(strata.pi)
    last_of_group = np.r_[r[1:] != r[:-1], True]  # blocking at r[i] blocks rows 0..i (ties together)
    ends = np.flatnonzero(last_of_group)

    def cumulative(values: np.ndarray) -> np.ndarray:  # per stratum, summed over rows 0..end of each group
        rows = np.zeros((len(r), H))
        rows[np.arange(len(r)), h] = values
        return np.cumsum(rows, axis=0)[ends]

    kept, lost = cumulative(y), cumulative(~y)
    expected_kept = cumulative(r)
    expected_lost = cumulative(np.ones(len(r))) - expected_kept
    expected = share_lower(np.round(expected_kept), np.round(expected_lost), strata.pi, alpha)
    start = int(np.argmax(expected))
    observed = share_lower(kept[start:], lost[start:], strata.pi, alpha)
    passing = observed >= block_precision
    if not passing[0]:
        return none
    stop = start + (int(np.argmin(passing)) - 1 if not passing.all() else len(passing) - 1)
    k, ell = kept[stop], lost[stop]
    return BlockCertificate(
        t_block=float(r[ends[stop]]),
        certified=True,
        blocked=int(k.sum() + ell.sum()),
        wrong=int(ell.sum()),
        precision=weighted_share(k, ell, strata.pi),
        precision_lower=float(share_lower(k, ell, strata.pi, alpha)[0]),
    )


def audit_rate_needed(n_violating: int, recall: float, alpha: float) -> float:
    """The audit rate at which a stratum with no observed miss leaves room for recall >= R, with
    n_violating violations in the certification rows: its miss bound, about -ln(LOST_SHARE alpha) / pi
    when it is the most sampled stratum, must stay below (1 - R) n_violating (a rough planning figure:
    it ignores the other strata's slack)."""
    if n_violating <= 0:
        return 1.0
    return min(1.0, -math.log(LOST_SHARE * alpha) / ((1.0 - recall) * n_violating))
