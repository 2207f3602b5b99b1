"""Tiered guarantees: one certified auto-pass threshold per violation tier, one certified block threshold.

A tier is a group of violation reasons with its own recall target (`features.config.Tier`). Each tier k
has its own calibrated risk r_k; the routing (`decision.policy.route`) auto-passes a listing only when
r_k < t_k for every tier, and auto-blocks when the overall risk reaches t_block.

Guarantee. With confidence 1 - delta, simultaneously: for every tier k, recall_k >= R_k on new
listings, and block precision >= P.

Proof sketch.
* One pass score for every tier: s = max_k r_k / (1 - R_k), and the thresholds t_k = u (1 - R_k), so
  "every tier's risk below its t_pass" is "s < u" (`certify_joint`).
* Tier k (the order-statistic argument of `decision.guarantees`; Angelopoulos et al., "Conformal Risk
  Control", 2022): among the n_k certification violations of tier k, sorted by s, take
  u_k = s_(k*+1) with k* = max{j : BinomCDF(j; n_k, 1 - R_k) <= alpha_k}. For a new tier-k violation
  exchangeable with them, P(s < u_k) = F_k(s_(k*+1)) ~ Beta(k*+1, n_k - k*), so
  P(miss rate of {s < u_k} > 1 - R_k) = BinomCDF(k*; n_k, 1 - R_k) <= alpha_k.
  The shipped u = min_j u_j <= u_k, and the listings actually auto-passed are a subset of {s < u}
  (the block threshold and review rules only remove passes), so tier k's true miss rate is at most
  that of {s < u_k}: each tier's bound holds whatever the other tiers' thresholds are. A tier's
  violations held back by another tier's risk count for it, which certifying each tier on its own
  risk would not allow, so the thresholds rise higher for the same guarantee. With one tier, s is a
  monotone map of the risk and this is exactly the untiered order statistic.
* Block precision: fixed-sequence testing on the overall risk at level alpha_block
  (`decision.guarantees.certify_block`), unchanged. A block is right when the listing violates any
  tier: a wrongful block hurts a good merchant the same whatever type was suspected, so there is one
  block-precision target on the any-violation risk, and the blocked listing's likeliest tier is named.
* Union bound (Bonferroni): by default alpha_block = delta / 2 and alpha_k = delta / (2K), so the
  probability that any of the K + 1 statements fails is at most delta / 2 + K * delta / (2K) = delta.
  Bonferroni needs no assumption about how the tiers' errors depend on each other. With a single tier
  this is exactly the untiered procedure (recall at delta / 2, block at delta / 2). Training may share
  delta otherwise (`decision.alpha_split`: levels planned on the model selection's validation rows,
  fixed before these rows are read, summing to delta), and the same union bound holds.
* Bounds reported. Tier k's recall is at least 1 - U_k, U_k the (1 - alpha_k) quantile of
  Beta(k* + 1, n_k - k*) (`miss_rate_upper(k*, n_k, alpha_k)`, <= 1 - R_k by the choice of k*), by the
  same order-statistic argument. Every violation is in one tier, so the overall miss rate is a mix of
  the tiers' miss rates and, while all K tier statements hold (probability >= 1 - delta / 2), at most
  max_k U_k. A Clopper-Pearson bound on the routed misses would not do: it treats the thresholds as
  fixed in advance, but each t_k sits just below one of its violations, so each tier hides about one
  miss per n_k that the count does not show, and with several tiers the bound fails far more often than
  alpha (tests/decision/test_tier_coverage.py).

Thresholds only depend on order statistics of each tier's risk, and each calibrator is strictly
increasing in its model's raw score, so a threshold on calibrated risk is a threshold on a raw score
the model computed without seeing these rows: the calibration rows (and, for the shipped policy, the
test rows as well, see `training.pipeline`) are exchangeable with new listings of the same period.
One caveat, stated rather than hidden: with several tiers, s compares tiers through their calibrated
risks, and each calibrator was fitted on the calibration rows' labels, so the score is not strictly
chosen without those labels (the same holds for where the block test starts). The coverage
simulation in tests/decision/test_tier_coverage.py fits the pipeline's own calibrator on the very
rows it certifies on and checks that the joint failure rate stays within delta.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from decision.alpha_split import AlphaSplit
from decision.guarantees import (
    RankedScores,
    certify_block,
    miss_rate_upper,
    ordered_pair,
    pass_order_index,
    pass_score,
)
from decision.policy import CODE_PASS, route
from features.config import DataConfig, Tier, reason_key

NO_TIER = ""  # the tier column of a listing that is not a violation


def risk_column(tier: str) -> str:
    """The reference / score frame column of a tier's calibrated risk."""
    return f"risk_{tier}"


