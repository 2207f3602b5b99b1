"""The tiers benchmark's parts: no-slack thresholds, expected recall, the comparison and the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.bench_tiers import (
    ALL,
    Scored,
    Thresholds,
    achieved,
    block_threshold_no_slack,
    compare,
    generate,
    no_slack_thresholds,
    pass_threshold_no_slack,
    rescore,
    route_scored,
    run_policy,
    validity_summary,
)
from bench.tiers_report import render
from decision.policy import CODE_BLOCK, CODE_PASS
from training.generate import REASONS

# --- thresholds with no slack ----------------------------------------------------------------------------


def test_pass_threshold_lets_exactly_the_allowed_misses_through():
    score = np.arange(100) / 100
    violating = np.ones(100, dtype=bool)
    t = pass_threshold_no_slack(score, violating, 0.99)  # one miss allowed: the lowest violation
    assert (score[violating] < t).sum() == 1
    assert (score < pass_threshold_no_slack(score, violating, 0.90)).sum() == 10


def test_pass_threshold_counts_only_the_tiers_violations_and_is_open_without_any():
    score = np.array([0.1, 0.2, 0.3, 0.4])
    violating = np.array([False, True, False, True])
    assert pass_threshold_no_slack(score, violating, 0.9) == 0.2  # 2 violations: no miss allowed
    assert pass_threshold_no_slack(score, np.zeros(4, dtype=bool), 0.99) == math.inf


def test_block_threshold_is_the_lowest_with_enough_precision():
    score = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    label = np.array([1, 1, 0, 1, 0])
    assert block_threshold_no_slack(score, label, 0.75) == 0.6  # 3 of the top 4
    assert block_threshold_no_slack(score, label, 1.0) == 0.8
    assert block_threshold_no_slack(score, np.zeros(5), 0.5) == math.inf


def test_block_threshold_never_splits_tied_scores():
    score = np.array([0.9, 0.5, 0.5, 0.1])
    label = np.array([1, 1, 0, 0])
    assert block_threshold_no_slack(score, label, 0.9) == 0.9  # blocking at 0.5 blocks both tied rows: 2/3


# --- routing and what it achieves -------------------------------------------------------------------------


def _two_tier_rows(n: int = 4000, seed: int = 0):
    rng = np.random.default_rng(seed)
    severe_risk, minor_risk = rng.beta(1, 30, n), rng.beta(1, 8, n)
    draw = rng.random(n)
    tiers = np.where(draw < severe_risk, "severe", np.where(draw < severe_risk + minor_risk, "minor", ""))
    label = (tiers != "").astype(np.int64)
    truth = Scored(severe_risk + minor_risk, {"severe": severe_risk, "minor": minor_risk})
    return truth, label, tiers.astype(object)


def test_the_limits_routing_meets_every_target_on_the_labels_it_was_fitted_to():
    truth, label, tiers = _two_tier_rows()
    targets = {"severe": 0.99, "minor": 0.90}
    thresholds = no_slack_thresholds(truth, label, tiers, targets, 0.98)
    codes = route_scored(truth, thresholds)
    out = achieved(codes, label, tiers, targets, 0.98, expected=truth)
    assert all(out["holds_labels"].values())
    assert 0 < out["auto_pass_share"] < 1
    assert out["auto_decided_share"] == pytest.approx(out["auto_pass_share"] + out["auto_block_share"])


def test_expected_recall_weighs_passed_rows_by_their_true_risk():
    truth = Scored(np.array([0.5, 0.1, 0.4]), {ALL: np.array([0.5, 0.1, 0.4])})
    codes = np.array([CODE_BLOCK, CODE_PASS, 1])
    out = achieved(codes, np.array([1, 0, 1]), np.array([ALL, "", ALL], dtype=object), {ALL: 0.95}, 0.98, truth)
    assert out["recall"][ALL] == 1.0 and out["holds_labels"] == {ALL: True, "block_precision": True}
    assert out["expected_recall"][ALL] == pytest.approx(1 - 0.1 / 1.0)  # the passed row still risks 0.1
    assert out["expected_block_precision"] == pytest.approx(0.5)
    assert out["holds_expected"] == {ALL: False, "block_precision": False}


def test_a_tier_threshold_of_zero_passes_nothing():
    truth, label, tiers = _two_tier_rows(500)
    codes = route_scored(truth, Thresholds(1.0, 1.0, {"severe": 0.0, "minor": 1.0}))
    assert not (codes == CODE_PASS).any()


# --- the comparison on a bundle's files ---------------------------------------------------------------------


def _fake_bundle(tmp_path: Path, seed: int = 0) -> tuple[Path, Path]:
    """test_scores.parquet + metrics.json of a tiered bundle and the oracle of its rows, as the pipeline
    and the generator write them (the model is the oracle plus noise)."""
    truth, label, tiers = _two_tier_rows(seed=seed)
    rng = np.random.default_rng(seed + 1)
    n = len(label)
    noisy = {k: np.clip(v * rng.lognormal(0, 0.3, n), 0, 1) for k, v in truth.tier_risk.items()}
    ids = [f"l{i}" for i in range(n)]
    test = pd.DataFrame({"listing_id": ids, "risk": noisy["severe"] + noisy["minor"], "label": label, "tier": tiers})
    test["risk_severe"], test["risk_minor"], test["baseline_risk"] = noisy["severe"], noisy["minor"], test["risk"]
    share = {r: 1 / 4 for r in REASONS if r != "other"}
    oracle = pd.DataFrame({"listing_id": ids[::-1], "true_risk": truth.risk[::-1], "limit_risk": truth.risk[::-1]})
    for kind in ("true", "limit"):
        oracle[f"{kind}_risk_other"] = truth.tier_risk["minor"][::-1]
        for reason, part in share.items():
            oracle[f"{kind}_risk_{reason}"] = truth.tier_risk["severe"][::-1] * part
    bundle = tmp_path / f"bundle{seed}"
    bundle.mkdir()
    test.to_parquet(bundle / "test_scores.parquet")
    oracle.to_parquet(tmp_path / f"oracle{seed}.parquet")
    tier_list = [{"name": "severe", "t_pass": 0.002}, {"name": "minor", "t_pass": 0.01}]
    thresholds = {"t_pass": 0.6, "t_block": 0.6, "tiers": tier_list, "feasible": True, "notes": [], "n": n}
    thresholds["n_violating"] = int(label.sum())
    for t in tier_list:
        t.update(n_violating=400, violations_needed=437, best_certifiable_recall=0.989)
    routing = {"auto_pass_share": 0.1, "auto_block_share": 0.0, "auto_decided_share": 0.1}
    metrics = {"thresholds_evaluated": thresholds, "thresholds": thresholds, "test": {"routing": routing}}
    (bundle / "metrics.json").write_text(json.dumps(metrics))
    return bundle, tmp_path / f"oracle{seed}.parquet"


def test_compare_joins_the_oracle_on_listing_id_and_scores_each_routing(tmp_path):
    result = compare(*_fake_bundle(tmp_path), tiered=True)
    scorers = result["scorers"]
    assert set(scorers) == {"model_calibration", "model_shipped", "model_no_slack", "limit", "oracle"}
    assert all(scorers["model_no_slack"]["holds_labels"].values())
    assert scorers["limit"]["ratio_to_limit"] == 1.0
    # the limit is the oracle here: joined on listing_id (the oracle file is reversed), its expected
    # recall per tier is close to what its fitted thresholds give on the labels
    for tier in ("severe", "minor"):
        assert scorers["limit"]["expected_recall"][tier] == pytest.approx(scorers["limit"]["recall"][tier], abs=0.05)
    model = scorers["model_calibration"]
    assert model["thresholds"]["tier_pass"] == {"severe": 0.002, "minor": 0.01}
    assert model["ratio_to_limit"] == pytest.approx(
        model["auto_decided_share"] / scorers["limit"]["auto_decided_share"]
    )


def test_validity_summary_and_the_report(tmp_path):
    runs = []
    for seed in (0, 1):
        run = compare(*_fake_bundle(tmp_path, seed), tiered=True)
        run.update(seed=seed, rows=4000, search_trials=1, train_seconds=1.0)
        runs.append(run)
    summary = validity_summary(runs)
    assert summary["feasible_seeds"] == 2 and summary["seeds"] == [0, 1]
    held = [all(r["scorers"]["model_calibration"]["holds_expected"].values()) for r in runs]
    assert summary["share_all_hold_expected"] == pytest.approx(np.mean(held))
    text = render(
        {"meta": {"command": "c", "machine": "m"}, "tiered": runs, "validity": runs, "validity_summary": summary}
    )
    assert "limit (limit_risk), no slack" in text and "auto-decided" in text
    assert "every certified target holds, judged by the oracle's expectation" in text


def test_rescore_compares_the_kept_bundles_again_and_keeps_the_runs_facts(tmp_path):
    bundle, oracle = _fake_bundle(tmp_path)
    stale = {"bundle": str(bundle), "oracle": str(oracle), "seed": 3, "train_seconds": 9.0, "scorers": {}}
    results = rescore({"tiered": [stale], "validity": [], "single": []})
    run = results["tiered"][0]
    assert run["seed"] == 3 and run["train_seconds"] == 9.0
    assert run["scorers"] == compare(bundle, oracle, tiered=True)["scorers"]


# --- the real pipeline, tiny ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_one_tiny_run_end_to_end(tmp_path):
    """Generator + training + the bundle's files as the benchmark reads them (so the benchmark cannot rot)."""
    data_dir = generate(6000, 5, tmp_path)
    result = run_policy(data_dir, 5, True, 1, tmp_path / "models")
    assert result["rows"] == 6000 and result["test_rows"] > 0
    assert set(result["test_violations"]) == {"severe", "minor"}
    for scorer in result["scorers"].values():
        assert 0.0 <= scorer["auto_decided_share"] <= 1.0
    assert all(result["scorers"]["limit"]["holds_labels"].values())
    assert "thresholds_evaluated" in result["certification"]
