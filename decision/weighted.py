"""Certification on logged labels: thresholds whose guarantees hold under audit sampling.

Once the service decides, a retraining export holds every reviewed listing (inclusion probability
pi = 1) but only an audited sample of the automated ones (pi = the audit rate, `decision.audit`).
Counting those rows as they are under-counts exactly the listings a new t_pass would pass, so an
unweighted certificate overstates recall (a replay of a 2% audit certified "recall >= 0.99" at a true
0.77). Here each row counts for w = 1 / pi listings of traffic (Horvitz & Thompson 1952), and the bound
is a test by betting on those weighted rows (Shafer 2021; Waudby-Smith & Ramdas 2024).

Method (one betting test per threshold, in a fixed sequence):

* Model. The certification rows are the labelled part of N i.i.d. listings of traffic, each labelled
  independently with its known pi > 0 (fixed by the audit design when it was decided, never by its
  label). For a threshold, call a violation "kept" when the threshold holds it back (recall) or a
  blocked listing "kept" when it is a violation (precision), and "lost" otherwise; K and L are the
  traffic probabilities of the two kinds, and the share certified is K / (K + L). Given n, the number of
  labelled rows of either kind, those rows are i.i.d. with P(stratum h, kind j) proportional to
  pi_h p_hj (independent thinning of i.i.d. draws).
* The test. For a target R give each such row Z = w R when lost and Z = -w (1 - R) when kept. Then
  E[Z] = c (R L - (1 - R) K) with c > 0 (the pi_h cancel against w_h), so the null "share <= R" is
  exactly E[Z] >= 0. For a bet 0 <= lam <= 1 / (w_max R), with w_max the largest weight of the design
  (every stratum of the certification rows, labelled or not as a violation), each factor 1 - lam Z_i is
  non-negative and has mean 1 - lam E[Z] <= 1 under the null, so by independence the capital
  prod_i (1 - lam Z_i) has mean <= 1; so has a mixture of such capitals over bets whose weights sum to 1
  and are fixed from n, R, alpha and the design alone. Markov's inequality: P(capital >= 1 / alpha) <=
  alpha under the null, given n and hence unconditionally. The share is certified above R when the
  capital reaches 1 / alpha. Every Z falls as R falls, so the capital rises: the certified set is an
  interval below the largest certified R, which `share_lower` finds by bisection.
* The bets (`bet_fractions`). The log-optimal bet is about -E[Z] / Var[Z], and for an effect the
  test can just detect, |E[Z]| ~ sqrt(2 ln(1 / alpha) Var[Z] / n), it is sqrt(2 ln(1 / alpha) / (n Var[Z])).
  Var[Z] lies between R (1 - R) (every row fully reviewed) and (w_max R)^2 (the most dispersed the
  design allows), so the useful bets span fractions sqrt(2 ln(1 / alpha) / n) to
  sqrt(2 ln(1 / alpha) / (n R (1 - R))) w_max R of the largest admissible one (capped at MAX_BET). The
  mixture spreads equal weights over a geometric grid of ratio BET_STEP across that span: it pays
  ln(number of bets) nats of evidence for not knowing the variance, and little for the grid's spacing.
  On a design dominated by reviewed rows this matches a single plug-in bet; with a heavily sampled
  stratum (pi = 0.05) it certifies about twice as often as a wider fixed grid did.
* Thresholds. Candidates are tested in a fixed order (Learn then Test; Angelopoulos et al. 2021): for
  recall from the strictest t_pass upward, stopping at the first failure (the capital only falls as
  t_pass rises); for blocks from a start chosen from risks and pi alone (never labels) towards lower
  t_block. Every candidate passed before the stop holds at level alpha simultaneously.

Why a betting test rather than bounds per stratum: the previous certificate bounded the kept and lost
counts of every stratum separately (exact Poisson bounds, Bonferroni over 2H bounds), which pays the
tail of each small count on its own; one test on the weighted rows pays it once. On a logged retrain of
the loop benchmark (about 1,800 violations, strata pi = 1 and 0.4, recall 0.95 at alpha 0.025) the
stratified bounds allowed 37 misses and this test 45 (19-56 misses on five such retrains, against
17-48). In the loop benchmark at 100k rows the weighted arm then auto-decides 0.78x of the fully
labelled arm after three retrains, against 0.57x before (`bench/RESULTS_LOOP_DENSE_AUDIT.md`).

What it costs: a lost row of a stratum audited at rate pi costs ln(1 / (1 - f)) nats of capital for a
bet at fraction f of the largest, and the bet is capped at 1 / (w_max R), so the kept rows earn at
most ln(1 + (1 - R) pi_min / R) nats each: certifying R with no miss at all needs about
ln(1 / alpha) R / ((1 - R) pi_min) labelled violations (`audit_rate_needed`), and `decision.audit_sizing`
sizes a policy's rates for the next certificate. With every pi = 1 the pipeline certifies with the
exact order-statistic certificate of `decision.guarantees` instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

PI_DECIMALS = 9  # inclusion probabilities equal to this many decimals form one stratum
BET_STEP = 1.5  # ratio of neighbouring bets of the mixture (`bet_fractions`)
MAX_BET = 0.99  # largest fraction of the admissible bet (keeps log(1 - lam Z) finite)
BISECTION_STEPS = 40
CHUNK_ROWS = 8192  # candidates whose capital is computed at once (bounds the (rows, bets, strata) arrays)


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


def log_capital(
    kept: np.ndarray, lost: np.ndarray, pi: np.ndarray, alpha: float, target: float | np.ndarray
) -> np.ndarray:
    """Log of the betting capital against "share <= target" for each row of (m, H) labelled counts of kept
    and lost listings per stratum (counts may be expected, non-integer ones), `target` scalar or (m,):
    the mixture, with equal weights, of the bets of `bet_fractions` (module docstring). Rows are taken
    CHUNK_ROWS at a time, so memory stays bounded for a certificate over millions of candidates."""
    kept, lost = np.atleast_2d(np.asarray(kept, dtype=np.float64)), np.atleast_2d(np.asarray(lost, dtype=np.float64))
    r = np.broadcast_to(np.asarray(target, dtype=np.float64), (kept.shape[0],))
    w = 1.0 / np.asarray(pi, dtype=np.float64)
    if kept.shape[0] <= CHUNK_ROWS:
        return _log_capital(kept, lost, w, alpha, r)
    return np.concatenate(
        [
            _log_capital(kept[i : i + CHUNK_ROWS], lost[i : i + CHUNK_ROWS], w, alpha, r[i : i + CHUNK_ROWS])
            for i in range(0, kept.shape[0], CHUNK_ROWS)
        ]
    )


def _log_capital(kept: np.ndarray, lost: np.ndarray, w: np.ndarray, alpha: float, r: np.ndarray) -> np.ndarray:
    n = kept.sum(axis=1) + lost.sum(axis=1)
    fraction, weight = bet_fractions(n, r, w.max(), alpha)  # (m, G) each
    scale = (fraction / w.max())[:, :, None] * w[None, None, :]  # lam w_h r, for lam = fraction / (w_max r)
    gain = np.log1p(scale * ((1.0 - r) / r)[:, None, None])  # a kept row: 1 + lam w (1 - r)
    loss = np.log1p(-scale)  # a lost row: 1 - lam w r
    log_k = (gain * kept[:, None, :]).sum(axis=2) + (loss * lost[:, None, :]).sum(axis=2)
    log_k = np.where(weight > 0, log_k, -np.inf)
    top = log_k.max(axis=1)
    return top + np.log((weight * np.exp(log_k - top[:, None])).sum(axis=1))


def bet_fractions(n: np.ndarray, r: np.ndarray, w_max: float, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The bets of the mixture, as fractions of the largest admissible one, and their weights, (m, G) each
    (weight 0 pads rows with fewer bets): a geometric grid of ratio BET_STEP from the plug-in bet for
    fully reviewed rows (the largest useful one) down to the one for rows as dispersed as the design
    allows (module docstring). Depends on n, the target, the design and alpha only, never on labels."""
    spread = 2.0 * math.log(1.0 / alpha) / np.maximum(n, 1.0)
    high = np.minimum(np.sqrt(spread / np.maximum(r * (1.0 - r), 1e-12)) * w_max * r, MAX_BET)
    low = np.minimum(np.sqrt(spread), high)
    count = 1 + np.ceil(np.log(high / low) / math.log(BET_STEP) - 1e-9).astype(np.int64)
    k = np.arange(count.max())[None, :]
    valid = k < count[:, None]
    return high[:, None] / BET_STEP**k, np.where(valid, 1.0 / count[:, None], 0.0)


