"""Simulator: numbers equal counting by hand, prevalence shift, the curve, policies with segments and rules."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from decision.policy import Policy
from decision.rules import Rule
from decision.simulate import prevalence_weights, simulate, simulate_policy, sweep, wilson

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
