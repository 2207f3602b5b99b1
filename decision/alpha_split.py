"""How a policy's confidence budget delta is split among its statements, planned on held-out rows.

A policy certifies K + 1 statements together: each tier's recall (one "tier" when the data has no
violation types) and the block precision. By the union bound (Bonferroni) they hold together with
confidence 1 - delta whenever their levels sum to delta. The default split gives the block delta / 2
and each tier delta / (2K) (`decision.tiers.tier_alpha`). That wastes budget where the data cannot
support a statement: where no auto-block threshold can be certified at the precision target, half of
delta buys nothing while every recall threshold pays for it, and on small data a tier may fall just
short of the violations its target needs (recall 0.99 needs 437 violations at alpha 0.05 / 4, 368 at
0.05 / 2, 299 at 0.05).

`plan_split` chooses the split on a pilot: the model selection's validation rows (the newest rows of
the training part, scored by models fitted on the older rows). It never reads the certification rows.
On audit-weighted data (a retrain on logged labels) the pilot's rows carry 1 / pi: a split's outcome is
then predicted by running the weighted certificates (`decision.weighted`) on the pilot's own rows, and
the split feeds the weighted certificates on the certification rows, whose validity at any fixed levels
is the same union-bound argument.

Validity (weighted Bonferroni with weights fixed before the tests: Genovese, Roeder & Wasserman,
"False discovery control with p-value weighting", Biometrika 93(3), 2006; weights chosen on an
independent split of the data: Rubin, Dudoit & van der Laan, "A method to increase the power of
multiple testing procedures through sample splitting", Stat. Appl. Genet. Mol. Biol. 5(1), 2006).
Proof sketch. Let P be the pilot rows and C the certification rows, independent of each other (the
certificates already assume the rows are exchangeable draws of the traffic; P and C are disjoint). The
split w = w(P, n_C) is a function of the pilot and of the number of certification rows (fixed by the
split design, not by any label), with w_j >= 0 and sum_j w_j = 1. Conditional on P the levels
alpha_j = delta w_j are constants, and each statement's certificate on C is valid at its own level
(`decision.tiers` for the tiers, `decision.guarantees.certify_block` for the block), so
P(some statement fails | P) <= sum_j alpha_j = delta. Averaging over P keeps the bound. A statement
given level 0 is not made (no auto-block threshold), which cannot fail. The plan may be wrong about
the certification rows (the pilot is smaller, older and scored by a model fitted on fewer rows); that
costs auto-decided share, never validity. tests/decision/test_alpha_split.py checks the joint failure
rate by simulation with the split planned on a fresh pilot each time.

Planning. For each candidate split, `expected_outcome` predicts the auto-decided share on n_C
certification rows from the pilot: a tier's threshold is the (k* + 1)-th smallest of its n_k
violations' pass scores, n_k the pilot's violation rate times n_C and k* the certificate's order index
at the tier's level, read at the same quantile of the pilot's violations (n_k is taken COUNT_SIGMAS
standard deviations under its expected value, counting the pilot's own uncertainty about the rate, so a
split that needs every expected violation to certify a tier is not chosen); a block threshold passes its
test with the Poisson probability of the pilot's wrong blocks (scaled to n_C) staying within the
test's critical count (as `decision.guarantees.sequence_start` reasons). Candidates: the block's share
in BLOCK_SHARES, the rest over the tiers in steps of 1 / TIER_STEPS. The default split is kept unless
another is predicted to auto-decide at least MIN_GAIN more of the listings. A split without a block
statement is not a candidate when the default split is predicted to auto-block at least MIN_GAIN and
certifies every recall target on the expected count of violations: the conservative count then makes
the default's recall look infeasible on a knife's edge, and trading a predicted block for it lost the
block for nothing (the SMS export: predicted 75.5% auto-decided without the block; the certificate
then auto-passed the same 14.0% as with the default split and auto-blocked nothing instead of 11.1%).
A share of the block (BLOCK_SHARES from 0.1) stays open either way.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import stats

from decision.guarantees import pass_order_index, pass_score
from decision.weighted import Strata, certify_block, certify_recall

BLOCK_SHARES = (0.0, 0.1, 0.25, 0.5, 0.75)
TIER_STEPS = 10  # tier shares in tenths of what the block leaves (a composition of TIER_STEPS parts)
MIN_GAIN = 0.005  # predicted auto-decided share a planned split must add over the default
COUNT_SIGMAS = 2.0  # a tier's violations are planned this many Poisson sds under their expected count
_BLOCK_CANDIDATES = 400  # block thresholds tried on the pilot (quantiles of its risk)


@dataclass(frozen=True)
class AlphaSplit:
    """Shares of delta: `block` for the block precision, `tiers[k]` for tier k's recall (sum 1)."""

    block: float
    tiers: tuple[float, ...]

    def __post_init__(self) -> None:
        total = self.block + sum(self.tiers)
        if not self.tiers or self.block < 0 or min(self.tiers) <= 0 or not math.isclose(total, 1):
            raise ValueError(f"alpha split: shares {self.block}, {self.tiers} must be >= 0 (tiers > 0) and sum to 1")

    @classmethod
    def default(cls, n_tiers: int) -> AlphaSplit:
        """Half to the block, half shared equally by the tiers (`decision.tiers.tier_alpha`)."""
        n = max(n_tiers, 1)
        return cls(0.5, (0.5 / n,) * n)

    def alphas(self, delta: float) -> tuple[np.ndarray, float]:
        """(level of each tier's recall, level of the block precision)."""
        return np.asarray(self.tiers, dtype=np.float64) * delta, self.block * delta

    def describe(self, delta: float, names: list[str] | None = None) -> str:
        tier_alpha, block_alpha = self.alphas(delta)
        names = names or [f"tier {k + 1}" for k in range(len(self.tiers))]
        parts = [f"recall of {name} at {_percent(1 - a)} confidence" for name, a in zip(names, tier_alpha, strict=True)]
        block = (
            f"block precision at {_percent(1 - block_alpha)} confidence"
            if self.block > 0
            else "no block-precision statement"
        )
        return ", ".join([*parts, block]) + " (Bonferroni)"

    def to_dict(self) -> dict[str, Any]:
        return {"block": self.block, "tiers": list(self.tiers)}

    @classmethod
    def from_dict(cls, raw: dict[str, Any] | None, n_tiers: int) -> AlphaSplit | None:
        """The split a policy recorded, or None when it recorded none or one for another number of tiers."""
        if not raw or len(raw.get("tiers", ())) != max(n_tiers, 1):
            return None
        return cls(float(raw["block"]), tuple(float(s) for s in raw["tiers"]))


