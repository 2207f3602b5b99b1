"""Export: LightGBM to ONNX plus everything `features/` needs, in one bundle directory with a manifest."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import lightgbm as lgb
import onnxmltools
import pandas as pd
import yaml
from onnxmltools.convert.common.data_types import FloatTensorType

from features.builder import FeatureBuilder
from features.bundle import write_manifest
from features.calibration import Calibrator
from features.config import DataConfig
from features.policy import Policy, save_policy

ONNX_OPSET = 15


def booster_to_onnx(booster: lgb.Booster, n_features: int) -> bytes:
    onx = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        zipmap=False,
        target_opset=ONNX_OPSET,
    )
    return onx.SerializeToString()


def write_bundle(
    bundle_dir: Path,
    *,
    booster: lgb.Booster,
    builder: FeatureBuilder,
    calibrator: Calibrator,
    policy: Policy,
    config: DataConfig,
    metrics: dict[str, Any],
    reference: pd.DataFrame,
    model_card: str,
    test_scores: pd.DataFrame | None = None,
    plots_dir: Path | None = None,
) -> Path:
    """Write every bundle file and the manifest in a staging directory, then rename it into place.

    A bundle directory therefore either does not exist or is complete.
    """
    staging = bundle_dir.parent / f".{bundle_dir.name}.partial"
    staging.mkdir(parents=True, exist_ok=True)
    if plots_dir is not None and plots_dir.resolve() != (staging / "plots").resolve():
        shutil.copytree(plots_dir, staging / "plots", dirs_exist_ok=True)
    _write_files(staging, booster, builder, calibrator, policy, config, metrics, reference, model_card)
    if test_scores is not None:  # the held-out rows' scores: lets anyone recompute the test metrics
        test_scores.to_parquet(staging / "test_scores.parquet", index=False)
    write_manifest(staging, version=bundle_dir.name)
    os.rename(staging, bundle_dir)
    return bundle_dir


def _write_files(
    bundle_dir: Path,
    booster: lgb.Booster,
    builder: FeatureBuilder,
    calibrator: Calibrator,
    policy: Policy,
    config: DataConfig,
    metrics: dict[str, Any],
    reference: pd.DataFrame,
    model_card: str,
) -> None:
    (bundle_dir / "model.onnx").write_bytes(booster_to_onnx(booster, len(builder.feature_names)))
    booster.save_model(str(bundle_dir / "lightgbm.txt"))
    builder.save(bundle_dir / "feature_state")
    calibrator.save(bundle_dir / "calibrator.json")
    (bundle_dir / "data_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    (bundle_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float))
    reference.to_parquet(bundle_dir / "reference.parquet", index=False)
    (bundle_dir / "MODEL_CARD.md").write_text(model_card)
    save_policy(bundle_dir, policy)  # policy.json + policies/<version>.json


def point_latest(models_dir: Path, bundle_dir: Path) -> Path:
    """Atomically repoint `models/latest` (a symlink, plus latest.txt for tools that dislike symlinks)."""
    link = models_dir / "latest"
    tmp = models_dir / ".latest.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(bundle_dir.name)
    os.replace(tmp, link)
    text_tmp = models_dir / ".latest.txt.tmp"
    text_tmp.write_text(bundle_dir.name + "\n")
    os.replace(text_tmp, models_dir / "latest.txt")
    return link
