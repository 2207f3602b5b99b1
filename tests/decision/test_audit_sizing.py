"""Audit rates sized to the next certificate (decision.audit_sizing): more audits where the volume is too
small for the default rates to certify anything, none added where it is large, and a planned auto-pass
share that the certificate on the audited labels reaches in simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from decision import audit_sizing
from decision.audit import AuditPlan, draw_audits, inclusion_probabilities, pass_margin
from decision.audit_sizing import RATE_GRID, size_audits
from decision.policy import Policy, route
from decision.weighted import Strata, certify_recall
from features.config import Tier

RECALL, DELTA = 0.95, 0.05
T_PASS = 0.05  # about recall 0.96 on this traffic


def _traffic(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Calibrated risks (a mostly clean marketplace with a clearly bad 10%) and labels drawn from them."""
    risk = np.where(rng.random(n) < 0.10, rng.beta(6.0, 2.0, n), rng.beta(0.4, 12.0, n))
    return pd.DataFrame({"risk": risk, "label": (rng.random(n) < risk).astype(int)})


def _policy(**audit: float) -> Policy:
    return Policy(version="p", t_pass=T_PASS, t_block=1.0, audit=AuditPlan(**audit)).validate()


def _certified_pass_share(rng: np.random.Generator, policy: Policy, n: int) -> float:
    """One cycle of the loop: fresh traffic routed by `policy`, audits drawn at its rates, recall
    certified on the reviewed and audited rows (`decision.weighted`), the share it passes."""
    rows = _traffic(rng, n)
    risk = rows["risk"].to_numpy()
    codes = route(risk, policy.t_pass, policy.t_block)
    pi = inclusion_probabilities(codes, pass_margin(risk, policy.t_pass), policy.qa_sample_rate, policy.audit)
    labelled = (codes == 1) | draw_audits(codes, pi, rng)
    violating = rows["label"].to_numpy()[labelled].astype(bool)
    cert = certify_recall(risk[labelled], Strata.of(pi[labelled]), violating, RECALL, DELTA / 2)
    return float((risk < cert.threshold).mean())


def test_a_small_volume_gets_the_audits_its_next_certificate_needs() -> None:
    reference = _traffic(np.random.default_rng(1), 20_000)
    sizing = size_audits(reference, _policy(), DELTA, RECALL)
    assert sizing is not None
    current, chosen = sizing.current, sizing.chosen
    assert (current.qa_sample_rate, current.near_rate) == (0.02, 0.10)
    # at the default rates the next certificate passes little; the chosen rates pass more, net of audits
    assert chosen.net_share > current.net_share + 0.05
    assert chosen.qa_sample_rate >= 0.02 and chosen.near_rate >= 0.10
    assert chosen.qa_sample_rate in RATE_GRID and chosen.near_rate in RATE_GRID
    assert sizing.to_dict()["changed"] is True

    policy = sizing.apply(_policy())
    assert policy.qa_sample_rate == chosen.qa_sample_rate and policy.audit.near_rate == chosen.near_rate
    assert policy.t_pass == T_PASS and policy.audit.block_rate == AuditPlan().block_rate


def test_a_large_volume_keeps_the_policy_rates() -> None:
    # the same rows standing for 100x the traffic (each one 1 / 0.01 listings): the default rates suffice
    reference = _traffic(np.random.default_rng(1), 20_000).assign(inclusion_prob=0.01)
    sizing = size_audits(reference, _policy(), DELTA, RECALL)
    assert sizing is not None and sizing.traffic == pytest.approx(2_000_000)
    assert sizing.chosen == sizing.current
    assert sizing.current.next_pass_share > 0.8 * sizing.pass_share


def test_a_stated_production_volume_scales_the_rows() -> None:
    reference = _traffic(np.random.default_rng(1), 20_000)
    small = size_audits(reference, _policy(), DELTA, RECALL)
    large = size_audits(reference, _policy(), DELTA, RECALL, volume=2_000_000)
    # the same rows standing for 2M listings plan exactly as rows that carry 1 / 0.01 weights
    weighted = size_audits(reference.assign(inclusion_prob=0.01), _policy(), DELTA, RECALL)
    assert small is not None and large is not None and weighted is not None
    assert small.traffic == 20_000 and large.traffic == pytest.approx(2_000_000)
    assert small.to_dict()["changed"] and large.chosen == large.current == weighted.chosen
    with pytest.raises(ValueError, match="audit volume"):
        size_audits(reference, _policy(), DELTA, RECALL, volume=0)


