"""Live merchant history: a snapshot plus outcomes added since gives exactly the point-in-time features
`merchant_history` computes over the snapshot's outcomes and the new ones together."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.config import DataConfig
from features.merchant import (
    MerchantUpdates,
    SnapshotLookup,
    merchant_history,
    merchant_snapshot,
    snapshot_cutoff_us,
    to_microseconds,
)
from tests.features.test_merchant import outcomes

CONFIG = DataConfig()


def new_verdicts(n: int, after: pd.Timestamp, seed: int) -> pd.DataFrame:
    """Outcomes reviewed after the snapshot, on a minute grid; merchant F is unknown to the snapshot."""
    rng = np.random.default_rng(seed)
    reviewed = after + pd.to_timedelta(rng.integers(30, 300, n), unit="min")
    return pd.DataFrame(
        {
            "listing_id": [f"V{i}" for i in range(n)],
            "merchant_id": rng.choice(["A", "B", "F"], n),
            "created_at": reviewed - pd.Timedelta(hours=1),
            "reviewed_at": reviewed,
            "label": (rng.random(n) < 0.5).astype(np.int8),
        }
    )


def later_listings(n: int, after: pd.Timestamp, seed: int) -> pd.DataFrame:
    """Listings created after the snapshot, before, between and after the new verdicts (ties included);
    merchant NEW is in neither the snapshot nor the verdicts."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "listing_id": [f"Q{i}" for i in range(n)],
            "merchant_id": rng.choice(["A", "B", "C", "F", "NEW"], n),
            "created_at": after + pd.to_timedelta(rng.integers(1, 330, n), unit="min"),
        },
        index=rng.permutation(n) + 500,
    )


def add_all(updates: MerchantUpdates, verdicts: pd.DataFrame, order: np.ndarray) -> None:
    reviewed_us = to_microseconds(verdicts["reviewed_at"])
    for i in order:
        row = verdicts.iloc[i]
        assert updates.add(row["listing_id"], row["merchant_id"], int(reviewed_us[i]), bool(row["label"]))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_snapshot_plus_updates_equals_point_in_time_history(seed: int) -> None:
    old = outcomes(300, seed)
    snapshot = merchant_snapshot(old, CONFIG)
    cutoff = old["reviewed_at"].max()
    verdicts = new_verdicts(80, cutoff, seed + 10)
    queries = later_listings(400, cutoff, seed + 20)
    updates = MerchantUpdates(snapshot_cutoff_us(snapshot))
    add_all(updates, verdicts, np.random.default_rng(seed).permutation(len(verdicts)))  # arrival order != time order
    lookup = SnapshotLookup(snapshot, updates=updates)

    expected = merchant_history(queries, pd.concat([old, verdicts], ignore_index=True), CONFIG)
    created_us = to_microseconds(queries["created_at"]).tolist()
    many = lookup.many(queries["merchant_id"].tolist(), created_us)
    np.testing.assert_array_equal(many, expected.to_numpy())
    pd.testing.assert_frame_equal(lookup.frame(queries, CONFIG), expected)

    # the cases the parity must cover are really there
    assert snapshot_cutoff_us(snapshot) == to_microseconds(pd.Series([cutoff]))[0]
    assert queries["created_at"].isin(verdicts["reviewed_at"]).sum() > 20  # ties: "strictly before"
    f_rows = (queries["merchant_id"] == "F").to_numpy()
    f_reviews = expected["merchant_prior_reviews"].to_numpy()[f_rows]
    assert (f_reviews == 0).any() and (f_reviews > 0).any()  # unknown at training: before and after verdicts
    assert expected["merchant_prior_reject_rate"].nunique() > 50  # the global prior moves with the verdicts


def test_a_verdict_counts_only_for_listings_created_after_it() -> None:
    old = outcomes(50, 9)
    snapshot = merchant_snapshot(old, CONFIG)
    updates = MerchantUpdates(snapshot_cutoff_us(snapshot))
    lookup = SnapshotLookup(snapshot, updates=updates)
    at = int(to_microseconds(pd.Series([old["reviewed_at"].max() + pd.Timedelta(days=1)]))[0])
    before = lookup.many(["A", "A", "A"], [at - 1, at, at + 1])
    assert updates.add("d1", "A", at, rejected=True)
    after = lookup.many(["A", "A", "A"], [at - 1, at, at + 1])

    np.testing.assert_array_equal(after[:2], before[:2])  # created before or at the review time: unchanged
    assert after[2, 0] == before[2, 0] + 1 and after[2, 1] == before[2, 1] + 1
    assert after[2, 3] == pytest.approx(1e-6 / 86_400)  # rejected one microsecond before
    other_before, other_after = lookup.many(["B"], [at + 1]), None
    assert updates.add("d2", "C", at + 5, rejected=False)
    other_after = lookup.many(["B"], [at + 10])
    # another merchant's verdicts move only the global prior: B's own counts stay
    assert other_after[0, 0] == other_before[0, 0] and other_after[0, 2] != other_before[0, 2]


def test_outcomes_already_in_the_snapshot_or_seen_before_are_ignored() -> None:
    old = outcomes(50, 11)
    snapshot = merchant_snapshot(old, CONFIG)
    cutoff = snapshot_cutoff_us(snapshot)
    updates = MerchantUpdates(cutoff)
    assert not updates.add("old", "A", cutoff, rejected=True)  # reviewed at the cutoff: in the snapshot
    assert updates.add("new", "A", cutoff + 1, rejected=True)
    assert not updates.add("new", "A", cutoff + 1, rejected=True)  # a refresh reading it again
    assert len(updates) == 1
    counted = updates.counts(["A", "Z"], [cutoff + 2, cutoff + 2])
    assert counted.reviews.tolist() == [1, 0] and counted.global_reviews.tolist() == [1, 1]


def test_a_snapshot_without_review_times_uses_its_latest_rejection_as_cutoff() -> None:
    old = outcomes(60, 12)
    snapshot = merchant_snapshot(old, CONFIG)
    legacy = snapshot.drop(columns="last_review_at")
    rejected = old.loc[old["label"] == 1, "reviewed_at"].max()
    assert snapshot_cutoff_us(legacy) == to_microseconds(pd.Series([rejected]))[0]
    assert snapshot_cutoff_us(snapshot.iloc[:0]) < -(2**62)  # empty: every outcome is an update