def frame_tier_risk(frame: pd.DataFrame, tier_names: list[str]) -> np.ndarray | None:
    """The (n, K) tier-risk matrix of a scored frame (`risk_<tier>` columns); None when it has none."""
    if not tier_names or not all(risk_column(name) in frame for name in tier_names):
        return None
    return np.column_stack([frame[risk_column(name)].to_numpy(dtype=np.float64) for name in tier_names])


def tier_recalls(codes: np.ndarray, tiers: np.ndarray, tier_names: list[str]) -> dict[str, dict[str, Any]]:
    """Per tier: violations, misses (auto-passed) and recall of routed rows."""
    out = {}
    for name in tier_names:
        violating = np.asarray(tiers) == name
        n_k = int(violating.sum())
        misses = int((violating & (np.asarray(codes) == CODE_PASS)).sum())
        out[name] = {"violations": n_k, "misses": misses, "recall": 1.0 - misses / n_k if n_k else None}
    return out


def tier_labels(label: np.ndarray, reasons: np.ndarray | None, config: DataConfig) -> np.ndarray:
    """Each row's violation tier (object array of tier names, NO_TIER for non-violations).

    A violation whose reason no tier lists, or that has no reason, is in `config.fallback_tier`."""
    label = np.asarray(label).astype(bool)
    out = np.full(label.shape, NO_TIER, dtype=object)
    if not config.tiered:
        return out
    if reasons is None:
        out[label] = config.fallback_tier
        return out
    out[label] = reason_tiers(reasons, config)[label]
    return out


def reason_tiers(reasons: Sequence[Any] | np.ndarray | pd.Series, config: DataConfig) -> np.ndarray:
    """Each violation reason's tier: the tier that lists it, case and surrounding spaces ignored
    (`features.config.reason_key`: `' Counterfeit '` is `counterfeit`; '3.1' is not '3.10'), else
    `config.fallback_tier`."""
    listed = _listed_tiers(reasons, config)
    return np.where(pd.isna(listed), config.fallback_tier, listed)


def unlisted_reasons(
    label: np.ndarray, reasons: Sequence[Any] | np.ndarray | pd.Series, config: DataConfig
) -> dict[str, int]:
    """The reasons of violations that no tier lists, with how many violations give each (most first).
    Such violations count in `config.fallback_tier`; a missing or blank reason is not listed here."""
    violating = np.asarray(label).astype(bool)
    given = pd.Series(np.asarray(reasons, dtype=object)[violating])
    blank = given.isna().to_numpy() | given.astype(str).str.strip().eq("").to_numpy()
    unlisted = given[pd.isna(_listed_tiers(given, config)) & ~blank].astype(str)
    return {str(reason): int(n) for reason, n in unlisted.value_counts().items()}


def _listed_tiers(reasons: Sequence[Any] | np.ndarray | pd.Series, config: DataConfig) -> np.ndarray:
    """Each reason's tier, None where no tier lists it or it is missing (matched once per distinct reason)."""
    codes, uniques = pd.factorize(pd.Series(np.asarray(reasons, dtype=object)), use_na_sentinel=True)
    by_key = config.tier_of_reason_key()
    found = np.array([*(by_key.get(reason_key(reason)) for reason in uniques), None], dtype=object)
    return found[codes]  # a missing reason (code -1) takes the last entry, None


def tier_alpha(delta: float, n_tiers: int) -> tuple[float, float]:
    """(alpha per tier's recall, alpha of block precision): delta / (2K) and delta / 2 (Bonferroni)."""
    return delta / (2 * max(n_tiers, 1)), delta / 2


