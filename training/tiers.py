"""Per-tier risk: for each violation tier, the tier's own binary model (tier-k violation vs everything
else) or the overall model, whichever needs less review at the tier's recall target on the model
selection's validation rows (`choose_tier_sources`); each with its own calibrator fitted on the
calibration split.

One model per tier rather than one multiclass model: each tier's guarantee needs only that tier's
risk to rank its own violations well and be calibrated on its own, and a binary model per tier reuses
the whole single-model path (model selection's winner and hyperparameters, ONNX export, parity, the
calibrator) unchanged. A tier with too few violations to learn from (fewer than
MIN_TRAIN_VIOLATIONS in the training part) takes the overall model as its score, recalibrated on its
own labels: P(tier-k violation) <= P(any violation), so the overall risk ranks it conservatively.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from features.calibration import Calibrator, fit_calibrator
from features.config import Tier
from training.evaluate import review_share_at_recall
from training.select import SelectionData
from training.train import FittedModel, LgbmParams, fit_model

MIN_TRAIN_VIOLATIONS = 30


@dataclass(frozen=True)
class TierSource:
    """Which model scores a tier, and the validation figures it was chosen by."""

    name: str
    own: bool
    review_share_own: float | None  # review share at the tier's recall target on validation (None: not fitted)
    review_share_overall: float
    validation_violations: int
    validation_risk: np.ndarray | None = field(default=None, repr=False, compare=False)  # of the chosen model

    def to_dict(self) -> dict[str, object]:
        return {
            "tier": self.name,
            "own_model": self.own,
            "review_share_own_model": self.review_share_own,
            "review_share_overall_model": self.review_share_overall,
            "validation_violations": self.validation_violations,
        }


def choose_tier_sources(
    data: SelectionData,
    columns: list[str],
    kind: str,
    params: LgbmParams | None,
    tiers: tuple[Tier, ...],
    tiers_fit: np.ndarray,
    tiers_valid: np.ndarray,
    seed: int = 0,
) -> list[TierSource]:
    """Per tier, its own model or the overall one: fitted on the selection's inner fit part, compared on
    its validation part by the review share needed to reach the tier's recall target on the tier's own
    violations (no test or calibration row is looked at). Ties keep the overall model (one model fewer).

    The overall model learns from every violation, so where a tier's labels are few or noisy it often
    ranks that tier's violations as well as a model of the tier alone."""
    X_fit, X_valid = data.X_fit[columns], data.X_valid[columns]
    categorical = [c for c in data.categorical if c in columns]
    overall = fit_model(kind, X_fit, data.y_fit, categorical, seed=seed, params=params).predict(X_valid)
    out = []
    for tier in tiers:
        y_valid = (tiers_valid == tier.name).astype(np.int64)
        y_fit = (tiers_fit == tier.name).astype(np.int64)
        share_overall = review_share_at_recall(y_valid, overall, tier.recall) if y_valid.any() else 1.0
        share_own, own = None, None
        if y_valid.any() and MIN_TRAIN_VIOLATIONS <= y_fit.sum() < len(y_fit):
            own = fit_model(kind, X_fit, y_fit, categorical, seed=seed, params=params).predict(X_valid)
            share_own = review_share_at_recall(y_valid, own, tier.recall)
        own_chosen = share_own is not None and share_own < share_overall
        out.append(
            TierSource(
                tier.name,
                own_chosen,
                share_own,
                share_overall,
                int(y_valid.sum()),
                own if own_chosen else overall,
            )
        )
    return out


@dataclass
class TierModel:
    name: str
    model: FittedModel  # the tier's own model, or the overall model (`own` False)
    own: bool
    calibrator: Calibrator
    train_violations: int


def fit_tier_models(
    tier_names: list[str],
    own_model: dict[str, bool],
    overall: FittedModel,
    kind: str,
    params: LgbmParams | None,
    X_train: pd.DataFrame,
    tiers_train: np.ndarray,
    X_cal: pd.DataFrame,
    tiers_cal: np.ndarray,
    categorical: list[str],
    seed: int = 0,
    weight_train: np.ndarray | None = None,
    weight_cal: np.ndarray | None = None,
) -> list[TierModel]:
    """A calibrated model per tier (training part for the model, calibration split for the calibrator;
    rows weighted by inverse inclusion probabilities when given)."""

    def fit_own(name: str) -> FittedModel:
        y_train = (tiers_train == name).astype(np.int64)
        return fit_model(kind, X_train, y_train, categorical, seed=seed, params=params, weight=weight_train)

    violations = {name: int((tiers_train == name).sum()) for name in tier_names}
    return calibrated_tier_models(
        tier_names, own_model, overall, fit_own, violations, len(tiers_train), X_cal, tiers_cal, weight_cal
    )


def calibrated_tier_models(
    tier_names: list[str],
    own_model: dict[str, bool],
    overall: FittedModel,
    fit_own: Callable[[str], FittedModel],
    train_violations: dict[str, int],
    train_rows: int,
    X_cal: pd.DataFrame,
    tiers_cal: np.ndarray,
    weight_cal: np.ndarray | None = None,
) -> list[TierModel]:
    """`fit_tier_models` with the tier's own model fitted by `fit_own(tier name)` (wherever the
    training rows are) from `train_violations` of `train_rows`."""
    out = []
    for name in tier_names:
        n = train_violations.get(name, 0)
        own = own_model.get(name, True) and MIN_TRAIN_VIOLATIONS <= n < train_rows
        model = fit_own(name) if own else overall
        y_cal = (tiers_cal == name).astype(np.int64)
        out.append(TierModel(name, model, own, fit_calibrator(model.predict(X_cal), y_cal, weight_cal), n))
    return out


def tier_risk(models: list[TierModel], X: pd.DataFrame) -> np.ndarray:
    """Calibrated risk per tier, (n, K) in the models' order."""
    return np.column_stack([m.calibrator(m.model.predict(X)) for m in models])
