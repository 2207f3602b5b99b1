"""`triage train`: validated data -> time split -> features -> LightGBM + baseline -> calibration ->
thresholds -> evaluation -> bundle -> MLflow. Each stage lives in its own module; this file only wires them."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from decision.policy import Policy
from decision.rules import match_rules
from decision.thresholds import choose_policy_thresholds, default_rules
from features.builder import FeatureBuilder
from features.calibration import fit_calibrator
from features.config import DataConfig, load_config
from features.validate import load_table, validate_history
from training.evaluate import evaluate_scores, ranking_metrics
from training.export import point_latest, write_bundle
from training.model_card import render_model_card
from training.split import split_by_time
from training.train import LgbmParams, fit_baseline, fit_lightgbm, predict_baseline, predict_lightgbm

log = logging.getLogger(__name__)


@dataclass
class TrainOptions:
    data: Path
    config: Path | None = None
    out: Path = Path("models")
    seed: int = 0
    calibration_fraction: float = 0.2
    test_fraction: float = 0.2
    recall: float = 0.99
    block_precision: float = 0.98
    confidence: float = 0.95
    segment_by: str | None = None
    log_mlflow: bool = True
    show_progress: bool = True
    lgbm: LgbmParams = field(default_factory=LgbmParams)


@dataclass
class TrainResult:
    bundle_dir: Path
    metrics: dict[str, Any]
    mlflow: dict[str, str] | None


@contextmanager
def _stages(show: bool) -> Iterator[Any]:
    if not show:
        yield lambda name: _null_stage()
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), transient=False) as bar:

        @contextmanager
        def stage(name: str) -> Iterator[None]:
            task = bar.add_task(name, total=1)
            yield
            bar.update(task, completed=1, description=f"[green]✓[/] {name}")

        yield stage


@contextmanager
def _null_stage() -> Iterator[None]:
    yield


def _new_version(out: Path) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    version, n = stamp, 1
    while (out / version).exists():
        n += 1
        version = f"{stamp}-{n}"
    return version


def _reference(part: pd.DataFrame, risk: np.ndarray, config: DataConfig) -> pd.DataFrame:
    """Calibration-split rows as the simulator replays them: risk, label, handling time, segments."""
    ref = pd.DataFrame(
        {
            "listing_id": part[config.id].astype(str).to_numpy(),
            "risk": risk,
            "label": part[config.label].to_numpy(dtype=np.int64),
        }
    )
    seconds = part[config.review_seconds] if config.review_seconds and config.review_seconds in part else None
    ref["review_seconds"] = seconds.to_numpy(dtype=np.float64) if seconds is not None else np.nan
    for column in config.segments:
        ref[column] = part[column].astype(str).to_numpy()
    ref["created_at"] = part[config.timestamp].to_numpy()
    return ref


def train(options: TrainOptions) -> TrainResult:
    config = load_config(options.config)
    with _stages(options.show_progress) as stage:
        with stage("load and validate data"):
            raw = load_table(options.data, config)
            table = validate_history(raw, config)
            # the MLflow signature takes the export's own column types, as callers will send them
            example = raw[config.listing_columns].tail(5).reset_index(drop=True)
            del raw
        with stage("split by time"):
            parts = split_by_time(table, config, options.calibration_fraction, options.test_fraction)
        with stage(f"build features ({len(table):,} rows)"):
            builder = FeatureBuilder(config, seed=options.seed)
            X_train = builder.fit_transform(parts.train, history=table)
            X_cal = builder.transform(parts.calibration, history=table)
            X_test = builder.transform(parts.test, history=table)
        y_train, y_cal, y_test = (
            p[config.label].to_numpy(dtype=np.int64) for p in (parts.train, parts.calibration, parts.test)
        )
        categorical = list(builder.categorical_features)
        with stage("fit LightGBM"):
            booster = fit_lightgbm(X_train, y_train, categorical, seed=options.seed, params=options.lgbm)
        with stage("fit logistic-regression baseline"):
            baseline = fit_baseline(X_train, y_train, categorical, seed=options.seed)
        with stage("calibrate on the calibration split"):
            raw_cal = predict_lightgbm(booster, X_cal)
            calibrator = fit_calibrator(raw_cal, y_cal)
            reference = _reference(parts.calibration, calibrator(raw_cal), config)
        with stage("choose thresholds"):
            thresholds = choose_policy_thresholds(
                reference,
                recall=options.recall,
                block_precision=options.block_precision,
                delta=1 - options.confidence,
                segment_by=options.segment_by,
            )
            policy = thresholds.to_policy(rules=default_rules(config))
        with stage("evaluate on the test split"):
            test_frame = _reference(parts.test, calibrator(predict_lightgbm(booster, X_test)), config)
            baseline_risk = predict_baseline(baseline, X_test)
            test_frame["baseline_risk"] = baseline_risk
            rule_block, rule_review, _ = match_rules(parts.test, policy.rules)
            metrics = _metrics(
                parts.sizes(),
                test_frame,
                (rule_block, rule_review),
                policy,
                config,
                thresholds,
                baseline_risk=baseline_risk,
                booster=booster,
            )
        with stage("export bundle"):
            options.out.mkdir(parents=True, exist_ok=True)
            bundle_dir = options.out / _new_version(options.out)
            write_bundle(
                bundle_dir,
                booster=booster,
                builder=builder,
                calibrator=calibrator,
                policy=policy,
                config=config,
                metrics=metrics,
                reference=reference,
                test_scores=test_frame,
                model_card=render_model_card(bundle_dir.name, metrics, policy, options),
            )
            point_latest(options.out, bundle_dir)
        mlflow_info = None
        if options.log_mlflow:
            with stage("log run to MLflow and register the model"):
                mlflow_info = _log_mlflow(bundle_dir, options, metrics, example)
    return TrainResult(bundle_dir=bundle_dir, metrics=metrics, mlflow=mlflow_info)


def _metrics(
    sizes: dict[str, int],
    test_frame: pd.DataFrame,
    rule_masks: tuple[np.ndarray, np.ndarray],
    policy: Policy,
    config: DataConfig,
    thresholds: Any,
    baseline_risk: np.ndarray,
    booster: Any,
) -> dict[str, Any]:
    model = evaluate_scores(test_frame, policy, segments=config.segments, rule_masks=rule_masks)
    importance = booster.feature_importance(importance_type="gain")
    names = booster.feature_name()
    order = np.argsort(importance)[::-1]
    return {
        "split_sizes": sizes,
        "test": model,
        "baseline_test": ranking_metrics(test_frame["label"].to_numpy(), baseline_risk),
        "thresholds": thresholds.to_dict(),
        "feature_importance_gain": {names[i]: float(importance[i]) for i in order},
        "best_iteration": int(booster.current_iteration()),
    }


def _log_mlflow(
    bundle_dir: Path, options: TrainOptions, metrics: dict[str, Any], example: pd.DataFrame
) -> dict[str, str]:
    from training.registry import log_run

    params = {
        "data": str(options.data),
        "seed": options.seed,
        "calibration_fraction": options.calibration_fraction,
        "test_fraction": options.test_fraction,
        "recall_target": options.recall,
        "block_precision_target": options.block_precision,
        "confidence": options.confidence,
        **{f"lgbm.{k}": v for k, v in options.lgbm.to_lightgbm(options.seed).items()},
    }
    logged = {k: v for k, v in metrics.items() if k not in ("feature_importance_gain",)}
    return log_run(bundle_dir, params, logged, example)
