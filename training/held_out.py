"""Which rows of a labelled table are a bundle's own held-out rows (`triage evaluate`).

A listing id alone does not make a row the bundle's: the built-in generator gives every seed the same
ids (L00000001, ...), and an export may reuse ids. So a row is one of the bundle's test (or calibration)
rows only when its id is there and so is what the bundle kept of that row: its creation time and label
(`test_scores.parquet` and `reference.parquet` keep both)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from bundle.load import Bundle

TEST_FILE = "test_scores.parquet"
CERTIFICATION_FILE = "reference.parquet"  # the certification rows: calibration (+ test, when certified on both)


@dataclass
class HeldOut:
    test: np.ndarray  # rows that are the bundle's test rows: id and content agree
    test_ids_only: int  # rows with a test row's id but another creation time or label
    compared: str  # what besides the id was compared, in words ("created_at or label")
    warnings_test: list[str] = field(default_factory=list)  # about the test rows (`--rows test`)
    warnings_all: list[str] = field(default_factory=list)  # about every row (`--rows all`)


def held_out_rows(bundle: Bundle, table: pd.DataFrame) -> HeldOut:
    """The bundle's test rows among `table`'s, and warnings about the rows that are not held out."""
    test_ids, test, compared = _split_rows(bundle, table, TEST_FILE)
    certification_ids, certification, _ = _split_rows(bundle, table, CERTIFICATION_FILE)
    in_calibration = certification & ~test
    other_data = (test_ids | certification_ids) & ~test & ~certification
    held = HeldOut(test, int((test_ids & ~test).sum()), compared)
    if other_data.any():
        whole = not (test | in_calibration).any()
        held.warnings_all.append(
            f"{other_data.sum():,} rows share a listing id with the bundle's held-out rows but differ in {compared}: "
            "they are not the bundle's rows"
            + (", so this is other data (not the rows it was trained or certified on)" if whole else "")
        )
        if held.test_ids_only and test.any():
            held.warnings_test.append(
                f"{held.test_ids_only:,} rows share a listing id with the bundle's test split but differ in "
                f"{compared}: left out as other data"
            )
    if bundle.metrics.get("certification", {}).get("certified_on") == "calibration+test" and test.any():
        in_sample = (
            f"the bundle's policy was certified on the calibration and test rows: its routing figures on the "
            f"{test.sum():,} test rows are in-sample (metrics.json `test.routing` has the held-out ones, at "
            "thresholds certified on the calibration split alone)"
        )
        held.warnings_test.insert(0, in_sample)
        held.warnings_all.insert(0, in_sample)
    if in_calibration.any():
        held.warnings_all.append(
            f"{in_calibration.sum():,} rows are in the calibration split: the calibrator and thresholds were "
            "fitted on them"
        )
    if not (other_data.any() and not (test | in_calibration).any()):  # other data: no row is a training row
        held.warnings_all += _training_period(bundle, table, ~test & ~in_calibration & ~other_data)
    return held


def _training_period(bundle: Bundle, table: pd.DataFrame, others: np.ndarray) -> list[str]:
    """A warning about rows neither held out nor other data that may be the bundle's training rows."""
    if not others.any():
        return []
    timestamp = bundle.config.timestamp
    if not timestamp:
        return [
            f"{others.sum():,} rows are in neither the test nor the calibration split and the data has no "
            "timestamps to tell training rows from new ones: figures on training rows overstate the model"
        ]
    calibration_start = pd.read_parquet(bundle.path / CERTIFICATION_FILE, columns=["created_at"]).min().iloc[0]
    in_training = int((others & (table[timestamp] < calibration_start).to_numpy()).sum())
    if not in_training:
        return []
    return [
        f"{in_training:,} rows were created in the training period (before {calibration_start}): figures "
        "on rows the model was fitted on overstate it"
    ]


def _split_rows(bundle: Bundle, table: pd.DataFrame, name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(rows whose id is in the bundle's split file `name`, those of them whose creation time and label
    are that row's too, the columns compared in words)."""
    config, path = bundle.config, bundle.path / name
    stored_columns = set(pq.read_schema(path).names)
    pairs = [
        (kept, column)
        for kept, column in (("created_at", config.timestamp), ("label", config.label))
        if column and kept in stored_columns and column in table
    ]
    stored = pd.read_parquet(path, columns=["listing_id", *(kept for kept, _ in pairs)])
    stored = stored.assign(listing_id=stored["listing_id"].astype(str)).drop_duplicates("listing_id")
    ids = table[config.id].astype(str)
    known = ids.isin(stored["listing_id"]).to_numpy()
    aligned = stored.set_index("listing_id").reindex(ids.to_numpy())
    same = known.copy()
    for kept, column in pairs:
        same &= aligned[kept].to_numpy() == table[column].to_numpy()
    return known, same, " or ".join(column for _, column in pairs) or "content"
