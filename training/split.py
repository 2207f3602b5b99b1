"""Time-based split: oldest rows train, the next calibrate and pick thresholds, the newest test.

Time is the timestamp column; for a file without timestamps (`timestamp: null`, `time_order: row`) it is
the row order, oldest first."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from features.config import DataConfig

NEWEST_ROWS, FULLY_LABELLED_ROWS = "newest rows", "newest fully labelled rows"  # the rows a policy is certified on


@dataclass(frozen=True)
class TimeSplit:
    train: pd.DataFrame
    calibration: pd.DataFrame
    test: pd.DataFrame

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "calibration": len(self.calibration), "test": len(self.test)}


def split_by_time(
    df: pd.DataFrame, config: DataConfig, calibration_fraction: float = 0.2, test_fraction: float = 0.2
) -> TimeSplit:
    """Split a table sorted by creation time into train / calibration / test, never at random.

    Cut points fall on timestamps, so rows created at the same instant land in the same part. Without
    a timestamp column the cut points are row positions.
    """
    check_fractions(calibration_fraction, test_fraction)
    if config.timestamp is None:
        return _split_by_row_order(df, calibration_fraction, test_fraction)
    created = df[config.timestamp]
    if not created.is_monotonic_increasing:
        df = df.sort_values(config.timestamp, kind="stable").reset_index(drop=True)
        created = df[config.timestamp]
    cal_start, test_start = time_cuts(created, calibration_fraction, test_fraction)
    train = df[created < cal_start]
    calibration = df[(created >= cal_start) & (created < test_start)]
    test = df[created >= test_start]
    for name, part in (("train", train), ("calibration", calibration), ("test", test)):
        if part.empty:
            raise ValueError(f"time split: the {name} part is empty; the data spans too few distinct timestamps")
    return TimeSplit(train.reset_index(drop=True), calibration.reset_index(drop=True), test.reset_index(drop=True))


def check_fractions(calibration_fraction: float, test_fraction: float) -> None:
    if not 0 < calibration_fraction < 1 or not 0 < test_fraction < 1 or calibration_fraction + test_fraction >= 1:
        raise ValueError("calibration_fraction and test_fraction must be in (0, 1) and sum to less than 1")


def time_cuts(created: pd.Series, calibration_fraction: float, test_fraction: float) -> tuple[Any, Any]:
    """The first creation times of the calibration and the test part, from the sorted creation times:
    all a cluster needs to split each partition as `split_by_time` splits the whole table."""
    n = len(created)
    cal_start = created.iloc[int(n * (1 - calibration_fraction - test_fraction))]
    test_start = created.iloc[int(n * (1 - test_fraction))]
    return cal_start, test_start


def _split_by_row_order(df: pd.DataFrame, calibration_fraction: float, test_fraction: float) -> TimeSplit:
    n = len(df)
    cal_start, test_start = int(n * (1 - calibration_fraction - test_fraction)), int(n * (1 - test_fraction))
    if not 0 < cal_start < test_start < n:
        raise ValueError(f"row-order split: {n} rows are too few for a train, calibration and test part")
    parts = (df.iloc[:cal_start], df.iloc[cal_start:test_start], df.iloc[test_start:])
    return TimeSplit(*(part.reset_index(drop=True) for part in parts))
