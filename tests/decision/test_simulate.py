"""Simulator: numbers equal counting by hand, prevalence shift, the curve, policies with segments and rules,
tiered routing (per-tier misses) and the headline (share auto-decided, FTE saved)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from decision.audit import AuditPlan
from decision.policy import CODE_BLOCK, CODE_PASS, CODE_REVIEW, Policy, route
from decision.rules import Rule, match_rules
from decision.simulate import (
    parse_tier_threshold,
    prevalence_weights,
    simulate,
    simulate_policy,
    sweep,
    wilson,
    with_thresholds,
)

# 10 listings: risk, label, handling seconds, category
SMALL = pd.DataFrame(
    {
        "risk": [0.01, 0.02, 0.05, 0.10, 0.30, 0.50, 0.70, 0.90, 0.95, np.nan],
        "label": [0, 1, 0, 0, 1, 0, 1, 1, 0, 1],
        "review_seconds": [60, 120, 30, 60, 90, 60, 30, 60, 120, 600],
        "category": ["toys", "toys", "books", "books", "toys", "pharmacy", "books", "toys", "books", "toys"],
    }
)


def test_numbers_equal_counting_by_hand() -> None:
    # t_pass 0.05, t_block 0.9: pass rows 0,1; block rows 7,8; queue rows 2-6 and 9 (NaN risk)
    result = simulate(SMALL, 0.05, 0.9, daily_volume=1000, productive_hours_per_fte=6.5)
    assert result.auto_pass_share.value == pytest.approx(0.2)
    assert result.auto_block_share.value == pytest.approx(0.2)
    assert result.queue_share.value == pytest.approx(0.6)
    assert result.queue_per_day.value == pytest.approx(600)
    queue_hours = (30 + 60 + 90 + 60 + 30 + 600) / 3600 / 10 * 1000
    assert result.reviewer_hours_per_day.value == pytest.approx(queue_hours)
    assert result.fte.value == pytest.approx(queue_hours / 6.5)
    assert result.missed_violations_per_day.value == pytest.approx(100)  # row 1 of 10
    assert result.wrongful_blocks_per_day.value == pytest.approx(100)  # row 8 of 10
    assert result.recall.value == pytest.approx(4 / 5)
    assert result.block_precision.value == pytest.approx(1 / 2)
    low, high = wilson(1, 10, 0.95)
    assert (result.missed_violations_per_day.low, result.missed_violations_per_day.high) == pytest.approx(
        (low * 1000, high * 1000)
    )
    for estimate in (result.queue_share, result.reviewer_hours_per_day, result.recall):
        assert estimate.low <= estimate.value <= estimate.high
    json.dumps(result.to_dict())


def test_audit_sampled_rows_count_one_over_their_inclusion_probability() -> None:
    """A bundle retrained on the service's verdicts holds audited automated rows at inclusion probability
    pi: each stands for 1 / pi listings, as the certificate and the gate count them. Row 0 (pi = 0.25)
    weighs 4: equal to the same reference with the row written out 4 times, curve included."""
    sampled = SMALL.assign(inclusion_prob=[0.25] + [1.0] * 9)
    written_out = pd.concat([SMALL.iloc[[0, 0, 0]], SMALL], ignore_index=True)
    weighted, expected = simulate(sampled, 0.05, 0.9, 1000), simulate(written_out, 0.05, 0.9, 1000)
    assert weighted.auto_pass_share.value == pytest.approx(expected.auto_pass_share.value)  # 5 of 13
    assert weighted.recall.value == pytest.approx(expected.recall.value)
    assert weighted.reviewer_hours_per_day.value == pytest.approx(expected.reviewer_hours_per_day.value)
    assert weighted.prevalence == pytest.approx(expected.prevalence)
    doubled = simulate(sampled, 0.05, 0.9, 1000, prevalence_multiplier=2.0)
    assert doubled.prevalence == pytest.approx(2 * expected.prevalence)
    curve, expected_curve = sweep(sampled, 0.9), sweep(written_out, 0.9)
    common = sorted(set(curve["t_pass"]) & set(expected_curve["t_pass"]))  # 0, 0.01, ..., 0.7, 0.9
    assert len(common) > 10
    pd.testing.assert_frame_equal(
        curve.set_index("t_pass").loc[common], expected_curve.set_index("t_pass").loc[common], check_exact=False
    )


def test_wilson_matches_known_values() -> None:
    low, high = wilson(10, 100, 0.95)
    assert (low, high) == pytest.approx((0.05523, 0.17437), abs=1e-4)


def test_prevalence_multiplier_doubles_violations_keeping_volume() -> None:
    rng = np.random.default_rng(0)
    risk = rng.beta(0.5, 4, 50_000)
    frame = pd.DataFrame({"risk": risk, "label": (rng.random(len(risk)) < risk).astype(int), "review_seconds": 60.0})
    weights = prevalence_weights(frame["label"].to_numpy().astype(bool), 2.0)
    assert weights.sum() == pytest.approx(len(frame))
    base = simulate(frame, 0.02, 0.9, 10_000)
    doubled = simulate(frame, 0.02, 0.9, 10_000, prevalence_multiplier=2.0)
    assert doubled.prevalence == pytest.approx(2 * base.prevalence)
    assert doubled.missed_violations_per_day.value == pytest.approx(2 * base.missed_violations_per_day.value)
    assert doubled.recall.value == pytest.approx(base.recall.value)
    with pytest.raises(ValueError, match="prevalence_multiplier"):
        simulate(frame, 0.02, 0.9, 10_000, prevalence_multiplier=100.0)


def test_sweep_agrees_with_simulate_and_is_monotone() -> None:
    rng = np.random.default_rng(1)
    risk = rng.beta(0.5, 3, 20_000)
    frame = pd.DataFrame(
        {
            "risk": risk,
            "label": (rng.random(len(risk)) < risk).astype(int),
            "review_seconds": rng.gamma(2, 30, len(risk)),
        }
    )
    curve = sweep(frame, t_block=0.9, daily_volume=5000, n_points=50)
    assert np.all(np.diff(curve["recall"]) <= 1e-12) and np.all(np.diff(curve["reviewer_hours_per_day"]) <= 1e-9)
    for row in curve.iloc[[0, 10, 25, 49]].itertuples():
        point = simulate(frame, row.t_pass, 0.9, 5000)
        assert point.recall.value == pytest.approx(row.recall)
        assert point.reviewer_hours_per_day.value == pytest.approx(row.reviewer_hours_per_day)
        assert point.queue_per_day.value == pytest.approx(row.queue_per_day)


def test_sweep_with_rules_is_simulate_with_the_same_rules_at_every_point() -> None:
    """Rows a rule decides stay decided as `route` decides them at every t_pass (a block rule blocks, a
    review rule queues, a block rule wins); a risk that is not finite is queued. The curve drew the
    thresholds alone, so the policy's own point lay off it."""
    rng = np.random.default_rng(5)
    n = 20_000
    risk = rng.beta(0.5, 3, n)
    frame = pd.DataFrame(
        {
            "risk": np.where(rng.random(n) < 0.002, np.nan, risk),
            "label": (rng.random(n) < risk).astype(int),
            "review_seconds": rng.gamma(2, 30, n),
        }
    )
    rule_block, rule_review = rng.random(n) < 0.03, rng.random(n) < 0.1  # some rows under both
    curve = sweep(frame, t_block=0.9, daily_volume=5000, n_points=50, rule_block=rule_block, rule_review=rule_review)
    assert np.all(np.diff(curve["recall"]) <= 1e-12)
    for row in curve.iloc[[0, 10, 25, 49]].itertuples():
        point = simulate(frame, row.t_pass, 0.9, 5000, rule_block=rule_block, rule_review=rule_review)
        assert point.auto_pass_share.value == pytest.approx(row.auto_pass_share)
        assert point.auto_block_share.value == pytest.approx(row.auto_block_share)
        assert point.queue_share.value == pytest.approx(row.queue_share)
        assert point.recall.value == pytest.approx(row.recall)
        assert point.reviewer_hours_per_day.value == pytest.approx(row.reviewer_hours_per_day)
    plain = sweep(frame.assign(risk=risk), t_block=0.9, daily_volume=5000, n_points=50)
    assert (curve["auto_block_share"] > plain["auto_block_share"].max()).all()  # the block rule's rows


