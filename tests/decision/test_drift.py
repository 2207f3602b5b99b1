"""Drift: PSI equals its formula, stays under the warn line on the same distribution, and crosses the
warn and alarm lines on known shifts; routing mix and recall checks; the bundle's reference round-trips."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bundle.drift_reference import build_drift_reference, load_drift_reference, save_drift_reference
from decision.drift import (
    MIN_ROWS,
    categorical_bins,
    numeric_bins,
    overall_status,
    psi,
    recall_check,
    routing_drift,
    variable_drift,
)
from features.config import DataConfig


def test_psi_equals_the_formula() -> None:
    # 50/50 -> 60/40: 0.1 ln(0.6/0.5) + (-0.1) ln(0.4/0.5)
    assert psi([0.5, 0.5], [60, 40]) == pytest.approx(0.1 * math.log(1.2) - 0.1 * math.log(0.8))
    assert psi([0.25] * 4, [10, 10, 10, 10]) == 0.0


def test_same_distribution_is_ok_and_shifts_warn_then_alarm() -> None:
    rng = np.random.default_rng(0)
    bins = numeric_bins(rng.beta(0.5, 5, 50_000))
    assert len(bins.shares) == 11  # ten deciles and the missing bin
    same = variable_drift(bins, rng.beta(0.5, 5, 5000))
    assert same["status"] == "ok" and same["psi"] < 0.02
    # a risk distribution with more mass at the top (a new kind of violation, or a model gone stale)
    moderate = variable_drift(bins, rng.beta(0.5, 2.8, 5000))  # PSI about 0.15
    assert moderate["status"] == "warn", moderate["psi"]
    major = variable_drift(bins, rng.beta(1.0, 3, 5000))
    assert major["status"] == "alarm", major["psi"]


def test_missing_values_and_new_categories_count_as_drift() -> None:
    rng = np.random.default_rng(1)
    prices = numeric_bins(rng.lognormal(3, 1, 10_000))
    half_missing = np.where(rng.random(2000) < 0.5, np.nan, rng.lognormal(3, 1, 2000))
    assert variable_drift(prices, half_missing)["status"] == "alarm"
    as_logged = [None, "n/a", *rng.lognormal(3, 1, 998)]  # listing JSON: a null and a text count as missing
    report = variable_drift(prices, as_logged)
    assert report["status"] == "ok" and report["production_shares"][-1] == pytest.approx(0.002)
    categories = categorical_bins(rng.choice(["toys", "books", "phones"], 10_000))
    assert variable_drift(categories, list(rng.choice(["toys", "books", "phones"], 2000)))["status"] == "ok"
    shifted = list(rng.choice(["toys", "books", "phones", "crypto"], 2000))  # a category never seen
    report = variable_drift(categories, shifted)
    assert report["status"] == "alarm"
    assert report["production_shares"][categories.categories.index("__other__")] == pytest.approx(0.25, abs=0.03)


def test_too_few_rows_are_reported_not_judged() -> None:
    bins = numeric_bins(np.linspace(0, 1, 1000))
    report = variable_drift(bins, np.full(MIN_ROWS - 1, 0.99))
    assert report["psi"] > 0.25 and report["status"] == "insufficient_data"


def test_no_rows_at_all_have_no_psi() -> None:
    """Every bin empty is no distribution: `psi` would read it as a share of 1e-4 in every bin (a PSI of
    7 on an idle service)."""
    bins = numeric_bins(np.linspace(0, 1, 1000))
    none = variable_drift(bins, np.array([]))
    routing = routing_drift({"auto_pass": 0.6, "human_review": 0.35, "auto_block": 0.05}, {})
    assert none["psi"] is None and none["status"] == "insufficient_data" and none["n"] == 0
    assert routing["psi"] is None and routing["status"] == "insufficient_data"


def test_routing_mix_against_expected_split() -> None:
    expected = {"auto_pass": 0.6, "human_review": 0.35, "auto_block": 0.05}
    assert routing_drift(expected, {"auto_pass": 600, "human_review": 350, "auto_block": 50})["status"] == "ok"
    report = routing_drift(expected, {"auto_pass": 300, "human_review": 650, "auto_block": 50})
    assert report["status"] == "alarm"
    assert report["observed"]["human_review"] == pytest.approx(0.65)


def test_recall_check_and_overall_status() -> None:
    assert recall_check(0.97, 0.95, 0.99, target=0.95)["status"] == "ok"
    assert recall_check(0.94, 0.90, 0.97, target=0.95)["status"] == "warn"  # below, but not surely
    assert recall_check(0.90, 0.86, 0.93, target=0.95)["status"] == "alarm"  # surely below
    assert recall_check(float("nan"), float("nan"), float("nan"), target=0.95)["status"] == "insufficient_data"
    assert recall_check(0.9, 0.8, 0.95, target=None)["status"] == "no_reference"
    assert overall_status(["ok", "warn", "insufficient_data"]) == "warn"
    assert overall_status(["ok", "alarm", "warn"]) == "alarm"
    assert overall_status(["no_reference"]) == "ok"


def test_bundle_reference_round_trips(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    rows = pd.DataFrame(
        {
            "price": rng.lognormal(3, 1, 3000),
            "image_count": rng.integers(0, 8, 3000),
            "category": rng.choice(["toys", "books"], 3000),
            "market": rng.choice(["de", "fr"], 3000),
        }
    )
    reference = build_drift_reference(rng.random(3000), rows, DataConfig())
    assert set(reference.features) == {"price", "image_count", "category", "market"}
    save_drift_reference(tmp_path, reference)
    assert load_drift_reference(tmp_path) == reference
    assert load_drift_reference(tmp_path / "missing") is None
