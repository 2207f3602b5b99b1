"""Parity of the per-tier models: what the bundle computes from its exported ONNX tier models equals the
in-memory models' calibrated prediction on the same feature matrix (float32 tolerance)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from bundle.load import Bundle, _probability
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


def test_a_tier_scored_by_the_overall_model_shares_its_session_and_probabilities(
    bundle_dir: Path, generated_dir: Path, tmp_path: Path
) -> None:
    import shutil

    from bundle.manifest import write_manifest

    # what training exports: a tier that chose the overall model ships the overall model's bytes
    own = {t["tier"]: t["own_model"] for t in Bundle.load(bundle_dir).metrics.get("tier_models", [])}
    exported = Bundle.load(bundle_dir)
    for name, session, _ in exported.tiers:
        assert (session is exported.session) == (own.get(name) is False), name

    # a copy whose first tier ships the overall model's bytes and the second the same model with other
    # metadata (as bundles exported before the bytes were shared): one shared session, one of its own
    copy = Path(shutil.copytree(bundle_dir, tmp_path / "bundle"))
    first, second = Bundle.load(copy).tier_names
    (copy / "tiers" / f"{first}.onnx").write_bytes((copy / "model.onnx").read_bytes())
    relabelled = onnx.load_from_string((copy / "model.onnx").read_bytes())
    relabelled.doc_string = "exported on its own"
    (copy / "tiers" / f"{second}.onnx").write_bytes(relabelled.SerializeToString())
    write_manifest(copy)
    shared = Bundle.load(copy)
    assert shared.tiers[0][1] is shared.session and shared.tiers[1][1] is not shared.session

    config = shared.config
    table = validate_history(load_table(generated_dir / "reviews.parquet", config), config)
    X = shared.features(table.tail(3000), history=table)
    runs: list[object] = []

    class Counted:  # the overall session, counting its runs
        def __init__(self, session: object) -> None:
            self.session = session

        def run(self, *args: object) -> object:
            runs.append(args)
            return self.session.run(*args)  # type: ignore[attr-defined]

    counted = Counted(shared.session)
    one_run = dataclasses.replace(
        shared, session=counted, tiers=[(n, counted if s is shared.session else s, c) for n, s, c in shared.tiers]
    )
    risk, tier_risk = one_run.score_matrix(X)
    assert len(runs) == 1  # the overall model ran once for the overall risk and the first tier
    # the same risks as running every model on its own
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # as bundles load: a sum over threads rounds differently

    def loaded(path: Path) -> ort.InferenceSession:
        return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])

    own_sessions = [loaded(copy / "tiers" / f"{n}.onnx") for n in (first, second)]
    expected = np.column_stack(
        [cal(_probability(s, X32)) for s, (_, _, cal) in zip(own_sessions, shared.tiers, strict=True)]
    )
    np.testing.assert_array_equal(tier_risk, expected)
    np.testing.assert_array_equal(risk, shared.calibrator(_probability(loaded(copy / "model.onnx"), X32)))
    np.testing.assert_array_equal(shared.tier_risk(X), expected)  # without the overall scores at hand
