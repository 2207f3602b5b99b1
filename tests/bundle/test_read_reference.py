"""`bundle.load.read_reference`: the simulator's reference rows get, from the bundle's history, the
columns a rule may read, matched by id, and nothing else."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bundle.load import HISTORY_FILE, REFERENCE_FILE, read_reference

LISTING_COLUMNS = ["sku", "name", "tier", "risk_score", "price"]  # a shop's own `tier` and `risk_score` columns


def _bundle(tmp_path: Path, history: pd.DataFrame | None) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    reference = pd.DataFrame({"listing_id": ["3", "1", "2"], "risk": [0.3, 0.1, 0.2], "label": [1, 0, 0]})
    reference.to_parquet(tmp_path / REFERENCE_FILE)
    if history is not None:
        history.to_parquet(tmp_path / HISTORY_FILE)
    return tmp_path


def _history(**changes: list) -> pd.DataFrame:
    columns = {
        "sku": [1, 2, 3],  # not text in the file: matched as text, as the reference keeps ids
        "name": ["a", "b", "c"],
        "tier": ["gold", "gold", "silver"],
        "risk_score": [7, 8, 9],
        "price": [1.0, 2.0, 3.0],
        "product_match": ["", "repost", ""],
        "violation_reason": ["none", "none", "fake"],
        "risk": [0.1, 0.2, 0.3],
        "label": [0, 0, 1],
        "split": ["calibration", "test", "test"],
    }
    return pd.DataFrame({**columns, **changes})


def test_rule_columns_are_joined_in_reference_order_and_outcome_columns_are_not(tmp_path: Path) -> None:
    got = read_reference(_bundle(tmp_path, _history()), "sku", LISTING_COLUMNS)
    assert list(got.columns) == ["listing_id", "risk", "label", "name", "price", "product_match"]
    assert got["name"].tolist() == ["c", "a", "b"] and got["product_match"].tolist() == ["", "", "repost"]
    assert got["risk"].tolist() == [0.3, 0.1, 0.2]  # the reference's own, not history's


def test_without_a_history_that_holds_every_row_once_the_reference_is_read_alone(tmp_path: Path) -> None:
    alone = ["listing_id", "risk", "label"]
    assert list(read_reference(_bundle(tmp_path / "none", None), "sku", LISTING_COLUMNS).columns) == alone
    missing = _history().iloc[:2]
    assert list(read_reference(_bundle(tmp_path / "missing", missing), "sku", LISTING_COLUMNS).columns) == alone
    repeated = _history(sku=[1, 1, 3])
    assert list(read_reference(_bundle(tmp_path / "repeated", repeated), "sku", LISTING_COLUMNS).columns) == alone
    assert list(read_reference(_bundle(tmp_path / "other_id", _history()), "id", LISTING_COLUMNS).columns) == alone