def share_certified(kept: np.ndarray, lost: np.ndarray, pi: np.ndarray, alpha: float, target: float) -> np.ndarray:
    """(m,) whether the traffic share K / (K + L) is certified above `target` at level alpha, for each row
    of (m, H) labelled counts of kept and lost listings per stratum (the module docstring's test)."""
    if target <= 0.0:
        return np.ones(np.atleast_2d(kept).shape[0], dtype=bool)
    if target >= 1.0:
        return np.zeros(np.atleast_2d(kept).shape[0], dtype=bool)
    return log_capital(kept, lost, pi, alpha, target) >= math.log(1.0 / alpha)


def share_lower(kept: np.ndarray, lost: np.ndarray, pi: np.ndarray, alpha: float) -> np.ndarray:
    """Lower bound, holding with probability >= 1 - alpha, on the traffic share K / (K + L) for each row of
    (m, H) labelled counts of kept and lost listings per stratum: the largest target the test certifies
    (bisection; the certified set is an interval, module docstring). 0 when nothing is certified."""
    kept = np.atleast_2d(kept)
    low, high = np.zeros(kept.shape[0]), np.ones(kept.shape[0])
    for _ in range(BISECTION_STEPS):
        mid = 0.5 * (low + high)
        ok = log_capital(kept, lost, pi, alpha, mid) >= math.log(1.0 / alpha)
        low, high = np.where(ok, mid, low), np.where(ok, high, mid)
    return low


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
    best = float(share_lower(total, np.zeros(H), strata.pi, alpha)[0]) if n else 0.0
    passing = share_certified(total - missed, missed, strata.pi, alpha, recall)
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
        recall_lower=max(float(share_lower(total - lost, lost, strata.pi, alpha)[0]), recall),  # R itself passed
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

    Candidates are the distinct risks, strict to lenient. The sequence starts at the candidate whose test
    would gather the most evidence if the risks were calibrated (expected kept/lost counts from the risks,
    per stratum): a start chosen without labels keeps the procedure valid.
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
    expected = log_capital(expected_kept, expected_lost, strata.pi, alpha, block_precision)
    start = int(np.argmax(expected))
    passing = share_certified(kept[start:], lost[start:], strata.pi, alpha, block_precision)
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
        precision_lower=max(float(share_lower(k, ell, strata.pi, alpha)[0]), block_precision),
    )


