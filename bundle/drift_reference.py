"""The drift reference a bundle carries (`reference.json`): the distribution, on the held-out test split,
of the calibrated risk and of the key listing features, binned as `decision.drift` compares them with
production. Bundles exported before it existed have none: drift then reports "no reference"."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from decision.drift import Bins, bins_from_dict, categorical_bins, numeric_bins
from features.config import DataConfig

DRIFT_REFERENCE_FILE = "reference.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class DriftReference:
    n_rows: int
    risk: Bins
    features: dict[str, Bins]  # listing column -> its reference bins

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "computed_on": "test split",
            "n_rows": self.n_rows,
            "risk": self.risk.to_dict(),
            "features": {name: bins.to_dict() for name, bins in self.features.items()},
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DriftReference:
        return cls(
            n_rows=int(raw["n_rows"]),
            risk=bins_from_dict(raw["risk"]),
            features={name: bins_from_dict(bins) for name, bins in raw["features"].items()},
        )


def build_drift_reference(risk: np.ndarray, rows: pd.DataFrame, config: DataConfig) -> DriftReference:
    """Bins of the risk and of every numeric and categorical listing column the data config names (the
    columns the service logs with each listing)."""
    features: dict[str, Bins] = {}
    for column in config.numeric:
        if column in rows:
            features[column] = numeric_bins(pd.to_numeric(rows[column], errors="coerce").to_numpy(dtype=np.float64))
    for column in config.categorical:
        if column in rows:
            features[column] = categorical_bins(rows[column].to_numpy(dtype=object))
    return DriftReference(n_rows=len(rows), risk=numeric_bins(np.asarray(risk, dtype=np.float64)), features=features)


def save_drift_reference(bundle_dir: Path, reference: DriftReference) -> None:
    (bundle_dir / DRIFT_REFERENCE_FILE).write_text(json.dumps(reference.to_dict(), indent=2))


def load_drift_reference(bundle_dir: Path) -> DriftReference | None:
    """The bundle's drift reference, or None for a bundle exported without one."""
    path = bundle_dir / DRIFT_REFERENCE_FILE
    if not path.is_file():
        return None
    return DriftReference.from_dict(json.loads(path.read_text()))
