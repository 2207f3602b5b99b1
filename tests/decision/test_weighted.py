"""Certification on audit-weighted labels (decision.weighted): valid under audit sampling, where the
unweighted certificate is not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from decision.audit import AuditPlan, draw_audits, inclusion_probabilities, pass_margin
from decision.policy import route
from decision.thresholds import choose_policy_thresholds
from decision.weighted import Strata, certify_block, certify_recall, poisson_lower, poisson_upper, share_lower

TRUTH_ROWS = 400_000


def _traffic(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated risks (what the new model says; a mostly clean marketplace with a clearly bad 5%) and
    labels drawn from them."""
    risk = np.where(rng.random(n) < 0.05, rng.beta(8.0, 1.0, n), rng.beta(0.3, 6.0, n))
    return risk, rng.random(n) < risk


def _logged(rng: np.random.Generator, n: int, floor: float = 0.05) -> pd.DataFrame:
    """One period of traffic decided by an older model (a noisy view of the risk) and audit-sampled:
    reviewed rows have pi = 1, automated rows their stratum's audit rate; only labelled rows are kept."""
    risk, label = _traffic(rng, n)
    old = np.clip(risk * np.exp(rng.normal(0.0, 0.5, n)), 0.0, 1.0)
    codes = route(old, 0.03, 0.8)
    pi = inclusion_probabilities(codes, pass_margin(old, 0.03), floor, AuditPlan(near_rate=0.2, block_rate=0.2))
    labelled = (codes == 1) | draw_audits(codes, pi, rng)
    return pd.DataFrame({"risk": risk, "label": label.astype(int), "inclusion_prob": pi})[labelled].reset_index(
        drop=True
    )


@pytest.fixture(scope="module")
def truth() -> tuple[np.ndarray, np.ndarray]:
    return _traffic(np.random.default_rng(12345), TRUTH_ROWS)


def _true_recall(truth: tuple[np.ndarray, np.ndarray], t_pass: float) -> float:
    risk, label = truth
    return float((label & (risk >= t_pass)).sum() / label.sum())


def _true_precision(truth: tuple[np.ndarray, np.ndarray], t_block: float) -> float:
    risk, label = truth
    blocked = risk >= t_block
    return float(label[blocked].mean()) if blocked.any() else 1.0


def test_poisson_bounds_are_the_exact_garwood_limits() -> None:
    assert poisson_upper(np.array([0]), 0.05)[0] == pytest.approx(-np.log(0.05))
    assert poisson_lower(np.array([0]), 0.05)[0] == 0.0
    # Garwood's limits for 10 events at 95% two-sided (2.5% each side): 4.795 and 18.390
    assert poisson_lower(np.array([10]), 0.025)[0] == pytest.approx(4.795, abs=1e-3)
    assert poisson_upper(np.array([10]), 0.025)[0] == pytest.approx(18.390, abs=1e-3)


def test_share_lower_counts_a_sampled_stratum_at_its_inverse_probability() -> None:
    pi = np.array([1.0, 0.1])
    fully = share_lower(np.array([[1000, 0]]), np.array([[10, 0]]), pi, 0.05)[0]
    sampled = share_lower(np.array([[1000, 0]]), np.array([[0, 10]]), pi, 0.05)[0]  # 10 misses stand for 100
    assert 0.9 < fully < 0.99 and sampled < fully - 0.05
    # an audited stratum with no miss seen still bounds its misses by about -ln(alpha_h) / pi listings
    empty = share_lower(np.array([[1000, 0]]), np.array([[0, 0]]), pi, 0.05)[0]
    assert empty == pytest.approx(share_lower(np.array([[1000]]), np.array([[0]]), np.array([1.0]), 0.05)[0], abs=0.1)
    assert empty < share_lower(np.array([[1000]]), np.array([[0]]), np.array([1.0]), 0.05)[0]
    assert sampled < share_lower(np.array([[1000, 0]]), np.array([[0, 1]]), pi, 0.05)[0]


def test_strata_reject_impossible_probabilities() -> None:
    for bad in ([0.0, 1.0], [1.2], [np.nan]):
        with pytest.raises(ValueError, match="inclusion_prob"):
            Strata.of(np.array(bad))
    assert not Strata.of(np.ones(3)).weighted and Strata.of(np.array([1.0, 0.5])).weighted


