"""Per-tier risk: one binary model per violation tier (tier-k violation vs everything else), each with
its own calibrator fitted on the calibration split.

One model per tier rather than one multiclass model: each tier's guarantee needs only that tier's
risk to rank its own violations well and be calibrated on its own, and a binary model per tier reuses
the whole single-model path (model selection's winner and hyperparameters, ONNX export, parity, the
calibrator) unchanged. A tier with too few violations to learn from (fewer than
MIN_TRAIN_VIOLATIONS in the training part) takes the overall model as its score, recalibrated on its
own labels: P(tier-k violation) <= P(any violation), so the overall risk ranks it conservatively.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.calibration import Calibrator, fit_calibrator
from training.train import FittedModel, LgbmParams, fit_model

MIN_TRAIN_VIOLATIONS = 30


@dataclass
class TierModel:
    name: str
    model: FittedModel  # the tier's own model, or the overall model (`own` False)
    own: bool
    calibrator: Calibrator
    train_violations: int


def fit_tier_models(
    tier_names: list[str],
    overall: FittedModel,
    kind: str,
    params: LgbmParams | None,
    X_train: pd.DataFrame,
    tiers_train: np.ndarray,
    X_cal: pd.DataFrame,
    tiers_cal: np.ndarray,
    categorical: list[str],
    seed: int = 0,
) -> list[TierModel]:
    """A calibrated model per tier (training part for the model, calibration split for the calibrator)."""
    out = []
    for name in tier_names:
        y_train = (tiers_train == name).astype(np.int64)
        n = int(y_train.sum())
        own = MIN_TRAIN_VIOLATIONS <= n < len(y_train)
        model = fit_model(kind, X_train, y_train, categorical, seed=seed, params=params) if own else overall
        y_cal = (tiers_cal == name).astype(np.int64)
        out.append(TierModel(name, model, own, fit_calibrator(model.predict(X_cal), y_cal), n))
    return out


def tier_risk(models: list[TierModel], X: pd.DataFrame) -> np.ndarray:
    """Calibrated risk per tier, (n, K) in the models' order."""
    return np.column_stack([m.calibrator(m.model.predict(X)) for m in models])
