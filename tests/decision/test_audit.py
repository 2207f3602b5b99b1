"""Audit sampling: strata, inclusion probabilities (never zero), the Poisson draw, and why the logged
probabilities matter: weighted by 1/pi the audited labels estimate the miss rate without bias, where the
unweighted audited labels (more audits near the threshold, where misses are) overstate it."""

from __future__ import annotations

import numpy as np
import pytest

from decision.audit import (
    MIN_AUDIT_RATE,
    STRATA,
    AuditPlan,
    audit_strata,
    draw_audits,
    inclusion_probabilities,
    pass_margin,
)
from decision.policy import route

PLAN = AuditPlan(near_rate=0.2, block_rate=0.1, near_fraction=0.5)


def test_strata_and_probabilities_by_decision_and_risk_band() -> None:
    risk = np.array([0.001, 0.009, 0.5, 0.95, np.nan])
    codes = route(risk, 0.01, 0.9)
    assert codes.tolist() == [0, 0, 1, 2, 1]
    margin = pass_margin(risk, 0.01)
    strata = audit_strata(codes, margin, PLAN)
    assert [STRATA[k] for k in strata] == ["pass_low", "pass_near", "review", "block", "review"]
    pi = inclusion_probabilities(codes, margin, 0.02, PLAN)
    assert pi.tolist() == pytest.approx([0.02, 0.2, 1.0, 0.1, 1.0])


def test_probabilities_are_never_zero_and_never_below_the_floor() -> None:
    rng = np.random.default_rng(1)
    risk = rng.random(10_000)
    codes = route(risk, 0.3, 0.8)
    low_plan = AuditPlan(near_rate=MIN_AUDIT_RATE, block_rate=MIN_AUDIT_RATE)
    for floor, plan in [(MIN_AUDIT_RATE, low_plan), (0.05, low_plan), (0.02, PLAN)]:
        pi = inclusion_probabilities(codes, pass_margin(risk, 0.3), floor, plan)
        assert (pi[codes != 1] >= max(floor, MIN_AUDIT_RATE)).all()
        assert (pi[codes == 1] == 1.0).all()
        assert (pi > 0).all()


def test_a_tier_near_its_threshold_makes_the_pass_near() -> None:
    risk = np.array([0.001, 0.001])
    tier_risk = np.array([[0.0001, 0.001], [0.0045, 0.001]])  # second: severe tier at 0.9 of its t_pass
    tier_pass = np.array([0.005, 0.05])
    codes = route(risk, 0.05, 0.9, tier_risk=tier_risk, tier_pass=tier_pass)
    margin = pass_margin(risk, 0.05, tier_risk, tier_pass)
    assert codes.tolist() == [0, 0]
    assert margin == pytest.approx([0.02, 0.9])
    assert [STRATA[k] for k in audit_strata(codes, margin, PLAN)] == ["pass_low", "pass_near"]


def test_the_draw_hits_each_stratum_at_its_rate_and_never_a_review() -> None:
    codes = np.repeat(np.array([0, 0, 1, 2], dtype=np.int8), 50_000)
    pi = np.repeat([0.02, 0.2, 1.0, 0.1], 50_000)
    drawn = draw_audits(codes, pi, np.random.default_rng(0))
    assert not drawn[codes == 1].any()
    for rate, rows in [(0.02, slice(0, 50_000)), (0.2, slice(50_000, 100_000)), (0.1, slice(150_000, 200_000))]:
        sd = np.sqrt(rate * (1 - rate) / 50_000)
        assert abs(drawn[rows].mean() - rate) < 4 * sd


def test_weighted_audits_estimate_the_miss_rate_without_bias() -> None:
    """Horvitz-Thompson: E[sum over audited auto-passes of y/pi] = sum over auto-passes of y, since each
    row is drawn with probability pi (Poisson sampling). Over many draws the mean of the Hajek ratio
    (weighted violations / weighted audited passes) sits on the true miss rate; the unweighted share of
    violations among audited passes does not, because near-threshold passes (likelier misses) are
    audited ten times as often."""
    rng = np.random.default_rng(7)
    n = 20_000
    risk = rng.beta(0.5, 12, n)
    label = rng.random(n) < risk
    t_pass = 0.05
    codes = route(risk, t_pass, 0.9)
    passed = codes == 0
    pi = inclusion_probabilities(codes, pass_margin(risk, t_pass), 0.02, PLAN)
    true_miss_rate = label[passed].mean()
    weighted, unweighted = [], []
    for _ in range(400):
        audited = draw_audits(codes, pi, rng) & passed
        w = 1.0 / pi[audited]
        weighted.append((w * label[audited]).sum() / w.sum())
        unweighted.append(label[audited].mean())
    weighted_mean, weighted_se = np.mean(weighted), np.std(weighted) / np.sqrt(len(weighted))
    assert abs(weighted_mean - true_miss_rate) < 4 * weighted_se + 1e-3 * true_miss_rate
    assert np.mean(unweighted) > true_miss_rate * 1.3  # the selection bias the weights remove
