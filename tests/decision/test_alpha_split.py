"""The confidence budget split planned on held-out rows (`decision.alpha_split`): what it chooses, and that
the guarantee still holds together when the split is planned on a fresh pilot each time (coverage
simulation on generated data with the pipeline's own calibrator)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from decision.alpha_split import AlphaSplit, Pilot, candidate_splits, expected_outcome, plan_split
from decision.policy import CODE_BLOCK, CODE_PASS
from decision.thresholds import choose_policy_thresholds
from decision.tiers import NO_TIER, certify_tiers, tier_alpha
from tests.decision.test_tier_coverage import (
    MINOR,
    SEVERE,
    TIERS,
    Coverage,
    allowed_failures,
    calibrated_on,
    draw_calibrated,
    draw_tiers,
    generated_population,
    reference,
)
from training.generate import REASONS

RECALLS = [t.recall for t in TIERS]


def test_the_default_split_is_the_fixed_one_and_splits_sum_to_one() -> None:
    for k in (1, 2, 3):
        tiers, block = AlphaSplit.default(k).alphas(0.05)
        assert block == pytest.approx(tier_alpha(0.05, k)[1])
        assert tiers == pytest.approx([tier_alpha(0.05, k)[0]] * k)
    for split in candidate_splits(3):
        assert split.block + sum(split.tiers) == pytest.approx(1.0)
        assert min(split.tiers) > 0
    assert AlphaSplit.from_dict(AlphaSplit(0.0, (0.3, 0.7)).to_dict(), 2) == AlphaSplit(0.0, (0.3, 0.7))
    assert AlphaSplit.from_dict(AlphaSplit(0.0, (0.3, 0.7)).to_dict(), 3) is None  # another tier count
    with pytest.raises(ValueError, match="sum to 1"):
        AlphaSplit(0.5, (0.2, 0.2))


def low_risk_pilot(n: int, rate: float, rng: np.random.Generator) -> Pilot:
    """Calibrated risks that never come near a 0.98 block: no auto-block is certifiable."""
    risk = rng.beta(0.6, 0.6 / rate - 0.6, n) * 0.9
    return Pilot.untiered(risk, rng.random(n) < risk)


def test_the_budget_goes_to_recall_when_the_pilot_supports_no_block() -> None:
    rng = np.random.default_rng(3)
    pilot = low_risk_pilot(20_000, 0.03, rng)
    # about 400 certification violations expected, 360 planned on (two Poisson sds fewer): recall 0.99
    # needs 368 at delta / 2 and 299 at delta
    plan = plan_split(pilot, [0.99], 0.98, 0.05, 15_000)
    assert plan.planned and plan.chosen.block == 0.0 and plan.chosen.tiers == (1.0,)
    assert plan.predicted.auto_block == 0.0
    assert plan.predicted_default.auto_pass == 0.0 < plan.predicted.auto_pass
    # with a pilot of clean high-risk listings the block keeps a share
    risk = np.r_[pilot.risk, np.full(3_000, 0.999)]
    rich = Pilot.untiered(risk, np.r_[pilot.label, np.ones(3_000, bool)])
    rich_plan = plan_split(rich, [0.99], 0.98, 0.05, 12_000)
    assert rich_plan.chosen.block > 0 and rich_plan.predicted.auto_block > 0.05


def test_a_plan_per_segment_thresholds_did_not_use_is_not_reported_as_planned() -> None:
    """Per-segment thresholds certify on a fixed split of their own: a planned split that moved nothing
    is recorded as the default (what `triage train` prints and metrics.json keeps), not as planned."""
    rng = np.random.default_rng(3)
    plan = plan_split(low_risk_pilot(20_000, 0.03, rng), [0.99], 0.98, 0.05, 15_000)
    risk = np.r_[rng.beta(0.4, 12.0, 8_000), rng.beta(0.8, 6.0, 8_000)]
    frame = pd.DataFrame(
        {"risk": risk, "label": rng.random(len(risk)) < risk, "market": np.repeat(["US", "DE"], 8_000)}
    )
    unsegmented = choose_policy_thresholds(frame, recall=0.9, block_precision=0.9, alpha_split=plan.chosen)
    segmented = choose_policy_thresholds(
        frame, recall=0.9, block_precision=0.9, segment_by="market", alpha_split=plan.chosen
    )
    assert plan.planned and plan.as_applied(unsegmented.targets) == plan
    assert not any("no segment has" in note for note in segmented.notes)
    applied = plan.as_applied(segmented.targets)
    assert not applied.planned and applied.chosen == AlphaSplit.default(1)
    assert applied.predicted == plan.predicted_default


def test_no_pilot_or_no_gain_keeps_the_default_split() -> None:
    assert plan_split(None, RECALLS, 0.98, 0.05, 10_000).chosen == AlphaSplit.default(2)
    rng = np.random.default_rng(4)
    few = low_risk_pilot(2_000, 0.01, rng)  # about 20 violations, scaled to 60: recall 0.99 never certifiable
    plan = plan_split(few, [0.99], 0.98, 0.05, 6_000)
    assert not plan.planned and plan.chosen == AlphaSplit.default(1)
    assert plan.predicted.auto_decided == pytest.approx(0.0, abs=1e-9)


def test_small_data_certifies_with_the_planned_split_where_the_default_cannot() -> None:
    """Recall 0.99 at 95% needs 368 violations when the block takes half of delta (0.99 ** n <= 0.025) and
    299 when recall takes it all: 340 certification violations are enough only with the planned split."""
    rng = np.random.default_rng(5)
    pilot = low_risk_pilot(20_000, 0.042, rng)  # about 3.8% violations
    risk = rng.beta(0.6, 0.6 / 0.037 - 0.6, 10_000) * 0.9
    label = np.zeros(len(risk), dtype=np.int64)
    label[rng.choice(len(risk), 340, replace=False, p=risk / risk.sum())] = 1
    frame = reference(risk, np.column_stack([risk, risk]), np.where(label == 1, SEVERE.name, NO_TIER).astype(object))
    default = choose_policy_thresholds(frame, recall=0.99, block_precision=0.98, delta=0.05)
    assert not default.feasible and "needs at least 368" in default.message
    plan = plan_split(pilot, [0.99], 0.98, 0.05, len(frame))
    planned = choose_policy_thresholds(frame, recall=0.99, block_precision=0.98, delta=0.05, alpha_split=plan.chosen)
    assert planned.feasible and planned.point.auto_pass_share > 0
    assert planned.targets["alpha_split"] == {"block": 0.0, "tiers": [1.0]}
    assert "no block-precision statement" in planned.targets["split"]
    assert any("confidence budget went to the recall targets" in note for note in planned.notes)


def test_a_split_without_a_block_share_certifies_no_block() -> None:
    rng = np.random.default_rng(6)
    risk, tier_risk = draw_calibrated(10_000, rng)
    frame = reference(risk, tier_risk, draw_tiers(tier_risk, (SEVERE.name, MINOR.name), rng))
    with_block = certify_tiers(frame, TIERS, 0.9, 0.05)
    without = certify_tiers(frame, TIERS, 0.9, 0.05, AlphaSplit(0.0, (0.5, 0.5)))
    assert with_block.block_certified and not without.block_certified and without.t_block == 1.0
    assert [t.alpha for t in without.tiers] == pytest.approx([0.025, 0.025])
    # more budget per tier never lowers a tier's threshold
    assert all(a.t_pass <= b.t_pass for a, b in zip(with_block.tiers, without.tiers, strict=True))


def test_guarantees_hold_together_with_the_split_planned_on_a_fresh_pilot() -> None:
    """80 replicates on generated data: each draws a pilot of 6,000 listings (raw scores, as the model
    selection's validation rows are) and, independently, 12,000 certification listings whose calibrators
    are fitted as the pipeline fits them; the split is planned on the pilot, then every statement is
    certified at its planned level. The joint failure rate (a tier's true recall or the true block precision
    below target, over all 40,000 listings) must stay within delta; and planning must pay: the planned
    splits auto-decide more than the default split on the same samples."""
    replicates, n_pilot, n_cert, delta, block_precision = 80, 6_000, 12_000, 0.2, 0.95
    pop = generated_population()
    n = len(pop.true_risk)
    tier_of_reason = tuple(SEVERE.name if r in SEVERE.reasons else MINOR.name for r in REASONS)
    coverage, planned, default_shares, planned_shares = Coverage.empty(), 0, [], []
    for seed in range(replicates):
        rng = np.random.default_rng(1_000 + seed)
        pilot_rows = rng.integers(0, n, n_pilot)
        pilot_tier = draw_tiers(pop.reason_risk[pilot_rows], tier_of_reason, rng)
        index = np.select([pilot_tier == SEVERE.name, pilot_tier == MINOR.name], [0, 1], -1)
        pilot = Pilot(pop.raw[pilot_rows], pilot_tier != NO_TIER, pop.raw_tier[pilot_rows], index)
        plan = plan_split(pilot, RECALLS, block_precision, delta, n_cert)
        planned += plan.planned
        sample = rng.integers(0, n, n_cert)
        tier = draw_tiers(pop.reason_risk[sample], tier_of_reason, rng)
        risk, tier_risk = calibrated_on(pop, sample, tier)
        frame = reference(risk[sample], tier_risk[sample], tier)
        choice = certify_tiers(frame, TIERS, block_precision, delta, plan.chosen)
        coverage.add(choice, risk, tier_risk, pop.true_risk, pop.true_tier_risk)
        planned_shares.append(coverage.pass_share[-1] + coverage.block_share[-1])
        default_choice = certify_tiers(frame, TIERS, block_precision, delta)
        default_shares.append(float(np.isin(default_choice.codes, (CODE_PASS, CODE_BLOCK)).mean()))
    failures = coverage.failures()
    assert failures["joint"] <= allowed_failures(replicates, delta), failures
    assert planned >= replicates // 2, "the pilot should move the split on this data"
    assert np.mean(planned_shares) > np.mean(default_shares)


def test_expected_outcome_tracks_certification_on_rows_like_the_pilot() -> None:
    """The plan's prediction for a split is close to what certifying that split on fresh rows of the same
    population gives (mean over draws): the planner ranks splits by something real."""
    rng = np.random.default_rng(9)
    population = low_risk_pilot(200_000, 0.04, rng)
    pilot_rows = rng.integers(0, population.n, 10_000)
    pilot = Pilot.untiered(population.risk[pilot_rows], population.label[pilot_rows])
    for split in (AlphaSplit.default(1), AlphaSplit(0.0, (1.0,))):
        predicted = expected_outcome(pilot, np.array([0.95]), 0.98, 0.05, split, 20_000).auto_pass
        realized = []
        for _ in range(10):
            rows = rng.integers(0, population.n, 20_000)
            frame = reference(
                population.risk[rows],
                np.column_stack([population.risk[rows]] * 2),
                np.where(population.label[rows], SEVERE.name, NO_TIER).astype(object),
            )
            result = choose_policy_thresholds(frame, recall=0.95, block_precision=0.98, delta=0.05, alpha_split=split)
            realized.append(result.point.auto_pass_share)
        assert predicted == pytest.approx(np.mean(realized), abs=0.03)
