"""Export: LightGBM to ONNX plus everything `features/` needs, in one bundle directory with a manifest."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import lightgbm as lgb
import onnxmltools
import pandas as pd
import yaml
from onnxmltools.convert.common.data_types import FloatTensorType

from bundle.manifest import write_manifest
from bundle.policies import save_policy
from decision.policy import Policy
from features.builder import FeatureBuilder
from features.calibration import Calibrator
from features.config import DataConfig
from training.evaluate import save_plots

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
    test_scores: pd.DataFrame,
    model_card: str,
) -> Path:
    """Write every bundle file and the manifest in a staging directory, then rename it into place.

    A bundle directory therefore either does not exist or is complete.
    """
    staging = bundle_dir.parent / f".{bundle_dir.name}.partial"
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "model.onnx").write_bytes(booster_to_onnx(booster, len(builder.feature_names)))
    booster.save_model(str(staging / "lightgbm.txt"))
    builder.save(staging / "feature_state")
    calibrator.save(staging / "calibrator.json")
    (staging / "data_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    (staging / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True, default=float))
    reference.to_parquet(staging / "reference.parquet", index=False)
    # the held-out rows' scores: anyone can recompute the test metrics and plots from them
    test_scores.to_parquet(staging / "test_scores.parquet", index=False)
    save_plots(test_scores, staging / "plots", segment=config.segments[0] if config.segments else None)
    (staging / "MODEL_CARD.md").write_text(model_card)
    save_policy(staging, policy)  # policy.json + policies/<version>.json
    write_manifest(staging, version=bundle_dir.name)
    os.rename(staging, bundle_dir)
    return bundle_dir


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