def test_recall_certificate_holds_under_audit_sampling_in_simulation(truth: tuple[np.ndarray, np.ndarray]) -> None:
    """Coverage: 100 logged periods, each certified at alpha = 0.05 for recall >= 0.9; the true recall
    of the certified t_pass (on 400k fresh listings) may fall short in at most 5% of periods, plus
    Monte-Carlo slack (3 sd of a binomial(100, 0.05): 0.05 + 0.065). Ignoring the weights, the same
    rows certify thresholds that fail far more often (the bias this module exists to remove)."""
    rng = np.random.default_rng(7)
    reps, alpha, target = 100, 0.05, 0.90
    weighted_fail = unweighted_fail = certified = 0
    for _ in range(reps):
        rows = _logged(rng, 20_000)
        risk, label = rows["risk"].to_numpy(), rows["label"].to_numpy().astype(bool)
        cert = certify_recall(risk, Strata.of(rows["inclusion_prob"].to_numpy()), label, target, alpha)
        naive = certify_recall(risk, Strata.of(np.ones(len(rows))), label, target, alpha)
        certified += cert.certified
        weighted_fail += cert.certified and _true_recall(truth, cert.threshold) < target
        unweighted_fail += naive.certified and _true_recall(truth, naive.threshold) < target
    assert certified >= 0.9 * reps  # the test has power: most periods certify something
    assert weighted_fail / reps <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / reps)
    assert unweighted_fail / reps > 4 * alpha


def test_block_certificate_holds_under_audit_sampling_in_simulation(truth: tuple[np.ndarray, np.ndarray]) -> None:
    rng = np.random.default_rng(8)
    reps, alpha, target = 100, 0.05, 0.85
    fail = certified = 0
    for _ in range(reps):
        rows = _logged(rng, 20_000, floor=0.2)  # an audited stratum with no row above t_block still costs -ln(a)/pi
        cert = certify_block(
            rows["risk"].to_numpy(),
            Strata.of(rows["inclusion_prob"].to_numpy()),
            rows["label"].to_numpy(),
            target,
            alpha,
        )
        certified += cert.certified
        fail += cert.certified and _true_precision(truth, cert.t_block) < target
    assert certified >= 0.5 * reps
    assert fail / reps <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / reps)


def test_policy_thresholds_use_the_weights_when_rows_carry_inclusion_probabilities() -> None:
    rows = _logged(np.random.default_rng(3), 60_000)
    weighted = choose_policy_thresholds(rows, recall=0.9, block_precision=0.8, delta=0.1)
    plain = choose_policy_thresholds(rows.drop(columns="inclusion_prob"), recall=0.9, block_precision=0.8, delta=0.1)
    assert weighted.targets["weighted"] is True and "weighted" not in plain.targets
    assert weighted.feasible and weighted.t_pass < plain.t_pass  # the audited misses count 1 / pi times
    # shares are of traffic, not of labelled rows: audited rows stand for many
    assert weighted.point.auto_pass_share > (rows["risk"] < weighted.t_pass).mean()
    policy = weighted.to_policy()
    assert policy.guarantee["mode"] == "guarantee" and not policy.tier_pass


def test_infeasible_weighted_targets_say_what_audit_rate_would_do() -> None:
    rows = _logged(np.random.default_rng(4), 5_000, floor=0.01)
    result = choose_policy_thresholds(rows, recall=0.999, block_precision=0.99, delta=0.05)
    assert not result.feasible and result.t_pass == 0.0
    assert "audit rate of about" in result.message and "Nothing is auto-passed" in result.message