def _percent(confidence: float) -> str:
    """0.97 -> '97%', 0.9875 -> '98.75%': a confidence, never to be read as a recall target."""
    return f"{100 * confidence:.4g}%"


@dataclass(frozen=True)
class Pilot:
    """Held-out rows scored by models that never saw them: overall risk, label, and per tier (K >= 1)
    its risk (n, K) and each row's violation tier index (-1: not a violation)."""

    risk: np.ndarray
    label: np.ndarray
    tier_risk: np.ndarray
    tier_index: np.ndarray
    # 1 / inclusion probability of audit-sampled rows (None: every row labelled): the pilot then predicts
    # a split's outcome with the weighted certificates (`_weighted_outcome`)
    weight: np.ndarray | None = None

    @classmethod
    def untiered(cls, risk: np.ndarray, label: np.ndarray, weight: np.ndarray | None = None) -> Pilot:
        label = np.asarray(label).astype(bool)
        risk = np.asarray(risk, dtype=np.float64)
        return cls(risk, label, risk[:, None], np.where(label, 0, -1), weight)

    @property
    def n(self) -> int:
        return len(self.risk)


@dataclass(frozen=True)
class Outcome:
    """Predicted shares of the certification rows for one split."""

    auto_pass: float
    auto_block: float

    @property
    def auto_decided(self) -> float:
        return self.auto_pass + self.auto_block


