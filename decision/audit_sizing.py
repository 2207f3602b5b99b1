"""Audit rates sized to what the next certificate needs.

Audit rates trade two things. Auditing costs reviewer time now: a share of the automated decisions is
re-checked. And it decides what the next retrain can certify on logged labels: in the test of
`decision.weighted` every labelled miss of a stratum audited at rate pi weighs 1 / pi, and the bets are
capped at pi_min / R, so the evidence a certificate needs grows as the audit rates fall. At a large
volume the 2% floor costs the certificate little; at a small one it leaves room to pass little or
nothing (the loop benchmark at 300k listings: 0.5-7.7% auto-decided after retraining on audited labels,
31% with every listing labelled).

`size_audits` picks the audit floor (`qa_sample_rate`: auto-passes far below their threshold) and
`near_rate` (auto-passes close to it, where misses concentrate) that maximise the expected net saving:
the auto-pass share the next certificate is expected to reach, minus the share of listings audited; a
plan is adopted only when that net saving is positive and at least MIN_GAIN above the policy's own rates'
(at a volume where even auditing everything would save nothing, the rates stay as they are). The
planning model:

* the next certification rows stand for the same traffic as this bundle's certification rows (their
  1 / inclusion_prob weights summed; or a given volume, the rows scaled to it), scored by this model and
  routed by this policy into the audit
  strata of `decision.audit` (review, pass_low, pass_near, block);
* a count whose traffic total in stratum h is c_h is observed about c_h pi_h times (its mean under
  Poisson sampling). The certificate of `decision.weighted` (`share_certified`, at the level certification
  uses: delta / 2 for one target, delta / (2K) per tier) is evaluated at those expected counts for each
  candidate pass region `pass_margin < s` (s scales every pass threshold: segments and tiers alike), and
  the next pass region is the largest s, in the certificate's fixed sequence, whose bound meets every
  recall target.

This is a planning figure, not a statistical claim: whatever rates are chosen, logging them as inclusion
probabilities keeps the next certificate valid (`decision.weighted`); the sizing only decides how much that
certificate can pass. At the expected counts the realised bound falls short about half the time, and then
the next threshold sits a little lower. Rates come from RATE_GRID and never fall below the policy's own,
so the plan is reproducible and only ever adds audits where the certificate needs them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from decision.audit import audit_strata, pass_margin
from decision.policy import Policy, route
from decision.tiers import risk_column, tier_alpha
from decision.weighted import share_certified
from features.config import Tier

RATE_GRID = (0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0)
MIN_GAIN = 0.01  # raise rates only when the expected net saving grows by at least this share of listings
MAX_CANDIDATES = 800  # pass regions evaluated per rate pair (quantiles of the violations' margins)
REVIEW, PASS_LOW, PASS_NEAR, BLOCK = range(4)  # `decision.audit.STRATA`


@dataclass(frozen=True)
class RatesOutlook:
    """What a pair of audit rates is expected to give: the next certificate's auto-pass share and the
    share of listings audited meanwhile (both of the traffic the certification rows stand for)."""

    qa_sample_rate: float
    near_rate: float
    next_pass_share: float
    audit_share: float

    @property
    def net_share(self) -> float:
        return self.next_pass_share - self.audit_share

    def to_dict(self) -> dict[str, float]:
        return {
            "qa_sample_rate": self.qa_sample_rate,
            "near_rate": self.near_rate,
            "next_pass_share": round(self.next_pass_share, 4),
            "audit_share": round(self.audit_share, 4),
            "net_share": round(self.net_share, 4),
        }


@dataclass(frozen=True)
class AuditSizing:
    chosen: RatesOutlook
    current: RatesOutlook  # the policy's own rates
    traffic: float  # listings the certification rows stand for
    pass_share: float  # the policy's auto-pass share of that traffic today

    def apply(self, policy: Policy) -> Policy:
        """The policy with the chosen rates."""
        audit = replace(policy.audit, near_rate=self.chosen.near_rate).validate()
        return replace(policy, qa_sample_rate=self.chosen.qa_sample_rate, audit=audit).validate()

    def to_dict(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.to_dict(),
            "policy_rates": self.current.to_dict(),
            "traffic": round(self.traffic),
            "pass_share": round(self.pass_share, 4),
            "changed": self.chosen != self.current,
        }


def size_audits(
    reference: pd.DataFrame,
    policy: Policy,
    delta: float,
    recall: float,
    tiers: tuple[Tier, ...] | list[Tier] = (),
    volume: float | None = None,
) -> AuditSizing | None:
    """The audit rates with the best expected net saving for `policy` on its certification rows
    (`reference`: risk, label, and with tiers each tier's risk and each violation's tier); None when the
    policy passes nothing (an uncertified policy keeps its rates: no auto-pass, nothing to size).

    `volume`: the listings the next certification will stand for, when known (production traffic between
    retrains); by default the traffic the certification rows stand for. The rows are scaled to it."""
    risk = reference["risk"].to_numpy(dtype=np.float64)
    pi = reference["inclusion_prob"].to_numpy(dtype=np.float64) if "inclusion_prob" in reference else None
    weight = np.ones(len(risk)) if pi is None else 1.0 / pi
    if volume is not None:
        if not volume > 0:
            raise ValueError(f"audit volume: {volume!r} is not a positive number of listings")
        weight = weight * (volume / weight.sum())
    names = [t.name for t in tiers]
    tier_risk = np.column_stack([reference[risk_column(n)].to_numpy(np.float64) for n in names]) if tiers else None
    tier_pass = policy.tier_pass_vector(names)
    if policy.segment_by and policy.segment_by not in reference:
        return None
    segment = reference[policy.segment_by].astype(str).to_numpy() if policy.segment_by else np.full(len(risk), "")
    t_pass, t_block = policy.thresholds_for(segment)  # without segments: the global pair on every row
    codes = route(risk, t_pass, t_block, tier_risk=tier_risk, tier_pass=tier_pass)
    if not (codes == 0).any():
        return None
    margin = pass_margin(risk, t_pass, tier_risk, tier_pass)
    stratum = audit_strata(codes, margin, policy.audit)
    if tiers:
        tier_col = reference["tier"].to_numpy(dtype=object)
        groups = [(t.recall, tier_col == t.name) for t in tiers]
        alpha = tier_alpha(delta, len(tiers))[0]
    else:
        groups, alpha = [(recall, reference["label"].to_numpy().astype(bool))], delta / 2
    outlook = _Outlook(margin, stratum, weight, groups, alpha, policy.audit.block_rate)
    floor, near = policy.qa_sample_rate, max(policy.audit.near_rate, policy.qa_sample_rate)
    current = outlook(floor, near)
    pairs = [(f, n) for f in (floor, *RATE_GRID) if f >= floor for n in (near, *RATE_GRID) if n >= max(near, f)]
    # most net saving first; of equals, the fewest audits
    best = max((outlook(f, n) for f, n in sorted(set(pairs))), key=lambda o: (round(o.net_share, 6), -o.audit_share))
    # more audits only for a real saving: a plan that saves nothing or next to nothing keeps the policy's rates
    chosen = best if best.net_share >= max(current.net_share, 0.0) + MIN_GAIN else current
    total = float(weight.sum())
    return AuditSizing(chosen, current, total, float(weight[codes == 0].sum() / total))


class _Outlook:
    """The planning model for one policy on its certification rows (module docstring)."""

    def __init__(
        self,
        margin: np.ndarray,
        stratum: np.ndarray,
        weight: np.ndarray,
        groups: list[tuple[float, np.ndarray]],
        alpha: float,
        block_rate: float,
    ) -> None:
        self.total = float(weight.sum())
        self.traffic = np.bincount(stratum, weights=weight, minlength=4)  # listings per stratum
        violating = np.zeros(len(margin), dtype=bool)
        for _, mask in groups:
            violating |= mask
        candidates = np.unique(margin[violating & np.isfinite(margin)])
        if len(candidates) > MAX_CANDIDATES:
            candidates = np.unique(np.quantile(candidates, np.linspace(0.0, 1.0, MAX_CANDIDATES)))
        self.candidates = np.concatenate([[0.0], candidates])  # pass margin < s; s = 0 passes nothing
        order = np.argsort(margin, kind="stable")
        cum = np.concatenate([[0.0], np.cumsum(weight[order])])
        self.passed = cum[np.searchsorted(margin[order], self.candidates, "left")]  # listings with margin < s
        self.groups = [(target, *self._lost_and_total(margin, stratum, weight, mask)) for target, mask in groups]
        self.alpha, self.block_rate = alpha, block_rate

    def _lost_and_total(
        self, margin: np.ndarray, stratum: np.ndarray, weight: np.ndarray, mask: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(violations of the group passed at each candidate, per stratum: (m, 4); per stratum in all)."""
        lost = np.zeros((len(self.candidates), 4))
        for h in range(4):
            rows = mask & (stratum == h)
            m, w = margin[rows], weight[rows]
            order = np.argsort(m, kind="stable")
            cum = np.concatenate([[0.0], np.cumsum(w[order])])
            lost[:, h] = cum[np.searchsorted(m[order], self.candidates, "left")]
        return lost, np.bincount(stratum[mask], weights=weight[mask], minlength=4)

    def __call__(self, floor: float, near: float) -> RatesOutlook:
        rates = np.array([1.0, floor, near, max(self.block_rate, floor)])
        present = self.traffic > 0
        pi, index = np.unique(rates[present], return_inverse=True)  # equal rates are one stratum, as logged
        ok = np.ones(len(self.candidates), dtype=bool)
        for target, lost, total in self.groups:
            observed_lost = np.zeros((len(self.candidates), len(pi)))
            observed_kept = np.zeros(len(pi))
            for j, h in enumerate(np.flatnonzero(present)):
                observed_lost[:, index[j]] += lost[:, h] * rates[h]
                observed_kept[index[j]] += total[h] * rates[h]
            ok &= share_certified(observed_kept - observed_lost, observed_lost, pi, self.alpha, target)
        k = int(np.argmin(ok)) - 1 if not ok.all() else len(ok) - 1  # fixed sequence: stop at the first failure
        next_pass = float(self.passed[k]) / self.total if k >= 0 else 0.0
        audited = float(self.traffic[[PASS_LOW, PASS_NEAR, BLOCK]] @ rates[[PASS_LOW, PASS_NEAR, BLOCK]])
        return RatesOutlook(float(floor), float(near), next_pass, audited / self.total)
