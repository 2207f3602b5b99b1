"""LightGBM trees exported with membership tests (`training.onnx_trees`) score what LightGBM and the
classifier export score."""

from __future__ import annotations

import ctypes
import ctypes.util

import lightgbm as lgb
import numpy as np
import onnx
import onnxmltools
import onnxruntime as ort
import pytest
from onnxmltools.convert.common.data_types import FloatTensorType

from bundle.load import _logistic32, _probability
from training.export import ONNX_OPSET, booster_to_onnx
from training.onnx_trees import membership_trees


def _rows(rng: np.random.Generator, n: int, categories: int) -> np.ndarray:
    """Two categorical codes (0..categories-1) and two numeric features on a 0.01 grid (no value near a
    split threshold, which LightGBM holds in float64 and ONNX in float32), with missing values."""
    X = np.column_stack(
        [
            rng.integers(0, categories, n),
            rng.integers(0, categories, n),
            np.round(rng.normal(size=n), 2),
            np.round(rng.normal(size=n), 2),
        ]
    ).astype(np.float32)
    X[rng.random((n, 4)) < 0.05] = np.nan
    return X


@pytest.fixture(scope="module")
def booster() -> lgb.Booster:
    rng = np.random.default_rng(3)
    X = _rows(rng, 20_000, 30)
    logit = np.where(np.isin(X[:, 0], [1, 4, 7, 11, 19, 23]), 1.5, -0.5) + np.nan_to_num(X[:, 2]) - 0.5 * (X[:, 1] > 20)
    y = (rng.random(len(X)) < 1 / (1 + np.exp(-logit))).astype(int)
    data = lgb.Dataset(X, y, categorical_feature=[0, 1])
    params = {"objective": "binary", "num_leaves": 15, "verbose": -1, "seed": 3, "cat_smooth": 1}
    params["min_data_per_group"] = 20  # small categories get splits of their own: long equality chains
    return lgb.train(params, data, num_boost_round=60)


def _session(model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def _new_rows() -> np.ndarray:
    """Rows with missing values and categories the booster never saw (30..39, and negative codes)."""
    X = _rows(np.random.default_rng(4), 5_000, 40)
    X[::97, 1] = -1
    return X


def test_membership_export_merges_the_equality_chains(booster: lgb.Booster) -> None:
    model = onnx.load_from_string(booster_to_onnx(booster, 4))
    (node,) = model.graph.node
    assert node.op_type == "TreeEnsemble" and node.domain == "ai.onnx.ml"
    modes = onnx.numpy_helper.to_array(next(a.t for a in node.attribute if a.name == "nodes_modes"))
    assert (modes == 6).any()  # BRANCH_MEMBER: the categorical splits


def test_membership_export_scores_as_lightgbm(booster: lgb.Booster) -> None:
    X = _new_rows()
    p = _probability(_session(booster_to_onnx(booster, 4)), X)
    np.testing.assert_allclose(p, booster.predict(X.astype(np.float64)), rtol=0, atol=1e-6)


def test_membership_export_scores_as_the_classifier_export_bit_for_bit(booster: lgb.Booster) -> None:
    """Old bundles ship the classifier (ai.onnx.ml 1) and keep scoring with it; a new export's
    probabilities are the same float32 values (the margin is summed alike and the logistic is the
    classifier's own float32 formula), so routing does not move at a threshold."""
    classifier = onnxmltools.convert_lightgbm(
        booster, initial_types=[("input", FloatTensorType([None, 4]))], zipmap=False, target_opset=ONNX_OPSET
    ).SerializeToString()
    X = _new_rows()
    old = _session(classifier)
    assert [o.name for o in old.get_outputs()] == ["label", "probabilities"]
    np.testing.assert_array_equal(_probability(_session(membership_trees(classifier)), X), _probability(old, X))


def test_logistic_is_onnxruntimes_float32_formula() -> None:
    """v = 1 / (1 + expf(-|m|)), 1 - v below 0, in float32 with the C library's expf, on margins wide
    enough to reach every rounding case (ties near halfway included)."""
    libm = ctypes.util.find_library("m")
    if libm is None:
        pytest.skip("no C library expf to compare with")
    expf = ctypes.CDLL(libm).expf
    expf.restype, expf.argtypes = ctypes.c_float, [ctypes.c_float]
    margin = (np.random.default_rng(5).standard_normal(200_000) * 6).astype(np.float32)
    margin[:4] = [0.0, -0.0, 100.0, -100.0]
    e = np.array([expf(float(x)) for x in -np.abs(margin)], dtype=np.float32)
    one = np.float32(1)
    v = one / (one + e)
    expected = np.where(margin < 0, one - v, v)
    np.testing.assert_array_equal(_logistic32(margin), expected)
    for n in (0, 1, 5, 16, 17):  # a few rows (serving) take expf for each
        np.testing.assert_array_equal(_logistic32(margin[:n]), expected[:n])
