"""The bundle's drift reference: written by training on the test split, covered by the manifest, and its
own rows show no drift against it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bundle.drift_reference import DRIFT_REFERENCE_FILE, load_drift_reference
from bundle.manifest import verify_manifest
from decision.drift import variable_drift


def test_training_writes_the_reference_of_the_test_split(bundle_dir: Path) -> None:
    assert DRIFT_REFERENCE_FILE in verify_manifest(bundle_dir)["files"]
    reference = load_drift_reference(bundle_dir)
    assert reference is not None
    test_scores = pd.read_parquet(bundle_dir / "test_scores.parquet")
    assert reference.n_rows == len(test_scores)
    assert {"price", "merchant_tenure_days", "image_count", "category", "market"} <= set(reference.features)
    same = variable_drift(reference.risk, test_scores["risk"].to_numpy())
    assert same["psi"] < 1e-9 and same["status"] == "ok"
    categories = variable_drift(reference.features["category"], test_scores["category"].tolist())
    assert categories["psi"] < 1e-9