def test_segment_thresholds_are_sized_on_each_row_own_threshold() -> None:
    rng = np.random.default_rng(9)
    reference = _traffic(rng, 20_000).assign(category=rng.choice(["books", "toys"], 20_000))
    policy = Policy(
        version="p",
        t_pass=0.0,
        t_block=1.0,
        segment_by="category",
        segments={"books": (0.02, 1.0), "toys": (0.08, 1.0)},
    ).validate()
    sizing = size_audits(reference, policy, DELTA, RECALL)
    assert sizing is not None
    limit = np.where(reference["category"] == "books", 0.02, 0.08)
    assert sizing.pass_share == pytest.approx(float((reference["risk"] < limit).mean()))
    # a policy segmented on a column the certification rows lack is left as it is
    assert size_audits(reference.drop(columns="category"), policy, DELTA, RECALL) is None


def test_rates_never_fall_below_the_policy_own() -> None:
    reference = _traffic(np.random.default_rng(2), 20_000).assign(inclusion_prob=0.01)
    sizing = size_audits(reference, _policy(near_rate=0.3), DELTA, RECALL)
    assert sizing is not None and sizing.chosen.near_rate >= 0.3 and sizing.chosen.qa_sample_rate >= 0.02


def test_a_policy_that_passes_nothing_is_not_sized() -> None:
    reference = _traffic(np.random.default_rng(3), 5_000)
    closed = Policy(version="p", t_pass=0.0, t_block=1.0).validate()
    assert size_audits(reference, closed, DELTA, RECALL) is None


def test_tiers_are_sized_on_every_tier_target() -> None:
    rng = np.random.default_rng(4)
    reference = _traffic(rng, 30_000)
    severe = (reference["label"] == 1) & (rng.random(len(reference)) < 0.3)
    reference["tier"] = np.where(severe, "severe", np.where(reference["label"] == 1, "minor", ""))
    reference["risk_severe"] = reference["risk"] * 0.3
    reference["risk_minor"] = reference["risk"] * 0.7
    tiers = (Tier("severe", ("fraud",), 0.99), Tier("minor", ("other",), 0.90))
    policy = Policy(version="p", t_pass=0.9, t_block=1.0, tier_pass={"severe": 0.02, "minor": 0.05}).validate()
    sizing = size_audits(reference, policy, DELTA, RECALL, tiers)
    assert sizing is not None and 0 < sizing.pass_share < 1
    assert sizing.chosen.net_share >= sizing.current.net_share


def test_the_planned_pass_share_is_what_the_certificate_reaches_in_simulation() -> None:
    """The plan is a planning figure: at the chosen rates, the certificate on freshly audited traffic of
    the same volume passes about the planned share (the median over trials within 3 points), and far
    more than at the default rates."""
    n = 20_000
    sizing = size_audits(_traffic(np.random.default_rng(5), n), _policy(), DELTA, RECALL)
    assert sizing is not None
    rng = np.random.default_rng(6)
    sized = [_certified_pass_share(rng, sizing.apply(_policy()), n) for _ in range(30)]
    default = [_certified_pass_share(rng, _policy(), n) for _ in range(30)]
    assert abs(np.median(sized) - sizing.chosen.next_pass_share) < 0.03
    assert abs(np.median(default) - sizing.current.next_pass_share) < 0.03
    assert np.median(sized) > np.median(default) + 0.05


def test_a_plan_that_saves_next_to_nothing_keeps_the_policy_rates(monkeypatch: pytest.MonkeyPatch) -> None:
    # 1,600 listings, half of them passed: auditing 65% of passes would let the next certificate pass
    # about what it costs; that is not worth turning the audit lane into a second queue
    reference = _traffic(np.random.default_rng(7), 1_600)
    policy = Policy(version="p", t_pass=0.02, t_block=1.0).validate()
    sizing = size_audits(reference, policy, DELTA, RECALL)
    assert sizing is not None and sizing.chosen == sizing.current and not sizing.to_dict()["changed"]
    gain = audit_sizing.MIN_GAIN
    monkeypatch.setattr(audit_sizing, "MIN_GAIN", -1.0)  # without the gate: the best plan, barely positive
    ungated = size_audits(reference, policy, DELTA, RECALL)
    assert ungated is not None and ungated.chosen != ungated.current
    assert sizing.current.net_share < ungated.chosen.net_share < gain
