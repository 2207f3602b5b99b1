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
from bundle.load import HISTORY_FILE, RULES_REPORT_FILE, TIERS_DIR
from bundle.manifest import signing_key_from_env, write_manifest
from bundle.policies import save_policy
from decision.policy import Policy
from features.builder import FeatureBuilder
from features.calibration import Calibrator
from features.config import INCLUSION_PROB, DataConfig
from features.identify import IDENTIFY_DIR, ProductIdentifier
from training.evaluate import json_safe, save_plots
from training.linear import linear_to_onnx
from training.onnx_trees import membership_trees
from training.tiers import TierModel
from training.train import FittedModel

ONNX_OPSET = 15
PRODUCT_MATCH = "product_match"  # product identification's column (space-separated sources), kept when present


def history_frame(part: pd.DataFrame, scored: pd.DataFrame, config: DataConfig, split: str) -> pd.DataFrame:
    """The rows of one held-out split as `history.parquet` holds them: the listing columns (id, timestamp,
    merchant, text, categorical, numeric), segments, `label` (0/1), violation reason, handling time,
    inclusion probability and product match when present, the split's name, and the bundle model's
    calibrated `risk` plus `tier_risk_<tier>` per tier (from `scored`, the split's reference frame, row
    for row), so a backtest routes exactly what the service would without rescoring."""
    from decision.backtest import TIER_RISK_PREFIX
    from decision.tiers import risk_column

    optional = [config.violation_reason, config.review_seconds, INCLUSION_PROB, PRODUCT_MATCH]
    columns = list(dict.fromkeys([*config.listing_columns, *config.segments, *[c for c in optional if c]]))
    history = part[[c for c in columns if c in part and c != config.label]].reset_index(drop=True)
    history["label"] = part[config.label].to_numpy(dtype="int8")
    history["split"] = split
    history["risk"] = scored["risk"].to_numpy(dtype="float64")
    for name in config.tier_names:
        if risk_column(name) in scored:
            history[TIER_RISK_PREFIX + name] = scored[risk_column(name)].to_numpy(dtype="float64")
    return history


def booster_to_onnx(booster: lgb.Booster, n_features: int) -> bytes:
    """The booster as onnxmltools converts it, rewritten with membership tests for its categorical splits
    (`training.onnx_trees`: the same probabilities, bit for bit, scored faster); the model outputs its
    margin, which `bundle.load` turns into the classifier's probability."""
    onx = onnxmltools.convert_lightgbm(
        booster,
        initial_types=[("input", FloatTensorType([None, n_features]))],
        zipmap=False,
        target_opset=ONNX_OPSET,
    )
    return membership_trees(onx.SerializeToString())


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
    history: pd.DataFrame | None = None,
    rules_report: dict[str, Any] | None = None,
    identifier: ProductIdentifier | None = None,
) -> Path:
    """Write every bundle file and the manifest in a staging directory, then rename it into place.

    A bundle directory therefore either does not exist or is complete. `test_rows` (the raw listings of
    the test split, in `test_scores` order) give the drift reference its feature distributions; without
    them it holds the risk and the segment columns of `test_scores`. `history` (`history_frame` of the
    calibration and test splits) and `rules_report` are written when given; `identifier` (product
    identification: the rejected listings' index and the catalogue) goes in `identify/`.
    """
    staging = bundle_dir.parent / f".{bundle_dir.name}.partial"
    staging.mkdir(parents=True, exist_ok=True)
    model_onnx = model_to_onnx(model, len(builder.feature_names))
    (staging / "model.onnx").write_bytes(model_onnx)
    if model.booster is not None:
        model.booster.save_model(str(staging / "lightgbm.txt"))
    else:
        assert model.linear is not None
        model.linear.save(staging / LINEAR_FILE)
    if tier_models:  # one ONNX model and calibrator per tier, in the data config's tier order
        (staging / TIERS_DIR).mkdir()
        for tier in tier_models:
            # a tier scored by the overall model gets the same bytes, so loading runs that model once
            shared = tier.model is model
            tier_onnx = model_onnx if shared else model_to_onnx(tier.model, len(builder.feature_names))
            (staging / TIERS_DIR / f"{tier.name}.onnx").write_bytes(tier_onnx)
            tier.calibrator.save(staging / TIERS_DIR / f"{tier.name}.calibrator.json")
    builder.save(staging / "feature_state")
    calibrator.save(staging / "calibrator.json")
    (staging / "data_config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    # not sort_keys: feature importance is ordered by value, candidates by when they were scored
    (staging / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=2, allow_nan=False))
    reference.to_parquet(staging / "reference.parquet", index=False)
    # the held-out rows' scores: anyone can recompute the test metrics and plots from them
    test_scores.to_parquet(staging / "test_scores.parquet", index=False)
    if history is not None:  # listed in the manifest like every file, so its sum (and signature) cover it
        history.to_parquet(staging / HISTORY_FILE, index=False)
    if rules_report is not None:
        (staging / RULES_REPORT_FILE).write_text(json.dumps(json_safe(rules_report), indent=2, allow_nan=False))
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
