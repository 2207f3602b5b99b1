"""Certification on audit-weighted labels (decision.weighted): valid under audit sampling, where the
unweighted certificate is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from decision.audit import AuditPlan, draw_audits, inclusion_probabilities, pass_margin
from decision.policy import route
from decision.thresholds import choose_policy_thresholds
from decision.tiers import certifiable_text
from decision.weighted import Strata, certify_block, certify_recall, share_certified, share_lower

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


# a logged design: strata of inclusion probability, the traffic share of violations in each, and the
# share of those a threshold loses (traffic recall 1 - (0.7 * 0.05 + 0.2 * 0.15 + 0.1 * 0.35) = 0.9)
DESIGN_PI = np.array([1.0, 0.3, 0.05])
DESIGN_VIOLATIONS = np.array([0.7, 0.2, 0.1])
DESIGN_LOST = np.array([0.05, 0.15, 0.35])


def _labelled_counts(
    rng: np.random.Generator, reps: int, n: int, lost_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray, float]:
    """(kept, lost) labelled counts per stratum, (reps, H) each, of n labelled violations drawn from the
    design (each traffic violation labelled with its stratum's pi), and the design's traffic recall."""
    lost_share = DESIGN_LOST * lost_scale
    cells = np.concatenate(
        [DESIGN_PI * DESIGN_VIOLATIONS * (1 - lost_share), DESIGN_PI * DESIGN_VIOLATIONS * lost_share]
    )
    counts = rng.multinomial(n, cells / cells.sum(), size=reps)
    return counts[:, :3], counts[:, 3:], float(1.0 - DESIGN_VIOLATIONS @ lost_share)


def test_the_betting_test_errs_at_most_alpha_at_the_null_boundary() -> None:
    """Coverage at the hardest point of the null (traffic recall exactly R): over 4,000 logged samples of
    several sizes the test certifies "recall > R" in at most alpha of them (plus 3 sd of Monte-Carlo
    slack), and the lower bound exceeds the true recall just as rarely; with the traffic recall 0.05
    above the target it certifies most samples of 3,000 (the test has power, though a 5% stratum weighs
    heavily)."""
    rng = np.random.default_rng(3)
    reps, alpha = 4000, 0.1
    slack = 3 * np.sqrt(alpha * (1 - alpha) / reps)
    for n in (60, 400, 3000):
        kept, lost, recall = _labelled_counts(rng, reps, n)
        assert recall == pytest.approx(0.9)
        assert share_certified(kept, lost, DESIGN_PI, alpha, recall).mean() <= alpha + slack
        assert (share_lower(kept, lost, DESIGN_PI, alpha) > recall).mean() <= alpha + slack
    kept, lost, recall = _labelled_counts(rng, reps, 3000, lost_scale=0.5)
    assert share_certified(kept, lost, DESIGN_PI, alpha, recall - 0.05).mean() > 0.7  # 0.82 measured


def test_the_betting_bound_is_close_to_the_exact_binomial_one_without_sampling() -> None:
    """With every pi = 1 the test is within a point of Clopper-Pearson's exact bound (never above it by
    more than the bisection's precision, since no valid test beats the exact one by much here)."""
    for n, k in ((2000, 60), (500, 10), (200, 0)):
        exact = stats.beta.ppf(0.025, n - k, k + 1)
        bet = share_lower(np.array([[n - k]]), np.array([[k]]), np.array([1.0]), 0.025)[0]
        assert exact - 0.012 < bet < exact + 1e-3


def test_one_test_on_weighted_rows_beats_a_bound_per_stratum() -> None:
    """On counts like a logged retrain's (1,767 reviewed violations, 12 audited at pi = 0.4; recall 0.95,
    alpha 0.025) the test allows more misses than exact Poisson bounds per stratum combined by Bonferroni
    (kept counts' lower bounds at alpha / 4 split by pi, lost counts' upper ones at 3 alpha / 4 split by
    1 / pi): the certificate this module used before."""
    pi, alpha = np.array([1.0, 0.4]), 0.025
    kept_alpha = 0.25 * alpha * pi / pi.sum()
    lost_alpha = 0.75 * alpha * (1 / pi) / (1 / pi).sum()

    def per_stratum(kept: np.ndarray, lost: np.ndarray) -> float:
        k_low = (np.where(kept > 0, 0.5 * stats.chi2.ppf(kept_alpha, np.maximum(2 * kept, 1e-12)), 0.0) / pi).sum()
        l_up = (0.5 * stats.chi2.ppf(1 - lost_alpha, 2 * lost + 2) / pi).sum()
        return k_low / (k_low + l_up)

    total = np.array([1767, 12])
    misses = [np.array([m - m // 6, m // 6]) for m in range(0, 80)]  # one miss in six audited
    allowed_before = max(sum(m) for m in misses if per_stratum(total - m, m) >= 0.95)
    allowed_now = max(sum(m) for m in misses if share_certified(total - m, m, pi, alpha, 0.95)[0])
    assert allowed_now > 1.15 * allowed_before


def test_share_lower_counts_a_sampled_stratum_at_its_inverse_probability() -> None:
    pi = np.array([1.0, 0.1])
    fully = share_lower(np.array([[1000, 0]]), np.array([[10, 0]]), pi, 0.05)[0]
    sampled = share_lower(np.array([[1000, 0]]), np.array([[0, 10]]), pi, 0.05)[0]  # 10 misses stand for 100
    assert 0.9 < fully < 0.99 and sampled < fully - 0.05
    # an audited stratum with no miss seen still costs: its weight caps every bet at pi / R
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
        rows = _logged(rng, 20_000, floor=0.2)  # an audited stratum with no row above t_block still caps the bets
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
    # the strongest certifiable target is the weighted bound's, the one the message names (the unweighted
    # 0-miss formula on the raw violation count reported 0.992 for a 0.99 target just found infeasible)
    best = result.best_certifiable["all"]
    assert (
        0 < best < 0.999 and f"the strongest certifiable with these rows is {certifiable_text(best)}" in result.message
    )
    from training.pipeline import TrainOptions, certification_report

    report = certification_report(result, TrainOptions(data=Path("x")), len(rows))
    assert report["strongest_certifiable"] == {"all": best}


def test_the_audit_rate_needed_is_where_a_certificate_with_no_miss_starts_to_pass() -> None:
    from decision.weighted import audit_rate_needed

    kept, lost = np.array([[2000.0, 0.0]]), np.zeros((1, 2))
    rate = audit_rate_needed(2000, 0.99, 0.025)
    assert 0.01 < rate < 0.5
    assert share_certified(kept, lost, np.array([1.0, rate]), 0.025, 0.99)[0]
    assert not share_certified(kept, lost, np.array([1.0, rate - 0.002]), 0.025, 0.99)[0]
    assert audit_rate_needed(20, 0.99, 0.025) == 1.0  # too few violations at any rate


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


def test_the_capital_is_the_same_computed_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    from decision import weighted

    rng = np.random.default_rng(9)
    kept, lost, _ = _labelled_counts(rng, 50, 400)
    targets = rng.uniform(0.5, 0.99, 50)
    whole = weighted.log_capital(kept, lost, DESIGN_PI, 0.05, targets)
    monkeypatch.setattr(weighted, "CHUNK_ROWS", 7)
    np.testing.assert_array_equal(weighted.log_capital(kept, lost, DESIGN_PI, 0.05, targets), whole)


def test_the_violations_needed_are_where_a_certificate_with_no_miss_starts_to_pass() -> None:
    from decision.weighted import violations_needed

    counts = {}
    for floor in (0.3, 0.1, 0.02):
        pi = np.array([floor, 0.2, 1.0])
        n = violations_needed(pi, 0.95, 0.025)
        assert n is not None
        kept, lost = np.zeros((2, 3)), np.zeros((2, 3))
        kept[:, 2] = [n, n - 1]  # every violation in the fully reviewed stratum, none missed
        assert share_certified(kept, lost, pi, 0.025, 0.95).tolist() == [True, False]
        counts[floor] = n
    assert counts[0.3] < counts[0.1] < counts[0.02]  # thinner audits cap the bets lower
    assert counts[0.02] > 4000  # a 2% floor: more violations than a small export's certification rows hold


def test_choosing_the_certification_rows_by_their_design_and_violation_count_keeps_the_level(
    truth: tuple[np.ndarray, np.ndarray],
) -> None:
    """Coverage of `training.pipeline.split_for_certification`'s rule: 200 retrains, each with fully
    labelled older rows and audit-weighted newer ones (an audit floor log-uniform in 2-12%, 10k to 40k
    listings, so the newer rows' violations fall on both sides of what their design needs, many of them
    close to it). The newer rows certify when they hold VIOLATION_MARGIN x the violations their design
    needs with no miss (`decision.weighted.violations_needed`), else the older rows do, by the exact
    order-statistic certificate. The choice reads the design and the newer rows' violation count only, so
    the certified t_pass falls short of recall 0.9 by the truth in at most alpha = 5% of retrains (plus
    3 s.e.)."""
    from decision.guarantees import pass_order_index
    from decision.weighted import violations_needed
    from training.pipeline import VIOLATION_MARGIN

    rng = np.random.default_rng(21)
    reps, alpha, target = 200, 0.05, 0.90
    fail = certified = newer = close = 0
    for _ in range(reps):
        floor, listings = (
            float(np.exp(rng.uniform(np.log(0.02), np.log(0.12)))),
            int(rng.choice([10_000, 20_000, 40_000])),
        )
        rows = _logged(rng, listings, floor=floor)
        strata = Strata.of(rows["inclusion_prob"].to_numpy())
        label = rows["label"].to_numpy().astype(bool)
        needed = violations_needed(strata.pi, target, alpha)
        assert needed is not None
        ratio = label.sum() / (VIOLATION_MARGIN * needed)
        close += 2 / 3 <= ratio <= 3 / 2
        if ratio >= 1:
            newer += 1
            cert = certify_recall(rows["risk"].to_numpy(), strata, label, target, alpha)
            ok, threshold = cert.certified, cert.threshold
        else:
            risk, older_label = _traffic(rng, 4_000)
            violations = np.sort(risk[older_label])
            k = pass_order_index(len(violations), target, alpha)
            ok, threshold = k is not None, (violations[k] if k is not None else 0.0)
        certified += ok
        fail += ok and _true_recall(truth, threshold) < target
    assert 0.25 * reps <= newer <= 0.75 * reps and close >= 0.25 * reps  # both branches, near the boundary
    assert certified >= 0.9 * reps
    assert fail / reps <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / reps)