def test_policy_simulation_uses_segments_rules_and_breakdown() -> None:
    policy = Policy(
        version="p",
        t_pass=0.05,
        t_block=0.9,
        segment_by="category",
        segments={"books": (0.2, 0.6)},
        rules=[Rule("regulated", "review", "category", column="category", values=["pharmacy"])],
        qa_sample_rate=0.1,
    )
    result = simulate_policy(SMALL, policy, daily_volume=1000, breakdown_by="category")
    # books: 0.05,0.10 pass, 0.70,0.95 block; toys as before; pharmacy row (0.5) review by rule
    assert result.auto_pass_share.value == pytest.approx(0.4)
    assert result.auto_block_share.value == pytest.approx(0.3)
    assert result.t_pass is None
    assert result.qa_per_day == pytest.approx(0.1 * 0.7 * 1000)
    by = {row["category"]: row for row in result.segments}
    assert by["books"]["auto_pass_share"]["value"] == pytest.approx(0.5)
    assert by["pharmacy"]["queue_share"]["value"] == pytest.approx(1.0)
    assert sum(row["daily_volume"] for row in result.segments) == pytest.approx(1000)


def test_audit_workload_follows_the_stratified_rates() -> None:
    """t_pass 0.05, t_block 0.9: rows 0 (risk 0.01, margin 0.2) and 1 (0.02, margin 0.4) pass far from
    t_pass, rows 7, 8 block; with near_fraction 0.3 row 1 is near. Audits per day = 1000/10 x the sum
    of the automated rows' probabilities; hours weight each by its handling time."""
    policy = Policy(
        version="p",
        t_pass=0.05,
        t_block=0.9,
        qa_sample_rate=0.01,
        audit=AuditPlan(near_rate=0.2, block_rate=0.1, near_fraction=0.3),
    )
    result = simulate_policy(SMALL, policy, daily_volume=1000)
    assert result.qa_per_day == pytest.approx(100 * (0.01 + 0.2 + 0.1 + 0.1))
    assert result.qa_hours_per_day == pytest.approx(100 * (0.01 * 60 + 0.2 * 120 + 0.1 * 60 + 0.1 * 120) / 3600)
    assert result.qa_per_day_by_stratum == pytest.approx({"pass_low": 1.0, "pass_near": 20.0, "block": 20.0})
    one_rate = simulate(SMALL, 0.05, 0.9, daily_volume=1000, qa_sample_rate=0.01)  # no plan: one rate
    assert one_rate.qa_per_day == pytest.approx(100 * 4 * 0.01)


