"""Outcomes counted in merchant history besides the training rows (`TrainOptions.merchant_outcomes`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.config import load_config
from features.validate import validate_history
from training.generate import generate
from training.pipeline import TrainOptions, merchant_outcomes, train


def test_gate_verdicts_join_the_training_rows_once_each(tmp_path: Path) -> None:
    config = load_config(None)
    reviews, _ = generate(600, seed=4)
    table = validate_history(reviews.head(400), config)
    extra = reviews.iloc[350:]  # 50 listings in both, 200 only in the gate's verdicts
    extra.to_parquet(tmp_path / "gate.parquet")
    known = merchant_outcomes(table, tmp_path / "gate.parquet", config)
    assert len(known) == 600 and known["listing_id"].is_unique
    both = known.set_index("listing_id").loc[table["listing_id"].iloc[350:]]
    pd.testing.assert_frame_equal(both.reset_index(), table.iloc[350:].reset_index(drop=True), check_like=True)
    assert merchant_outcomes(table, None, config) is table


def test_unreadable_merchant_outcomes_are_refused_naming_the_file(tmp_path: Path) -> None:
    config = load_config(None)
    reviews, _ = generate(200, seed=4)
    table = validate_history(reviews, config)
    reviews.drop(columns=["label"]).to_parquet(tmp_path / "gate.parquet")
    with pytest.raises(ValueError, match=r"merchant outcomes .*gate\.parquet.*label"):
        merchant_outcomes(table, tmp_path / "gate.parquet", config)


def test_merchant_outcomes_are_refused_with_a_cluster(tmp_path: Path) -> None:
    options = TrainOptions(data=tmp_path / "x.parquet", cluster="local:1", merchant_outcomes=tmp_path / "g.parquet")
    with pytest.raises(ValueError, match="not supported with --cluster"):
        train(options)
