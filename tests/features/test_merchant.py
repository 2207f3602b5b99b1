"""Point-in-time merchant history: a listing never sees an outcome reviewed at or after its creation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.config import DataConfig
from features.merchant import (
    MERCHANT_FEATURES,
    PRIOR_STRENGTH,
    SnapshotLookup,
    merchant_from_snapshot,
    merchant_history,
    merchant_snapshot,
)

CONFIG = DataConfig()
START = pd.Timestamp("2024-01-01")


def outcomes(n: int, seed: int) -> pd.DataFrame:
    """Times on a coarse minute grid, so many review times tie exactly with listing creation times."""
    rng = np.random.default_rng(seed)
    created = START + pd.to_timedelta(rng.integers(0, 400, n), unit="min")
    return pd.DataFrame(
        {
            "listing_id": [f"O{i}" for i in range(n)],
            "merchant_id": rng.choice(["A", "B", "C", "D", "E"], n),
            "created_at": created,
            "reviewed_at": created + pd.to_timedelta(rng.integers(0, 120, n), unit="min"),
            "label": (rng.random(n) < 0.3).astype(np.int8),
        }
    )


def listings(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "listing_id": [f"Q{i}" for i in range(n)],
            "merchant_id": rng.choice(["A", "B", "C", "D", "E", "NEW"], n),
            "created_at": START + pd.to_timedelta(rng.integers(0, 520, n), unit="min"),
        },
        index=rng.permutation(n) + 1000,
    )  # an arbitrary index must be carried through


def brute_force(listing: pd.Series, events: pd.DataFrame) -> list[float]:
    known = events[events["reviewed_at"] < listing["created_at"]]
    prior = (known["label"].sum() + 1.0) / (len(known) + 2.0)
    own = known[known["merchant_id"] == listing["merchant_id"]]
    reviews, rejects = float(len(own)), float(own["label"].sum())
    rate = (rejects + PRIOR_STRENGTH * prior) / (reviews + PRIOR_STRENGTH)
    rejected_at = own.loc[own["label"] == 1, "reviewed_at"]
    days = (listing["created_at"] - rejected_at.max()) / pd.Timedelta(days=1) if len(rejected_at) else np.nan
    return [reviews, rejects, rate, days]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force_point_in_time(seed):
    events, queries = outcomes(300, seed), listings(200, seed + 100)
    got = merchant_history(queries, events, CONFIG)
    assert list(got.columns) == list(MERCHANT_FEATURES)
    assert got.index.equals(queries.index)
    expected = np.array([brute_force(row, events) for _, row in queries.iterrows()])
    np.testing.assert_allclose(got.to_numpy(), expected, rtol=1e-12, atol=1e-9, equal_nan=True)
    # the grid makes exact ties common: the test really exercises "strictly before"
    assert queries["created_at"].isin(events["reviewed_at"]).sum() > 20


def test_future_outcomes_do_not_change_features():
    events, queries = outcomes(400, 7), listings(300, 8)
    cutoff = START + pd.Timedelta(minutes=250)
    flipped = events.copy()
    future = flipped["reviewed_at"] >= cutoff
    flipped.loc[future, "label"] = 1 - flipped.loc[future, "label"]
    before = merchant_history(queries, events, CONFIG)
    after = merchant_history(queries, flipped, CONFIG)
    seen_cutoff = queries["created_at"] <= cutoff
    pd.testing.assert_frame_equal(before[seen_cutoff], after[seen_cutoff])
    assert not before[~seen_cutoff].equals(after[~seen_cutoff])  # the perturbation does matter later on


def test_a_listing_never_sees_its_own_outcome():
    events = outcomes(300, 3)
    base = merchant_history(events, events, CONFIG)
    for i in range(0, 300, 37):
        flipped = events.copy()
        flipped.loc[i, "label"] = 1 - flipped.loc[i, "label"]
        assert merchant_history(events, flipped, CONFIG).loc[i].equals(base.loc[i])


def test_snapshot_equals_point_in_time_after_the_history_ends():
    events = outcomes(300, 4)
    later = listings(50, 5)
    later["created_at"] = events["reviewed_at"].max() + pd.to_timedelta(np.arange(50) + 1, unit="h")
    snapshot = merchant_snapshot(events, CONFIG)
    assert snapshot["reviews"].sum() == len(events) and snapshot["rejects"].sum() == events["label"].sum()
    expected = merchant_history(later, events, CONFIG)
    pd.testing.assert_frame_equal(merchant_from_snapshot(later, snapshot, CONFIG), expected)
    lookup = SnapshotLookup(snapshot)
    created_us = later["created_at"].to_numpy().astype("datetime64[us]").astype(np.int64)
    for (index, row), us in zip(later.iterrows(), created_us, strict=True):
        assert list(lookup.one(row["merchant_id"], int(us))) == pytest.approx(
            expected.loc[index].tolist(), nan_ok=True, rel=0, abs=0
        )


def test_unknown_merchant_gets_the_prior():
    events = outcomes(100, 6)
    snapshot = merchant_snapshot(events, CONFIG)
    new = pd.DataFrame({"merchant_id": ["NEW"], "created_at": [pd.Timestamp("2030-01-01")]})
    row = merchant_from_snapshot(new, snapshot, CONFIG).iloc[0]
    prior = (events["label"].sum() + 1) / (len(events) + 2)
    assert row["merchant_prior_reviews"] == 0 and row["merchant_prior_rejects"] == 0
    assert row["merchant_prior_reject_rate"] == pytest.approx(prior)
    assert np.isnan(row["merchant_days_since_last_reject"])


def test_empty_history():
    queries = listings(5, 0)
    got = merchant_history(queries, outcomes(0, 0), CONFIG)
    assert (got["merchant_prior_reviews"] == 0).all()
    assert (got["merchant_prior_reject_rate"] == 0.5).all()
