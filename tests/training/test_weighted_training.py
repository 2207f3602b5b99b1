"""Training on logged labels: audit-sampled rows weighted by 1 / inclusion_prob in fitting, calibration
and certification; bad inclusion probabilities refused by name."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from decision.audit import AuditPlan, draw_audits, inclusion_probabilities, pass_margin
from decision.policy import route
from features.config import DataConfig
from features.validate import DataValidationError, validate_history
from training.pipeline import TrainOptions, train


def _logged_export(generated_dir: Path, seed: int = 0) -> pd.DataFrame:
    """The built-in history, its newest 40% replayed as if a deployed policy had decided it: only
    reviewed rows and audited automated ones keep their label, with their inclusion probability."""
    reviews = pd.read_parquet(generated_dir / "reviews.parquet")
    oracle = pd.read_parquet(generated_dir / "oracle.parquet")
    risk = reviews[["listing_id"]].merge(oracle, on="listing_id", how="left")["limit_risk"].to_numpy()
    rng = np.random.default_rng(seed)
    old = np.clip(risk * np.exp(rng.normal(0.0, 0.3, len(risk))), 0.0, 1.0)  # the old model: a noisy view
    order = np.argsort(pd.to_datetime(reviews["created_at"]).to_numpy(), kind="stable")
    logged = np.zeros(len(reviews), dtype=bool)
    logged[order[int(0.6 * len(order)) :]] = True
    codes = route(old, 0.02, 0.95)
    pi = inclusion_probabilities(codes, pass_margin(old, 0.02), 0.1, AuditPlan(near_rate=0.3, block_rate=0.3))
    keep = ~logged | (codes == 1) | draw_audits(codes, pi, rng)
    out = reviews.assign(inclusion_prob=np.where(logged, pi, 1.0))[keep].reset_index(drop=True)
    return out


def test_weighted_training_certifies_on_audit_weighted_rows(generated_dir: Path, tmp_path: Path) -> None:
    export = _logged_export(generated_dir)
    assert (export["inclusion_prob"] < 1).any()
    data = tmp_path / "logged.parquet"
    export.to_parquet(data, index=False)
    result = train(
        TrainOptions(
            data=data, out=tmp_path / "models", recall=0.9, tiers=False, search_trials=2, log_mlflow=False,
            show_progress=False,
        )
    )  # fmt: skip
    thresholds = result.metrics["thresholds"]
    assert result.metrics["test"]["weighted"] is True  # test figures are estimates for traffic
    assert thresholds["targets"]["weighted"] is True
    assert set(thresholds["targets"]["strata"]) >= {"1", "0.1"}
    # shares are of traffic: weighted auto-pass is larger than the share of labelled rows passed
    assert 0.0 <= thresholds["achieved"]["auto_pass_share"] <= 1.0
    if thresholds["feasible"]:
        assert thresholds["bounds"]["recall_lower"] >= 0.9


def test_inclusion_probability_outside_0_1_is_named_with_its_rows() -> None:
    config = DataConfig()
    columns: dict[str, list[Any]] = {config.id: ["a", "b", "c"], config.label: [0, 1, 0]}
    if config.timestamp:
        columns[config.timestamp] = ["2025-01-01", "2025-01-02", "2025-01-03"]
    if config.merchant:
        columns[config.merchant] = ["m"] * 3
    columns.update({c: ["x"] * 3 for c in (*config.text, *config.categorical)})
    columns.update({c: [1.0] * 3 for c in config.numeric})
    frame = pd.DataFrame({**columns, "inclusion_prob": [1.0, 0.0, None]})
    with pytest.raises(DataValidationError, match=r"inclusion_prob.*row 1"):
        validate_history(frame, config)
    ok = validate_history(frame.assign(inclusion_prob=[1.0, 0.5, None]), config)
    assert ok["inclusion_prob"].tolist() == [1.0, 0.5, 1.0]  # blank: a fully labelled row