# A tiered reference: each violation's tier and one calibrated risk per tier. t_pass 0.05 overall would
# pass rows 0-4; with severe < 0.005 and minor < 0.05 as well, rows 0, 2, 3, 4 pass (row 1's severe risk
# is too high), rows 7, 8 block, the rest is queued.
TIERED = pd.DataFrame(
    {
        "risk": [0.01, 0.02, 0.03, 0.04, 0.04, 0.30, 0.50, 0.92, 0.95, np.nan],
        "label": [0, 1, 1, 0, 1, 1, 0, 1, 0, 1],
        "tier": ["", "severe", "minor", "", "severe", "minor", "", "severe", "", "severe"],
        "risk_severe": [0.001, 0.02, 0.001, 0.004, 0.003, 0.01, 0.1, 0.9, 0.5, np.nan],
        "risk_minor": [0.01, 0.001, 0.03, 0.02, 0.01, 0.3, 0.1, 0.1, 0.5, np.nan],
        "review_seconds": [60, 120, 30, 60, 90, 60, 30, 60, 120, 600],
    }
)
TIER_PASS = {"severe": 0.005, "minor": 0.05}


def _tiered_policy(**changes: object) -> Policy:
    raw = {
        "version": "tiered",
        "t_pass": 0.05,
        "t_block": 0.9,
        "tier_pass": TIER_PASS,
        "targets": {"recall": {"severe": 0.99, "minor": 0.9}, "block_precision": 0.98},
        "qa_sample_rate": 0.001,
        **changes,
    }
    return Policy.from_dict(raw)