@dataclass(frozen=True)
class SplitPlan:
    chosen: AlphaSplit
    planned: bool  # False: the default split was kept
    predicted: Outcome  # of the chosen split
    predicted_default: Outcome
    pilot_rows: int
    certification_rows: int

    def as_applied(self, targets: dict[str, Any]) -> SplitPlan:
        """This plan if the certificate (its `targets`) used the chosen split, else the default's figures:
        per-segment thresholds certify on a fixed split of their own, and no plan moved it."""
        if targets.get("alpha_split") == self.chosen.to_dict():
            return self
        default = AlphaSplit.default(len(self.chosen.tiers))
        return replace(self, chosen=default, planned=False, predicted=self.predicted_default)

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": self.chosen.to_dict(),
            "planned": self.planned,
            "predicted_auto_pass": self.predicted.auto_pass,
            "predicted_auto_block": self.predicted.auto_block,
            "default_predicted_auto_pass": self.predicted_default.auto_pass,
            "default_predicted_auto_block": self.predicted_default.auto_block,
            "pilot_rows": self.pilot_rows,
            "certification_rows": self.certification_rows,
        }


def _pass_share(
    pilot: Pilot, recalls: np.ndarray, alphas: np.ndarray, scale: float, sigmas: float = COUNT_SIGMAS
) -> float:
    score = pass_score(pilot.tier_risk, recalls)
    stops = []
    for k, recall in enumerate(recalls):
        own = np.sort(score[pilot.tier_index == k])
        n_k = _conservative_count(len(own), pilot.n, scale, sigmas)
        order = pass_order_index(n_k, float(recall), float(alphas[k])) if len(own) else None
        if order is None:
            return 0.0
        stops.append(own[min(int((order + 1) / (n_k + 1) * len(own)), len(own) - 1)])
    return float((score < min(stops)).mean())


def _conservative_count(in_pilot: int, pilot_rows: int, scale: float, sigmas: float = COUNT_SIGMAS) -> int:
    """A count of a tier's violations the certification rows hold with high probability: COUNT_SIGMAS
    standard deviations under the expected count, so a plan does not hang a tier's feasibility on a count
    the rows may fall short of. The spread is the count's own (Poisson, n p) plus the pilot's uncertainty
    about the rate p (binomial, scaled up: (n_C)^2 p (1 - p) / n_pilot)."""
    rate = in_pilot / max(pilot_rows, 1)
    expected = rate * pilot_rows * scale
    spread = math.sqrt(expected + expected * scale * (1.0 - rate))
    return max(0, int(math.floor(expected - sigmas * spread)))


def _block_share(pilot: Pilot, block_precision: float, alpha: float, scale: float) -> float:
    if alpha <= 0 or pilot.n == 0:
        return 0.0
    order = np.argsort(-pilot.risk, kind="stable")
    wrong_cum = np.cumsum(~pilot.label[order])
    ends = np.unique(np.linspace(1, pilot.n, min(_BLOCK_CANDIDATES, pilot.n)).astype(np.int64))
    blocked, wrong = ends * scale, wrong_cum[ends - 1] * scale
    n = np.maximum(np.round(blocked), 1).astype(np.int64)
    p_fail = 1.0 - block_precision
    critical = stats.binom.ppf(alpha, n, p_fail)
    critical = np.where(stats.binom.cdf(critical, n, p_fail) > alpha, critical - 1, critical)
    p_pass = np.where(critical >= 0, stats.poisson.cdf(np.maximum(critical, 0), wrong), 0.0)
    return float((ends / pilot.n * p_pass).max())


def _passes_at_expected_count(
    pilot: Pilot, recalls: np.ndarray, block_precision: float, delta: float, split: AlphaSplit, n_cert: int
) -> bool:
    """Whether `split` certifies every tier's recall on the expected count of violations (not the
    conservative one): then dropping the block statement for more recall budget gains nothing sure. An
    audit-weighted pilot runs the certificates on its own rows, with no count to be conservative about."""
    if pilot.weight is not None:
        return expected_outcome(pilot, recalls, block_precision, delta, split, n_cert).auto_pass > 0
    tier_alpha, _ = split.alphas(delta)
    return _pass_share(pilot, np.asarray(recalls, dtype=np.float64), tier_alpha, n_cert / max(pilot.n, 1), 0.0) > 0