def test_tiered_weighted_certificate_sets_every_tier_and_holds_each_target(
    truth: tuple[np.ndarray, np.ndarray],
) -> None:
    """Two tiers sharing the risk (half of the violations each): each tier's certified recall holds by the
    truth, and the policy carries one t_pass per tier."""
    from features.config import Tier

    rng = np.random.default_rng(11)
    rows = _logged(rng, 60_000)
    half = rng.random(len(rows)) < 0.5
    rows["tier"] = np.where(rows["label"] == 1, np.where(half, "severe", "minor"), "")
    rows["risk_severe"] = rows["risk_minor"] = rows["risk"] / 2
    tiers = [Tier("severe", ("a",), 0.9), Tier("minor", ("b",), 0.8)]
    result = choose_policy_thresholds(rows, block_precision=0.8, delta=0.1, tiers=tiers)
    assert result.mode == "tiered" and result.targets["weighted"] is True and result.feasible
    by_name = {t.name: t for t in result.tiers}
    assert by_name["minor"].t_pass > by_name["severe"].t_pass > 0  # u (1 - R_k): the laxer tier passes more
    for tier in result.tiers:
        assert tier.recall_lower >= tier.recall_target
        # tier risk = risk / 2, so passing tier risk < t_k is passing risk < 2 t_k
        assert _true_recall(truth, 2 * tier.t_pass) >= tier.recall_target
    assert set(result.to_policy().tier_pass) == {"severe", "minor"}


def test_alpha_split_spends_most_where_no_lost_listing_was_seen() -> None:
    """The split depends on the inclusion probabilities alone and sums to alpha; it shrinks the bound of
    sampled strata with nothing lost below what an equal split gives (334 -> 275 listings here)."""
    from decision.weighted import LOST_SHARE, split_alpha

    pi = np.array([1.0, 0.1, 0.02])
    kept, lost = split_alpha(pi, 0.025)
    assert kept.sum() + lost.sum() == pytest.approx(0.025)
    assert lost.sum() == pytest.approx(LOST_SHARE * 0.025)
    np.testing.assert_allclose(lost * pi, lost[0] * pi[0])  # in proportion to 1 / pi
    np.testing.assert_allclose(kept / pi, kept[0] / pi[0])  # in proportion to pi
    zero = np.zeros(3)
    split = float((poisson_upper(zero, lost) / pi).sum())
    equal = float((poisson_upper(zero, np.full(3, 0.025 / 6)) / pi).sum())
    assert split == pytest.approx(274.7, abs=0.1) and equal == pytest.approx(334.3, abs=0.1)
    assert share_lower(np.array([[5600, 0, 0]]), zero[None, :], pi, 0.025)[0] > 0.95


def test_a_split_planned_on_an_independent_logged_pilot_keeps_the_weighted_guarantee(
    truth: tuple[np.ndarray, np.ndarray],
) -> None:
    """Coverage with the split of delta planned (`decision.alpha_split`) on a pilot of other logged rows,
    weighted by 1 / pi, before each period is certified: recall >= 0.9 and block precision >= 0.85 fail
    together in at most delta of 100 periods (plus Monte-Carlo slack); a split without a block share
    certifies no block and gives recall the whole budget."""
    from decision.alpha_split import AlphaSplit, Pilot, plan_split

    rng = np.random.default_rng(21)
    reps, delta, recall, precision = 100, 0.1, 0.9, 0.85
    fails = certified = 0
    for _ in range(reps):
        pilot_rows = _logged(rng, 10_000)
        pilot = Pilot.untiered(
            pilot_rows["risk"].to_numpy(), pilot_rows["label"].to_numpy(), 1 / pilot_rows["inclusion_prob"].to_numpy()
        )
        rows = _logged(rng, 20_000)
        plan = plan_split(pilot, [recall], precision, delta, len(rows))
        result = choose_policy_thresholds(
            rows, recall=recall, block_precision=precision, delta=delta, alpha_split=plan.chosen
        )
        assert result.targets["alpha_split"] == plan.chosen.to_dict()
        certified += result.feasible
        recall_fails = result.feasible and _true_recall(truth, result.t_pass) < recall
        fails += recall_fails or _true_precision(truth, result.t_block) < precision
    assert certified >= 0.9 * reps
    assert fails / reps <= delta + 3 * np.sqrt(delta * (1 - delta) / reps)
    rows = _logged(rng, 20_000)
    recall_only = choose_policy_thresholds(
        rows, recall=recall, block_precision=precision, delta=delta, alpha_split=AlphaSplit(0.0, (1.0,))
    )
    halves = choose_policy_thresholds(rows, recall=recall, block_precision=precision, delta=delta)
    assert recall_only.t_block == 1.0
    assert recall_only.feasible and recall_only.point.auto_pass_share > halves.point.auto_pass_share