def test_tiered_misses_per_day_by_tier_and_the_headline_by_hand() -> None:
    result = simulate_policy(TIERED, _tiered_policy(), daily_volume=1000, productive_hours_per_fte=6.5)
    assert result.auto_pass_share.value == pytest.approx(0.4)
    assert result.auto_block_share.value == pytest.approx(0.2)
    tiers = {t.name: t for t in result.tiers}
    assert list(tiers) == ["severe", "minor"]
    severe, minor = tiers["severe"], tiers["minor"]
    assert (severe.n_violations, severe.recall_target, severe.t_pass) == (4, 0.99, 0.005)
    assert severe.recall.value == pytest.approx(3 / 4)  # row 4 auto-passed
    assert severe.missed_violations_per_day.value == pytest.approx(100)  # 1 row in 10, at 1000 a day
    assert (minor.n_violations, minor.recall_target, minor.t_pass) == (2, 0.9, 0.05)
    assert minor.recall.value == pytest.approx(1 / 2)  # row 2 auto-passed
    assert minor.missed_violations_per_day.value == pytest.approx(100)
    low, high = wilson(1, 10, 0.95)
    assert (minor.missed_violations_per_day.low, minor.missed_violations_per_day.high) == pytest.approx(
        (low * 1000, high * 1000)
    )
    assert sum(t.missed_violations_per_day.value for t in result.tiers) == pytest.approx(
        result.missed_violations_per_day.value
    )

    headline = result.headline
    assert headline.auto_decided_share.value == pytest.approx(0.6)
    all_hours = sum(TIERED["review_seconds"]) / 3600 / 10 * 1000
    automated_hours = (60 + 30 + 60 + 90 + 60 + 120) / 3600 / 10 * 1000  # rows 0, 2, 3, 4, 7, 8
    assert headline.fte_review_all.value == pytest.approx(all_hours / 6.5)
    assert headline.fte_saved_gross.value == pytest.approx(automated_hours / 6.5)
    assert headline.audit_fte.value == pytest.approx(result.qa_hours_per_day / 6.5) and result.qa_hours_per_day > 0
    assert headline.fte_saved.value == pytest.approx(headline.fte_saved_gross.value - headline.audit_fte.value)
    body = json.loads(json.dumps(result.to_dict()))
    assert next(iter(body)) == "headline"
    assert body["tiers"][0]["missed_violations_per_day"]["value"] == pytest.approx(100)


def test_fte_saved_is_fte_reviewing_everything_minus_fte_with_the_policy() -> None:
    rng = np.random.default_rng(3)
    risk = rng.beta(0.5, 4, 5000)
    frame = pd.DataFrame(
        {"risk": risk, "label": (rng.random(len(risk)) < risk).astype(int), "review_seconds": rng.gamma(2, 40, 5000)}
    )
    for multiplier in (1.0, 2.0):
        result = simulate(frame, 0.03, 0.8, 20_000, 7.0, multiplier)
        review_all = simulate(frame, 0.0, 1.0, 20_000, 7.0, multiplier)  # nothing below 0, nothing at 1: all queued
        assert review_all.queue_share.value == pytest.approx(1.0)
        assert result.headline.fte_review_all.value == pytest.approx(review_all.fte.value)
        assert result.headline.fte_saved.value == pytest.approx(review_all.fte.value - result.fte.value)
        assert result.headline.auto_decided_share.value == pytest.approx(1 - result.queue_share.value)
        saved = result.headline.fte_saved
        assert 0 < saved.low <= saved.value <= saved.high


def test_fte_saved_is_net_of_the_audits_of_automated_decisions() -> None:
    """A bundle trained on 60k rows audited 65% of its auto-passes: the headline said 42.5 FTE saved while
    the audits took 27.6 FTE of reviewers. Each audit is a review: the saving is the gross less the audits.

    t_pass 0.05, t_block 0.9 on SMALL: rows 0, 1 pass (60 s, 120 s), rows 7, 8 block (60 s, 120 s); every
    automated decision audited at 65% (one rate, no plan)."""
    result = simulate(SMALL, 0.05, 0.9, daily_volume=1000, productive_hours_per_fte=6.5, qa_sample_rate=0.65)
    automated_hours = (60 + 120 + 60 + 120) / 3600 / 10 * 1000
    headline = result.headline
    assert headline.fte_saved_gross.value == pytest.approx(automated_hours / 6.5)
    assert headline.audit_fte.value == pytest.approx(0.65 * automated_hours / 6.5)
    assert headline.audit_fte.value == pytest.approx(result.qa_hours_per_day / 6.5)
    assert headline.fte_saved.value == pytest.approx(0.35 * automated_hours / 6.5)
    assert headline.fte_saved.value == pytest.approx(
        headline.fte_review_all.value - result.fte.value - result.qa_hours_per_day / 6.5
    )
    for estimate in (headline.fte_saved, headline.fte_saved_gross, headline.audit_fte):
        assert 0 <= estimate.low < estimate.value < estimate.high
    # one audit rate: each row saves 35% of what it saved before audits, and so does each bound
    gross = headline.fte_saved_gross
    assert (headline.fte_saved.low, headline.fte_saved.high) == pytest.approx((0.35 * gross.low, 0.35 * gross.high))
    body = json.loads(json.dumps(result.to_dict()))["headline"]
    assert list(body) == ["auto_decided_share", "fte_saved", "fte_saved_gross", "audit_fte", "fte_review_all"]
    no_audits = simulate(SMALL, 0.05, 0.9, daily_volume=1000, productive_hours_per_fte=6.5)
    assert no_audits.headline.fte_saved == no_audits.headline.fte_saved_gross