def audit_rate_needed(n_violating: int, recall: float, alpha: float) -> float:
    """The lowest audit rate (to 0.1%) of a stratum beside the fully reviewed one at which recall >= R is
    certified with no miss observed, with n_violating reviewed violations in the certification rows: the
    heavier a stratum's weight, the smaller the largest admissible bet (module docstring). A planning
    figure: any miss in an audited stratum needs more."""
    kept, lost = np.array([[float(n_violating), 0.0]]), np.zeros((1, 2))
    if n_violating <= 0 or not share_certified(kept, lost, np.array([1.0, 1.0]), alpha, recall)[0]:
        return 1.0
    low, high = 0.0, 1.0
    while high - low > 1e-3:
        mid = 0.5 * (low + high)
        if share_certified(kept, lost, np.array([1.0, mid]), alpha, recall)[0]:
            high = mid
        else:
            low = mid
    return high


MAX_VIOLATIONS = 1 << 27  # `violations_needed` gives up beyond this many violations


def violations_needed(pi: np.ndarray, recall: float, alpha: float) -> int | None:
    """The fewest labelled violations with which recall >= `recall` is certified at level alpha on a design
    with inclusion probabilities `pi` (the certification rows' strata), when none is missed and each weighs
    least (all in the stratum of the largest pi); None when no count up to MAX_VIOLATIONS is. A figure from
    the design alone, never from labels: the bets are capped at 1 / (w_max R), so a stratum audited at
    rate pi_min makes each kept violation earn at most ln(1 + (1 - R) pi_min / R) nats (module
    docstring). Found by doubling, then bisection. The capital of n kept rows grows with n only nearly:
    the mixture's bets are sized from n, so a count a few percent below the result may certify too (a
    planning figure; `training.pipeline` asks for VIOLATION_MARGIN times it)."""
    pi = np.asarray(pi, dtype=np.float64)
    kept, lost = np.zeros((1, len(pi))), np.zeros((1, len(pi)))
    top = int(np.argmax(pi))

    def certifies(n: int) -> bool:
        kept[0, top] = n
        return bool(share_certified(kept, lost, pi, alpha, recall)[0])

    high = 1
    while not certifies(high):
        if high >= MAX_VIOLATIONS:
            return None
        high *= 2
    low = high // 2  # 0, or a count that did not certify
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if certifies(mid) else (mid, high)
    return high