@dataclass(frozen=True)
class TierCertificate:
    """One tier's auto-pass threshold and what backs it."""

    name: str
    recall_target: float
    t_pass: float
    certified: bool
    n_violating: int
    alpha: float
    recall: float  # on the certification rows, under the full routing
    recall_lower: float  # certified at 1 - alpha from the order statistic; holds under the full routing
    misses: int
    best_certifiable_recall: float  # the highest R_k certifiable with these rows at this alpha
    violations_needed: int  # for recall_target at this alpha

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "recall_target": self.recall_target,
            "t_pass": self.t_pass,
            "certified": self.certified,
            "n_violating": self.n_violating,
            "confidence": 1 - self.alpha,
            "recall": None if math.isnan(self.recall) else self.recall,
            "recall_lower": None if math.isnan(self.recall_lower) else self.recall_lower,
            "misses": self.misses,
            "best_certifiable_recall": self.best_certifiable_recall,
            "violations_needed": self.violations_needed,
        }


def best_certifiable_recall(n_violating: int, alpha: float) -> float:
    """The highest recall target certifiable with n violations at level alpha: alpha ** (1 / n) (k* = 0)."""
    return float(alpha ** (1.0 / n_violating)) if n_violating else 0.0


def certifiable_text(recall: float) -> str:
    """A certifiable recall in words, to 3 decimals rounded down: a target it names is certifiable too
    (0.92957 reads 0.929; rounded to nearest, 0.930 would be refused again)."""
    return f"{math.floor(recall * 1000) / 1000:.3f}"


def violations_needed(recall: float, alpha: float) -> int:
    """Fewest violations with which recall >= R can be certified at level alpha: R ** n <= alpha."""
    return math.ceil(math.log(alpha) / math.log(recall))


def tier_thresholds(u: float, recalls: np.ndarray) -> np.ndarray:
    """t_k = u (1 - R_k), each lowered to the float where "r_k < t_k for every tier" is exactly "s < u":
    in floating point, r < u (1 - R) and r / (1 - R) < u can disagree for an r at the boundary, and the
    violation whose score is u itself must stay held back. Capped just below 1."""
    scale = 1.0 - np.asarray(recalls, dtype=np.float64)
    out = np.minimum(u * scale, np.nextafter(1.0, 0.0))
    for k, t in enumerate(out):
        while t > 0 and np.nextafter(t, 0.0) / scale[k] >= u:  # the largest r passed must score below u
            t = np.nextafter(t, 0.0)
        out[k] = t
    return out


def certify_joint(
    tier_risk: np.ndarray, tier_index: np.ndarray, recalls: np.ndarray, alpha: float | np.ndarray
) -> tuple[np.ndarray, list[int | None]]:
    """Tier thresholds t_k = u (1 - R_k) at the highest u certified for every tier at once.

    One score s = max_k r_k / (1 - R_k) orders the listings; passing s < u gives nested pass sets. For
    each tier k, u_k = the (k*_k + 1)-th smallest s among its violations is the order-statistic
    threshold of `decision.guarantees` for that tier on the score s, valid at alpha. Taking
    u = min_k u_k only passes fewer listings, so every tier's statement holds at once (each at alpha,
    Bonferroni over tiers). Unlike certifying each tier on its own risk, a tier's violations that
    another tier already holds back do not count against it, so the thresholds can rise higher.
    `alpha`: one level for every tier, or one per tier (`decision.alpha_split`).
    Returns (t_pass per tier, k*_k per tier (None: the tier cannot be certified with its rows)).
    """
    score = pass_score(tier_risk, recalls)
    alphas = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (len(recalls),))
    stops, orders = [], []
    for k, recall in enumerate(recalls):
        own = np.sort(score[tier_index == k])
        order = pass_order_index(len(own), float(recall), float(alphas[k]))
        orders.append(order)
        stops.append(float(own[order]) if order is not None else 0.0)
    if any(order is None for order in orders):
        return np.zeros(len(recalls)), orders
    return tier_thresholds(min(stops), recalls), orders