def test_a_policy_that_cannot_block_reports_exactly_zero_blocks() -> None:
    """t_block = 1 and no block rule: 'auto-block 0.00% (0.00-0.03%)', 'wrongful blocks/day 0.0 (0.0-32.0)'
    and a low bound of 2.7e-20 described an uncertainty there is none of."""
    cannot = simulate_policy(SMALL, Policy(version="p", t_pass=0.05, t_block=1.0), daily_volume=1000)
    assert not cannot.can_block
    assert cannot.auto_block_share.to_dict() == {"value": 0.0, "low": 0.0, "high": 0.0}
    assert cannot.wrongful_blocks_per_day.to_dict() == {"value": 0.0, "low": 0.0, "high": 0.0}
    assert cannot.block_precision.to_dict() == {"value": None, "low": None, "high": None}
    # a block rule can block whatever t_block is, so the zero among these rows is an estimate again
    rule = Rule("no_cosmetics", "block", "category", column="category", values=["cosmetics"])
    by_rule = simulate_policy(SMALL, Policy(version="p", t_pass=0.05, t_block=1.0, rules=[rule]), daily_volume=1000)
    assert by_rule.can_block and by_rule.auto_block_share.value == 0.0 < by_rule.auto_block_share.high
    assert simulate(SMALL, 0.05, 0.9).can_block
    # a share of 0 has a lower bound of exactly 0, a share of 1 an upper bound of exactly 1 (no 2.7e-20)
    assert wilson(0, 24_000, 0.95)[0] == 0.0 and wilson(24_000, 24_000, 0.95)[1] == 1.0
    missed = simulate(SMALL, 0.0001, 0.9).missed_violations_per_day
    assert (missed.value, missed.low) == (0.0, 0.0)


def test_tiered_simulation_equals_counting_route_on_the_same_rows() -> None:
    rng = np.random.default_rng(4)
    n = 20_000
    frame = pd.DataFrame(
        {
            "risk": rng.beta(0.5, 4, n),
            "risk_severe": rng.beta(0.3, 6, n),
            "risk_minor": rng.beta(0.5, 5, n),
            "category": rng.choice(["toys", "pharmacy", "books"], n),
            "review_seconds": 60.0,
        }
    )
    frame["label"] = (rng.random(n) < frame["risk"]).astype(int)
    frame["tier"] = np.where(frame["label"] == 1, rng.choice(["severe", "minor"], n), "")
    rules = [Rule("regulated", "review", "category", column="category", values=["pharmacy"])]
    policy = _tiered_policy(t_pass=0.2, t_block=0.7, tier_pass={"severe": 0.02, "minor": 0.08})
    policy.rules = rules
    result = simulate_policy(frame, policy, daily_volume=n)

    _, rule_review, _ = match_rules(frame, rules)
    codes = route(
        frame["risk"].to_numpy(),
        0.2,
        0.7,
        rule_review=rule_review,
        tier_risk=frame[["risk_severe", "risk_minor"]].to_numpy(),
        tier_pass=policy.tier_pass_vector(["severe", "minor"]),
    )
    passed = codes == CODE_PASS
    assert result.auto_pass_share.value == pytest.approx(passed.mean(), abs=1e-12)
    assert result.queue_per_day.value == pytest.approx((codes == CODE_REVIEW).sum(), abs=1e-9)
    assert result.auto_block_share.value == pytest.approx((codes == CODE_BLOCK).mean(), abs=1e-12)
    for tier in result.tiers:
        violating = frame["tier"].to_numpy() == tier.name
        assert tier.n_violations == violating.sum()
        assert tier.missed_violations_per_day.value == pytest.approx((violating & passed).sum(), abs=1e-9)
        assert tier.recall.value == pytest.approx(1 - (violating & passed).sum() / violating.sum())
    untiered = simulate_policy(frame, _tiered_policy(t_pass=0.2, t_block=0.7, tier_pass={}), daily_volume=n)
    assert untiered.auto_pass_share.value > result.auto_pass_share.value  # the tiers hold passes back


