"""A fitted additive logistic model as plain numbers: what a bundle stores when the linear candidate wins.

Scores in float64 with numpy (the reference the ONNX export is tested against) and gives exact
per-feature contributions to the log-odds for reasons: contributions + `intercept` = log-odds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

LINEAR_FILE = "linear_model.json"


@dataclass(frozen=True)
class LinearModel:
    feature_names: list[str]
    numeric: list[str]
    medians: np.ndarray
    means: np.ndarray
    scales: np.ndarray
    numeric_weights: np.ndarray
    categorical: list[str]
    tables: list[np.ndarray]  # per categorical feature: weight of each code, centred on the training rows
    intercept: float

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Shape (n, n_features): each feature's share of the log-odds, relative to a typical listing."""
        X = np.asarray(X, dtype=np.float64)
        out = np.zeros((len(X), len(self.feature_names)))
        numeric, categorical = self._columns
        if numeric:
            values = X[:, numeric]
            imputed = np.where(np.isnan(values), self.medians, values)
            out[:, numeric] = (imputed - self.means) / self.scales * self.numeric_weights
        for column, table in zip(categorical, self.tables, strict=True):
            codes = np.clip(X[:, column].astype(np.int64), 0, len(table) - 1)
            out[:, column] = table[codes]
        return out

    @cached_property
    def _columns(self) -> tuple[list[int], list[int]]:
        """Positions of the numeric and categorical features, looked up once (scoring calls this per batch)."""
        index = {name: i for i, name in enumerate(self.feature_names)}
        return [index[c] for c in self.numeric], [index[c] for c in self.categorical]

    def raw_scores(self, X: np.ndarray) -> np.ndarray:
        """Probability of rejection (uncalibrated), float64."""
        logit = self.contributions(X).sum(axis=1) + self.intercept
        return 1.0 / (1.0 + np.exp(-logit))

    def save(self, path: str | Path) -> None:
        state = {
            "kind": "logistic_regression",
            "feature_names": self.feature_names,
            "numeric": self.numeric,
            "medians": self.medians.tolist(),
            "means": self.means.tolist(),
            "scales": self.scales.tolist(),
            "numeric_weights": self.numeric_weights.tolist(),
            "categorical": self.categorical,
            "tables": [t.tolist() for t in self.tables],
            "intercept": self.intercept,
        }
        Path(path).write_text(json.dumps(state))

    @classmethod
    def load(cls, path: str | Path) -> LinearModel:
        raw = json.loads(Path(path).read_text())
        array = np.asarray
        return cls(
            feature_names=list(raw["feature_names"]),
            numeric=list(raw["numeric"]),
            medians=array(raw["medians"], dtype=np.float64),
            means=array(raw["means"], dtype=np.float64),
            scales=array(raw["scales"], dtype=np.float64),
            numeric_weights=array(raw["numeric_weights"], dtype=np.float64),
            categorical=list(raw["categorical"]),
            tables=[array(t, dtype=np.float64) for t in raw["tables"]],
            intercept=float(raw["intercept"]),
        )

    def importance(self) -> dict[str, float]:
        """Spread of each feature's contribution (weight x its standard deviation, or table range)."""
        spread = dict(zip(self.numeric, np.abs(self.numeric_weights), strict=True))
        spread.update(
            {c: float(np.ptp(t)) if len(t) else 0.0 for c, t in zip(self.categorical, self.tables, strict=True)}
        )
        return {name: float(spread.get(name, 0.0)) for name in self.feature_names}