def expected_outcome(
    pilot: Pilot, recalls: np.ndarray, block_precision: float, delta: float, split: AlphaSplit, n_cert: int
) -> Outcome:
    """Predicted auto-pass and auto-block shares of `n_cert` certification rows under `split`."""
    scale = n_cert / max(pilot.n, 1)
    tier_alpha, block_alpha = split.alphas(delta)
    recalls = np.asarray(recalls, dtype=np.float64)
    if pilot.weight is not None:
        return _weighted_outcome(pilot, recalls, block_precision, tier_alpha, block_alpha)
    auto_pass = _pass_share(pilot, recalls, tier_alpha, scale)
    return Outcome(auto_pass, _block_share(pilot, block_precision, block_alpha, scale))


def _weighted_outcome(
    pilot: Pilot, recalls: np.ndarray, block_precision: float, tier_alpha: np.ndarray, block_alpha: float
) -> Outcome:
    """Audit-weighted pilot: the weighted certificates themselves run on the pilot's rows (fewer rows than
    the certification's, so the prediction errs low, alike for every split)."""
    assert pilot.weight is not None
    weights = np.asarray(pilot.weight, dtype=np.float64)
    strata = Strata.of(1.0 / weights)
    score = pass_score(pilot.tier_risk, recalls)
    found = [
        certify_recall(score, strata, pilot.tier_index == k, float(recall), float(tier_alpha[k]))
        for k, recall in enumerate(recalls)
    ]
    total = weights.sum()
    auto_pass = (
        float(weights[score < min(c.threshold for c in found)].sum() / total)
        if all(c.certified for c in found)
        else 0.0
    )
    if block_alpha <= 0:
        return Outcome(auto_pass, 0.0)
    block = certify_block(pilot.risk, strata, pilot.label, block_precision, block_alpha)
    auto_block = float(weights[pilot.risk >= block.t_block].sum() / total) if block.certified else 0.0
    return Outcome(auto_pass, auto_block)


def candidate_splits(n_tiers: int) -> list[AlphaSplit]:
    out = []
    for block in BLOCK_SHARES:
        for parts in _compositions(TIER_STEPS, n_tiers):
            out.append(AlphaSplit(block, tuple((1 - block) * p / TIER_STEPS for p in parts)))
    return out


def _compositions(total: int, k: int) -> list[tuple[int, ...]]:
    """Every way to write `total` as k positive integers, in order."""
    if k == 1:
        return [(total,)]
    return [
        tuple(b - a for a, b in zip((0, *cuts), (*cuts, total), strict=True))
        for cuts in itertools.combinations(range(1, total), k - 1)
    ]


def plan_split(
    pilot: Pilot | None, recalls: list[float] | np.ndarray, block_precision: float, delta: float, n_cert: int
) -> SplitPlan:
    """The split predicted to auto-decide the most certification rows; the default unless another gains
    at least MIN_GAIN (ties and a missing or empty pilot keep the default)."""
    recalls = np.asarray(recalls, dtype=np.float64)
    default = AlphaSplit.default(len(recalls))
    if pilot is None or pilot.n == 0 or pilot.tier_risk.shape[1] != len(recalls):
        empty = Outcome(float("nan"), float("nan"))
        return SplitPlan(default, False, empty, empty, 0 if pilot is None else pilot.n, n_cert)
    base = expected_outcome(pilot, recalls, block_precision, delta, default, n_cert)
    keep_block = base.auto_block >= MIN_GAIN and _passes_at_expected_count(
        pilot, recalls, block_precision, delta, default, n_cert
    )
    best, best_outcome = default, base
    for split in candidate_splits(len(recalls)):
        if split.block == 0 and keep_block:
            continue
        outcome = expected_outcome(pilot, recalls, block_precision, delta, split, n_cert)
        if outcome.auto_decided > best_outcome.auto_decided:
            best, best_outcome = split, outcome
    if best_outcome.auto_decided < base.auto_decided + MIN_GAIN:
        return SplitPlan(default, False, base, base, pilot.n, n_cert)
    return SplitPlan(best, True, best_outcome, base, pilot.n, n_cert)