def test_prevalence_shift_reweights_tier_violations() -> None:
    base = simulate_policy(TIERED, _tiered_policy(), daily_volume=1000)
    doubled = simulate_policy(TIERED, _tiered_policy(), daily_volume=1000, prevalence_multiplier=1.2)
    for before, after in zip(base.tiers, doubled.tiers, strict=True):
        assert after.missed_violations_per_day.value == pytest.approx(1.2 * before.missed_violations_per_day.value)
        assert after.recall.value == pytest.approx(before.recall.value)


def test_a_tier_the_policy_does_not_name_never_passes_and_unknown_policy_tiers_are_ignored() -> None:
    only_severe = simulate_policy(TIERED, _tiered_policy(tier_pass={"severe": 0.5}), daily_volume=1000)
    assert only_severe.auto_pass_share.value == 0  # minor has no threshold: fail safe, as the service does
    extra = simulate_policy(TIERED, _tiered_policy(tier_pass={**TIER_PASS, "gone": 0.5}), daily_volume=1000)
    assert extra.to_dict() == simulate_policy(TIERED, _tiered_policy(), daily_volume=1000).to_dict()


def test_untiered_results_are_unchanged_by_tier_thresholds_and_tier_columns() -> None:
    plain = simulate(SMALL, 0.05, 0.9, daily_volume=1000)
    assert simulate(SMALL, 0.05, 0.9, daily_volume=1000, tier_pass=TIER_PASS).to_dict() == plain.to_dict()
    assert plain.tiers == [] and plain.to_dict()["tiers"] == []
    # an untiered policy on a tiered reference routes on the overall risk alone, and reports each tier
    untiered = _tiered_policy(tier_pass={}, targets={})
    with_tiers = simulate_policy(TIERED, untiered, daily_volume=1000).to_dict()
    without = simulate_policy(TIERED[["risk", "label", "review_seconds"]], untiered, daily_volume=1000).to_dict()
    assert {k: v for k, v in with_tiers.items() if k != "tiers"} == {k: v for k, v in without.items() if k != "tiers"}
    assert [(t["name"], t["t_pass"], t["recall_target"]) for t in with_tiers["tiers"]] == [
        ("severe", None, None),
        ("minor", None, None),
    ]
    assert with_tiers["auto_pass_share"]["value"] == pytest.approx(0.5)  # rows 0-4 on risk < 0.05


def test_what_if_thresholds_on_a_tiered_policy() -> None:
    policy = _tiered_policy(t_pass=0.95, t_block=0.99)  # tiered: the overall t_pass only backs the tiers up
    lower_block = with_thresholds(policy, ["severe", "minor"], t_block=0.5)
    assert lower_block.t_pass < 0.5 == lower_block.t_block and lower_block.tier_pass == TIER_PASS
    assert lower_block.version == "what-if"
    one_tier = with_thresholds(policy, ["severe", "minor"], tier_pass={"severe": 0.001})
    assert one_tier.tier_pass == {"severe": 0.001, "minor": 0.05} and one_tier.t_pass == policy.t_pass
    with pytest.raises(ValueError, match="^tier_pass: unknown tiers"):
        with_thresholds(policy, ["severe", "minor"], tier_pass={"gone": 0.1})
    with pytest.raises(ValueError, match="^tier_pass: .*not tiered"):
        with_thresholds(policy, [], tier_pass={"severe": 0.1})
    untiered = _tiered_policy(t_pass=0.6, t_block=0.99, tier_pass={})
    with pytest.raises(ValueError, match="^t_block: t_pass 0.6 must be below t_block 0.5"):
        with_thresholds(untiered, [], t_block=0.5)  # an untiered pair is never moved for the person
    assert parse_tier_threshold("severe:0.004") == ("severe", 0.004)
    for bad in ("severe", "sev ere:0.1", "severe:x", "severe:1", "severe:nan", ":0.1"):
        with pytest.raises(ValueError):
            parse_tier_threshold(bad)
