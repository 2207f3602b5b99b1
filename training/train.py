"""Model fitting: LightGBM with native categoricals, or the logistic-regression model (training/linear.py)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from bundle.linear import LinearModel
from training.linear import fit_logistic

# Below this many rows, OpenMP synchronisation costs more than a second thread gains, and on a busy
# machine it can cost ten times the work itself.
MULTITHREAD_MIN_ROWS = 100_000


# Policy, not data: more prohibited terms, health claims, risky terms in disguise or a higher text-model score
# must never make a listing look safer, even where harmless uses of the words ("ivory color") make the data
# say otherwise.
MONOTONE_INCREASING = (
    "text_score",
    "text_score_chars",
    "prohibited_hits",
    "health_claim_hits",
    "disguised_term_hits",
)


@dataclass(frozen=True)
class LgbmParams:
    learning_rate: float = 0.06
    num_leaves: int = 63
    min_child_samples: int = 40
    max_rounds: int = 600
    early_stopping_rounds: int = 40
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    cat_smooth: float = 10.0
    num_threads: int = 0  # 0 = one thread below MULTITHREAD_MIN_ROWS rows, else every core
    extra: dict[str, Any] = field(default_factory=dict)

    def to_lightgbm(self, seed: int) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_child_samples": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1,
            "lambda_l2": self.lambda_l2,
            "cat_smooth": self.cat_smooth,
            "num_threads": self.num_threads,
            "seed": seed,
            "deterministic": True,
            "force_row_wise": True,
            "verbosity": -1,
            **self.extra,
        }


def fit_lightgbm(
    X: pd.DataFrame,
    y: np.ndarray,
    categorical: list[str],
    seed: int = 0,
    params: LgbmParams | None = None,
    validation_fraction: float = 0.1,
    weight: np.ndarray | None = None,
) -> lgb.Booster:
    """Fit a binary LightGBM booster; the newest `validation_fraction` of rows (by order) drive early stopping.

    Rows are expected in time order, so early stopping, like everything else, looks at the future.
    `weight`: per-row weights (inverse inclusion probabilities of audit-sampled labels), also on the
    early-stopping rows.
    """
    params = params or LgbmParams()
    if params.num_threads == 0:
        params = replace(params, num_threads=1 if len(X) < MULTITHREAD_MIN_ROWS else (os.cpu_count() or 1))
    n_valid = max(1, int(len(X) * validation_fraction))
    fit_X, valid_X = X.iloc[:-n_valid], X.iloc[-n_valid:]
    fit_y, valid_y = y[:-n_valid], y[-n_valid:]
    lgb_params = params.to_lightgbm(seed)
    lgb_params["monotone_constraints"] = [1 if c in MONOTONE_INCREASING else 0 for c in X.columns]
    fit_w, valid_w = (None, None) if weight is None else (weight[:-n_valid], weight[-n_valid:])
    train_set = lgb.Dataset(fit_X, fit_y, weight=fit_w, categorical_feature=categorical, free_raw_data=True)
    valid_set = lgb.Dataset(valid_X, valid_y, weight=valid_w, categorical_feature=categorical, reference=train_set)
    booster = lgb.train(
        lgb_params,
        train_set,
        num_boost_round=params.max_rounds,
        valid_sets=[valid_set],
        callbacks=[lgb.early_stopping(params.early_stopping_rounds, verbose=False)],
    )
    rounds = booster.best_iteration if booster.best_iteration > 0 else None
    return float32_thresholds(booster.model_to_string(num_iteration=rounds))


def float32_thresholds(model_str: str) -> lgb.Booster:
    """Round every split threshold down to the nearest float32.

    Features are float32 and the ONNX runtime compares them with float32 thresholds. For a float32
    value v and a double threshold t, `v <= t` holds exactly when `v <= float32_down(t)`, so this changes
    no decision of the model on float32 inputs, and the ONNX export and the native model then agree
    bit for bit instead of disagreeing for values that fall between t and float32(t).
    """
    # tree_sizes gives each tree's byte length, which the rewrite changes; without it LightGBM parses
    # the trees one after another.
    lines = [line for line in model_str.split("\n") if not line.startswith("tree_sizes=")]
    for i, line in enumerate(lines):
        if line.startswith("threshold="):
            t = np.array(line[len("threshold=") :].split(), dtype=np.float64)
            t32 = t.astype(np.float32)
            over = t32.astype(np.float64) > t
            t32[over] = np.nextafter(t32[over], np.float32(-np.inf))
            lines[i] = "threshold=" + " ".join(repr(float(v)) for v in t32.astype(np.float64))
    return lgb.Booster(model_str="\n".join(lines))


def predict_lightgbm(booster: lgb.Booster, X: pd.DataFrame) -> np.ndarray:
    return np.asarray(booster.predict(X), dtype=np.float64)


@dataclass
class FittedModel:
    """The model a bundle ships: a LightGBM booster or the additive logistic model."""

    kind: str  # "lightgbm" | "logistic_regression"
    booster: lgb.Booster | None = None
    linear: LinearModel | None = None

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Uncalibrated probability of rejection."""
        if self.booster is not None:
            return predict_lightgbm(self.booster, X)
        assert self.linear is not None
        return self.linear.raw_scores(X.to_numpy(dtype=np.float32))

    def importance(self) -> dict[str, float]:
        """Feature importance, largest first: split gain for LightGBM, weight x spread for the linear model."""
        if self.booster is not None:
            values = dict(
                zip(self.booster.feature_name(), self.booster.feature_importance(importance_type="gain"), strict=True)
            )
        else:
            assert self.linear is not None
            values = self.linear.importance()
        return {k: float(v) for k, v in sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))}

    @property
    def importance_kind(self) -> str:
        return "split gain" if self.booster is not None else "|weight| x feature sd (log-odds)"

    @property
    def iterations(self) -> int | None:
        return int(self.booster.current_iteration()) if self.booster is not None else None


def fit_model(
    kind: str,
    X: pd.DataFrame,
    y: np.ndarray,
    categorical: list[str],
    seed: int = 0,
    params: LgbmParams | None = None,
    weight: np.ndarray | None = None,
) -> FittedModel:
    """Fit the model of `kind`; `weight` (None: every row counts once) weighs the rows' losses."""
    if kind == "lightgbm":
        return FittedModel(kind, booster=fit_lightgbm(X, y, categorical, seed=seed, params=params, weight=weight))
    return FittedModel(kind, linear=fit_logistic(X, y, categorical, seed=seed, weight=weight))
