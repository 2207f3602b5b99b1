"""Parity of the per-tier models: what the bundle computes from its exported ONNX tier models equals the
in-memory models' calibrated prediction on the same feature matrix (float32 tolerance)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from bundle.load import Bundle
from decision.tiers import tier_labels
from features.validate import load_table, validate_history
from training.export import model_to_onnx
from training.tiers import fit_tier_models, tier_risk
from training.train import LgbmParams, fit_model


@pytest.fixture(scope="module")
def bundle(bundle_dir: Path) -> Bundle:
    return Bundle.load(bundle_dir)


def test_bundle_tier_risk_equals_the_in_memory_tier_models(bundle: Bundle, generated_dir: Path) -> None:
    config = bundle.config
    table = validate_history(load_table(generated_dir / "reviews.parquet", config), config)
    rows = table.tail(9000)
    X = bundle.builder.transform(rows, history=table)
    tiers = tier_labels(rows[config.label].to_numpy(), rows[config.violation_reason].to_numpy(), config)
    train, cal, scored = slice(0, 5000), slice(5000, 7000), slice(7000, None)
    categorical = list(bundle.builder.categorical_features)
    params = LgbmParams(max_rounds=80, num_leaves=15, num_threads=1)  # small: parity, not accuracy
    y = (tiers != "").astype(np.int64)
    overall = fit_model("lightgbm", X.iloc[train], y[train], categorical, seed=0, params=params)
    models = fit_tier_models(
        config.tier_names, {}, overall, "lightgbm", params, X.iloc[train], tiers[train], X.iloc[cal], tiers[cal],
        categorical, seed=0,
    )  # fmt: skip
    exported = [
        (m.name, ort.InferenceSession(model_to_onnx(m.model, X.shape[1]), providers=["CPUExecutionProvider"]),
         m.calibrator)
        for m in models
    ]  # fmt: skip
    served = dataclasses.replace(bundle, tiers=exported)

    in_memory = tier_risk(models, X.iloc[scored])
    from_onnx = served.tier_risk(X.iloc[scored].to_numpy(dtype=np.float32))
    assert from_onnx is not None and from_onnx.shape == (len(X) - 7000, len(config.tier_names))
    np.testing.assert_allclose(from_onnx, in_memory, atol=1e-4)
    assert np.ptp(in_memory, axis=0).min() > 0.01  # the models discriminate: the comparison means something


def test_the_shipped_tier_models_give_one_calibrated_risk_per_tier(bundle: Bundle, generated_dir: Path) -> None:
    config = bundle.config
    table = validate_history(load_table(generated_dir / "reviews.parquet", config), config)
    X = bundle.features(table.tail(2000), history=table)
    risk = bundle.tier_risk(X)
    assert risk is not None and risk.shape == (2000, len(bundle.tier_names)) == (2000, 2)
    assert np.isfinite(risk).all() and (risk >= 0).all() and (risk <= 1).all()
    overall, by_tier = bundle.scores(table.tail(2000), history=table)
    np.testing.assert_allclose(by_tier, risk)  # type: ignore[arg-type]
    # each tier model ranks its own violations above the other rows
    tiers = tier_labels(table.tail(2000)[config.label].to_numpy(), table.tail(2000)[config.violation_reason], config)
    for k, name in enumerate(bundle.tier_names):
        own = tiers == name
        if own.sum() >= 5:
            assert risk[own, k].mean() > risk[~own, k].mean()
