"""Time-based split: oldest rows train, the next calibrate and pick thresholds, the newest test."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from features.config import DataConfig


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

    Cut points fall on timestamps, so rows created at the same instant land in the same part.
    """
    if not 0 < calibration_fraction < 1 or not 0 < test_fraction < 1 or calibration_fraction + test_fraction >= 1:
        raise ValueError("calibration_fraction and test_fraction must be in (0, 1) and sum to less than 1")
    created = df[config.timestamp]
    if not created.is_monotonic_increasing:
        df = df.sort_values(config.timestamp, kind="stable").reset_index(drop=True)
        created = df[config.timestamp]
    n = len(df)
    cal_start = created.iloc[int(n * (1 - calibration_fraction - test_fraction))]
    test_start = created.iloc[int(n * (1 - test_fraction))]
    train = df[created < cal_start]
    calibration = df[(created >= cal_start) & (created < test_start)]
    test = df[created >= test_start]
    for name, part in (("train", train), ("calibration", calibration), ("test", test)):
        if part.empty:
            raise ValueError(f"time split: the {name} part is empty; the data spans too few distinct timestamps")
    return TimeSplit(train.reset_index(drop=True), calibration.reset_index(drop=True), test.reset_index(drop=True))
