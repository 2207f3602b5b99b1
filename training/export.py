"""Export: the chosen model (LightGBM or logistic regression) to ONNX plus everything `features/` needs,
in one bundle directory with a manifest."""

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

from bundle.drift_reference import build_drift_reference, save_drift_reference
from bundle.linear import LINEAR_FILE
from bundle.load import TIERS_DIR
from bundle.manifest import signing_key_from_env, write_manifest
from bundle.policies import save_policy
from decision.policy import Policy
from features.builder import FeatureBuilder
from features.calibration import Calibrator
from features.config import DataConfig
from features.identify import IDENTIFY_DIR, ProductIdentifier
from training.evaluate import json_safe, save_plots
from training.linear import linear_to_onnx
from training.tiers import TierModel
from training.train import FittedModel

ONNX_OPSET = 15


def booster_to_onnx(booster: lgb.Booster, n_features: int) -> bytes:
    onx = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        zipmap=False,
        target_opset=ONNX_OPSET,
    )
    return onx.SerializeToString()


def model_to_onnx(model: FittedModel, n_features: int) -> bytes:
    if model.booster is not None:
        return booster_to_onnx(model.booster, n_features)
    assert model.linear is not None
    return linear_to_onnx(model.linear)


def write_bundle(
    bundle_dir: Path,
    *,
    model: FittedModel,
    builder: FeatureBuilder,
    calibrator: Calibrator,
    tier_models: list[TierModel] | None = None,
    policy: Policy,
    config: DataConfig,
    metrics: dict[str, Any],
    reference: pd.DataFrame,
    test_scores: pd.DataFrame,
    model_card: str,
    test_rows: pd.DataFrame | None = None,
    identifier: ProductIdentifier | None = None,
) -> Path:
    """Write every bundle file and the manifest in a staging directory, then rename it into place.

    A bundle directory therefore either does not exist or is complete. `test_rows` (the raw listings of
    the test split, in `test_scores` order) give the drift reference its feature distributions; without
    them it holds the risk and the segment columns of `test_scores`. `identifier` (product
    identification: the rejected listings' index and the catalogue) goes in `identify/`.
    """
    staging = bundle_dir.parent / f".{bundle_dir.name}.partial"
    staging.mkdir(parents=True, exist_ok=True)
    (staging / "model.onnx").write_bytes(model_to_onnx(model, len(builder.feature_names)))
    if model.booster is not None:
        model.booster.save_model(str(staging / "lightgbm.txt"))
    else:
        assert model.linear is not None
        model.linear.save(staging / LINEAR_FILE)
    if tier_models:  # one ONNX model and calibrator per tier, in the data config's tier order
        (staging / TIERS_DIR).mkdir()
        for tier in tier_models:
            (staging / TIERS_DIR / f"{tier.name}.onnx").write_bytes(
                model_to_onnx(tier.model, len(builder.feature_names))
            )
            tier.calibrator.save(staging / TIERS_DIR / f"{tier.name}.calibrator.json")
    builder.save(staging / "feature_state")
    calibrator.save(staging / "calibrator.json")
    (staging / "data_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    # not sort_keys: feature importance is ordered by value, candidates by when they were scored
    (staging / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2, allow_nan=False))
    reference.to_parquet(staging / "reference.parquet", index=False)
    # the held-out rows' scores: anyone can recompute the test metrics and plots from them
    test_scores.to_parquet(staging / "test_scores.parquet", index=False)
    drift_rows = test_scores if test_rows is None else test_rows
    save_drift_reference(staging, build_drift_reference(test_scores["risk"].to_numpy(), drift_rows, config))
    save_plots(test_scores, staging / "plots", segment=config.segments[0] if config.segments else None)
    (staging / "MODEL_CARD.md").write_text(model_card)
    if identifier is not None:
        identifier.save(staging / IDENTIFY_DIR)
    save_policy(staging, policy)  # policy.json + policies/<version>.json
    write_manifest(staging, version=bundle_dir.name, signing_key=signing_key_from_env())  # signed when set
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
