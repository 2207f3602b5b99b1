"""The tier-gap diagnostic on the session's bundle and its generated data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.bench_tiers import joined_test_split
from bench.tier_gap import markdown, minor_auc_by_history, prior_listings, tier_alone

pytestmark = pytest.mark.slow


def test_each_tier_alone_and_the_minor_tier_by_merchant_history(bundle_dir: Path, generated_dir: Path) -> None:
    rows = joined_test_split(bundle_dir, generated_dir / "oracle.parquet")
    alone = tier_alone(rows).set_index("tier")
    assert list(alone.index) == ["severe", "minor"]
    assert ((alone[["model", "limit"]] >= 0) & (alone[["model", "limit"]] <= 1)).all().all()
    # with no slack the limit passes at least as much as it must keep: its share is a real fraction of rows
    assert (alone["limit"] > 0).all() and (alone["violations"] > 0).all()

    reviews = pd.read_parquet(generated_dir / "reviews.parquet", columns=["listing_id", "merchant_id", "created_at"])
    prior = prior_listings(rows, reviews)
    assert len(prior) == len(rows) and np.all(prior >= 0)
    # the first listing of each merchant in the whole history has no earlier one
    first = reviews.sort_values("created_at", kind="stable").drop_duplicates("merchant_id")["listing_id"]
    assert (prior[rows["listing_id"].isin(first).to_numpy()] == 0).all()
    table = minor_auc_by_history(rows, prior)
    assert table["rows"].sum() <= len(rows) and len(table) >= 2
    assert table[["AUC model", "AUC limit", "AUC oracle"]].stack().between(0, 1).all()
    assert markdown(table).count("\n") == len(table) + 1
