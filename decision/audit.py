"""Audit sampling of automated decisions with known inclusion probabilities.

Once the service auto-passes and auto-blocks, only what goes to review gets a verdict by default, so
logged labels are a selected sample. Every automated decision therefore gets an inclusion probability
pi: the chance that it is audited (reviewed by a person while it stays in force). Reviewed decisions
have pi = 1 (every one gets a verdict). With pi known and never zero, each labelled row stands for 1/pi
rows of traffic (Horvitz & Thompson 1952), which is what makes production estimates
(`decision.estimates`) and retraining on logged labels unbiased.

The sampling is stratified by decision and risk band, with more audits where errors are likelier:

* auto-pass well below its threshold: `qa_sample_rate` (the floor every automated decision gets);
* auto-pass close to its threshold (`pass_margin` >= `near_fraction`): `near_rate`, where misses
  concentrate;
* auto-block: `block_rate` (a wrongful block hurts a merchant; blocks are few).

Each rate is at least the floor. The draw is one independent Bernoulli(pi) per decision (Poisson
sampling), so the inclusion probability of every row is exactly the logged pi.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MIN_AUDIT_RATE = 0.001  # every automated decision keeps a known, non-zero chance of audit

STRATA = ("review", "pass_low", "pass_near", "block")  # index = stratum code


@dataclass(frozen=True)
class AuditPlan:
    """Audit rates by stratum (the floor, `qa_sample_rate`, lives on the Policy) and the audit lane's
    age limit: an audit older than `max_age_hours` is claimed before any other queue item."""

    near_rate: float = 0.10
    block_rate: float = 0.10
    near_fraction: float = 0.5
    max_age_hours: float = 24.0

    def validate(self) -> AuditPlan:
        for name in ("near_rate", "block_rate"):
            value = getattr(self, name)
            if not _is_number(value) or not MIN_AUDIT_RATE <= value <= 1.0:
                raise ValueError(f"audit.{name}: {value!r} is not in [{MIN_AUDIT_RATE}, 1]")
        if not _is_number(self.near_fraction) or not 0.0 < self.near_fraction <= 1.0:
            raise ValueError(f"audit.near_fraction: {self.near_fraction!r} is not in (0, 1]")
        if not _is_number(self.max_age_hours) or not 0.0 < self.max_age_hours < math.inf:
            raise ValueError(f"audit.max_age_hours: {self.max_age_hours!r} is not a positive number of hours")
        return self

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, raw: Any) -> AuditPlan:
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise ValueError(f"audit: expected a mapping, got {raw!r}")
        unknown = sorted(set(raw) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"audit: unknown fields {unknown} (known: {sorted(cls.__dataclass_fields__)})")
        for key, value in raw.items():
            if not _is_number(value):
                raise ValueError(f"audit.{key}: expected a number, got {value!r}")
        return cls(**{k: float(v) for k, v in raw.items()}).validate()


def _is_number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)


def pass_margin(
    risk: np.ndarray,
    t_pass: float | np.ndarray,
    tier_risk: np.ndarray | None = None,
    tier_pass: np.ndarray | None = None,
) -> np.ndarray:
    """How close each listing is to its auto-pass threshold, as a ratio (>= 1: not passable): risk /
    t_pass, or with tier thresholds the largest tier risk / tier t_pass (the binding tier)."""
    risk = np.asarray(risk, dtype=np.float64)
    margin = risk / np.maximum(np.asarray(t_pass, dtype=np.float64), 1e-12)
    if tier_risk is not None and tier_pass is not None and len(tier_pass):
        ratio = np.asarray(tier_risk, dtype=np.float64) / np.maximum(np.asarray(tier_pass, dtype=np.float64), 1e-12)
        margin = np.fmax(np.where(np.asarray(t_pass) >= 1.0, 0.0, margin), ratio.max(axis=1))
    return np.where(np.isfinite(margin), margin, np.inf)


def audit_strata(codes: np.ndarray, margin: np.ndarray, plan: AuditPlan) -> np.ndarray:
    """Stratum code per decision (index into STRATA): review, pass_low, pass_near or block."""
    codes = np.asarray(codes)
    strata = np.zeros(codes.shape, dtype=np.int8)  # review
    passed = codes == 0
    strata[passed] = np.where(np.asarray(margin)[passed] >= plan.near_fraction, 2, 1)
    strata[codes == 2] = 3
    return strata


def inclusion_probabilities(codes: np.ndarray, margin: np.ndarray, floor: float, plan: AuditPlan) -> np.ndarray:
    """pi per decision: 1 for human review, the stratum's audit rate (never below `floor`, never below
    MIN_AUDIT_RATE) for an automated one."""
    rates = np.array(
        [1.0, floor, max(plan.near_rate, floor), max(plan.block_rate, floor)],
        dtype=np.float64,
    )
    return np.maximum(rates[audit_strata(codes, margin, plan)], MIN_AUDIT_RATE)


def draw_audits(codes: np.ndarray, pi: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mask of automated decisions drawn for audit: one independent Bernoulli(pi) each (Poisson
    sampling). Reviewed decisions are never 'audited': they are reviewed anyway."""
    codes = np.asarray(codes)
    return (codes != 1) & (rng.random(codes.shape) < np.asarray(pi, dtype=np.float64))