@dataclass(frozen=True)
class TieredChoice:
    """Certified thresholds for every tier and the block threshold, with their routing on these rows."""

    tiers: list[TierCertificate]
    t_pass: float  # overall risk: not limiting passes (tiers do), only kept below t_block
    t_block: float
    block_certified: bool
    codes: np.ndarray

    @property
    def feasible(self) -> bool:
        return all(t.certified for t in self.tiers)

    @property
    def tier_pass(self) -> dict[str, float]:
        return {t.name: t.t_pass for t in self.tiers}


def certify_tiers(
    reference: pd.DataFrame,
    tiers: tuple[Tier, ...] | list[Tier],
    block_precision: float,
    delta: float,
    split: AlphaSplit | None = None,
) -> TieredChoice:
    """Every tier's t_pass and t_block on the reference rows, at the levels of `split` (default: each tier
    at delta / (2K), the block at delta / 2; a split planned on other rows, `decision.alpha_split`).

    `reference` has `risk` (overall), `label`, `tier` (tier name or NO_TIER) and `risk_<tier>` per tier.
    """
    missing = [c for c in ("risk", "label", "tier", *(risk_column(t.name) for t in tiers)) if c not in reference]
    if missing:
        raise ValueError(f"reference: missing columns {missing}")
    alpha_tiers, alpha_block = (split or AlphaSplit.default(len(tiers))).alphas(delta)
    overall = RankedScores.build(reference["risk"].to_numpy(dtype=np.float64), reference["label"].to_numpy())
    certified_block = certify_block(overall, block_precision, alpha_block) if alpha_block > 0 else None
    t_block = certified_block if certified_block is not None else 1.0
    t_pass, t_block = ordered_pair(t_block, t_block)  # passing is limited by the tiers, not the overall risk
    tier_col = reference["tier"].to_numpy(dtype=object)
    tier_risk = np.column_stack([reference[risk_column(t.name)].to_numpy(dtype=np.float64) for t in tiers])
    index = np.full(len(tier_col), -1)
    for k, tier in enumerate(tiers):
        index[tier_col == tier.name] = k
    tier_pass, orders = certify_joint(tier_risk, index, np.array([t.recall for t in tiers]), alpha_tiers)
    thresholds = list(zip(tier_pass.tolist(), orders, strict=True))
    codes = route(
        reference["risk"].to_numpy(dtype=np.float64), t_pass, t_block, tier_risk=tier_risk, tier_pass=tier_pass
    )
    certificates = []
    for tier, (t_k, k_star), alpha_tier in zip(tiers, thresholds, alpha_tiers.tolist(), strict=True):
        violating = tier_col == tier.name
        n_k = int(violating.sum())
        misses = int((violating & (codes == CODE_PASS)).sum())
        # Not certified: t_k = 0 passes nothing, so there are no misses at all (k* = 0 is then safe).
        order_index = 0 if k_star is None else k_star
        certificates.append(
            TierCertificate(
                name=tier.name,
                recall_target=tier.recall,
                t_pass=t_k,
                certified=k_star is not None,
                n_violating=n_k,
                alpha=alpha_tier,
                recall=1.0 - misses / n_k if n_k else float("nan"),
                recall_lower=1.0 - miss_rate_upper(order_index, n_k, alpha_tier) if n_k else float("nan"),
                misses=misses,
                best_certifiable_recall=best_certifiable_recall(n_k, alpha_tier),
                violations_needed=violations_needed(tier.recall, alpha_tier),
            )
        )
    return TieredChoice(certificates, t_pass, t_block, certified_block is not None, codes)


def overall_miss_rate_upper(certificates: list[TierCertificate]) -> float:
    """Upper bound on the overall miss rate, holding whenever every tier's bound does (confidence
    1 - delta / 2): the overall miss rate mixes the tiers' ones, so it is at most the largest. A tier
    without violations in the data has no bound (1)."""
    return max((1.0 - t.recall_lower if not math.isnan(t.recall_lower) else 1.0 for t in certificates), default=1.0)
