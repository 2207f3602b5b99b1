"""The logistic-regression candidate: fitted here, exported as plain numbers and as ONNX.

The model is additive on the builder's float32 features: numeric features are median-imputed and
standardised, each categorical code (small non-negative integers, 0 = rare or unseen) gets its own
weight. That is exactly a one-hot logistic regression, but stored as per-feature tables, so the
ONNX graph is a handful of elementwise operations and a gather, and per-feature contributions
(reasons) are exact: contribution + bias = log-odds.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pandas as pd
import scipy.sparse as sp
from onnx import TensorProto, helper, numpy_helper
from sklearn.linear_model import LogisticRegression

from bundle.linear import LinearModel

ONNX_OPSET = 15


def fit_logistic(
    X: pd.DataFrame,
    y: np.ndarray,
    categorical: list[str],
    seed: int = 0,
    C: float = 1.0,
    weight: np.ndarray | None = None,
) -> LinearModel:
    """Fit an L2 logistic regression on standardised numerics and one-hot categorical codes (rows
    weighted by `weight` when given)."""
    names = list(X.columns)
    numeric = [c for c in names if c not in categorical]
    values = X[numeric].to_numpy(dtype=np.float64)
    with warnings.catch_warnings():  # a column with no value at all (a feature the rows never carry) is 0
        warnings.filterwarnings("ignore", message="All-NaN slice encountered", category=RuntimeWarning)
        medians = np.nanmedian(values, axis=0) if len(numeric) else np.zeros(0)
    medians = np.where(np.isfinite(medians), medians, 0.0)
    imputed = np.where(np.isnan(values), medians, values)
    means = imputed.mean(axis=0)
    scales = imputed.std(axis=0)
    scales = np.where(scales > 0, scales, 1.0)
    codes = X[categorical].to_numpy(dtype=np.int64) if categorical else np.zeros((len(X), 0), dtype=np.int64)
    sizes = codes.max(axis=0) + 1 if len(codes) else np.zeros(len(categorical), dtype=np.int64)
    offsets = np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64) if len(categorical) else np.zeros(0, np.int64)
    one_hot = sp.csr_matrix(
        (np.ones(codes.size), (np.repeat(np.arange(len(X)), len(categorical)), (codes + offsets).ravel())),
        shape=(len(X), int(sizes.sum())),
    )
    design = sp.hstack([sp.csr_matrix((imputed - means) / scales), one_hot], format="csr")
    logit = LogisticRegression(C=C, max_iter=1000, random_state=seed).fit(design, y, sample_weight=weight)
    weights = logit.coef_.ravel()
    numeric_weights = weights[: len(numeric)]
    tables = [weights[len(numeric) + o : len(numeric) + o + s] for o, s in zip(offsets, sizes, strict=True)]
    # centre each table on the training rows' average so contributions read "against a typical listing"
    table_means = [float(np.mean(t[codes[:, j]])) for j, t in enumerate(tables)]
    return LinearModel(
        feature_names=names,
        numeric=numeric,
        medians=medians,
        means=means,
        scales=scales,
        numeric_weights=numeric_weights,
        categorical=list(categorical),
        tables=[t - m for t, m in zip(tables, table_means, strict=True)],
        intercept=float(logit.intercept_[0]) + float(np.sum(table_means)),
    )


def linear_to_onnx(model: LinearModel) -> bytes:
    """ONNX graph computing the same probability as `LinearModel.raw_scores` (float32 arithmetic).

    Outputs mirror a LightGBM classifier exported with zipmap=False: `label` and `probabilities` (n, 2).
    """
    index = {name: i for i, name in enumerate(model.feature_names)}
    f32 = np.float32
    inits = [
        numpy_helper.from_array(np.array([index[c] for c in model.numeric], dtype=np.int64), "numeric_index"),
        numpy_helper.from_array(model.medians.astype(f32), "medians"),
        numpy_helper.from_array(model.means.astype(f32), "means"),
        numpy_helper.from_array(model.scales.astype(f32), "scales"),
        numpy_helper.from_array(model.numeric_weights.astype(f32).reshape(-1, 1), "numeric_weights"),
        numpy_helper.from_array(np.array([model.intercept], dtype=f32), "intercept"),
        numpy_helper.from_array(np.array([1.0], dtype=f32), "one"),
        numpy_helper.from_array(np.array([0.5], dtype=f32), "half"),
    ]
    nodes = [
        helper.make_node("Gather", ["input", "numeric_index"], ["numeric"], axis=1),
        helper.make_node("IsNaN", ["numeric"], ["missing"]),
        helper.make_node("Where", ["missing", "medians", "numeric"], ["imputed"]),
        helper.make_node("Sub", ["imputed", "means"], ["centred"]),
        helper.make_node("Div", ["centred", "scales"], ["standardised"]),
        helper.make_node("MatMul", ["standardised", "numeric_weights"], ["numeric_logit"]),
        helper.make_node("Add", ["numeric_logit", "intercept"], ["base_logit"]),
    ]
    logit = "base_logit"
    if model.categorical:
        sizes = np.array([len(t) for t in model.tables], dtype=np.int64)
        inits += [
            numpy_helper.from_array(np.array([index[c] for c in model.categorical], dtype=np.int64), "code_index"),
            numpy_helper.from_array(sizes - 1, "max_code"),
            numpy_helper.from_array(np.zeros(len(sizes), dtype=np.int64), "min_code"),
            numpy_helper.from_array(np.r_[0, np.cumsum(sizes)[:-1]].astype(np.int64), "code_offsets"),
            numpy_helper.from_array(np.concatenate(model.tables).astype(f32), "code_weights"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "sum_axis"),
        ]
        nodes += [
            helper.make_node("Gather", ["input", "code_index"], ["code_values"], axis=1),
            helper.make_node("Cast", ["code_values"], ["codes"], to=TensorProto.INT64),
            # the builder emits codes 0..K only; anything else is clamped into the table, never read past it
            helper.make_node("Min", ["codes", "max_code"], ["codes_capped"]),
            helper.make_node("Max", ["codes_capped", "min_code"], ["codes_valid"]),
            helper.make_node("Add", ["codes_valid", "code_offsets"], ["flat_codes"]),
            helper.make_node("Gather", ["code_weights", "flat_codes"], ["code_logits"]),
            helper.make_node("ReduceSum", ["code_logits", "sum_axis"], ["categorical_logit"], keepdims=1),
            helper.make_node("Add", ["base_logit", "categorical_logit"], ["logit"]),
        ]
        logit = "logit"
    nodes += [
        helper.make_node("Sigmoid", [logit], ["p_reject"]),
        helper.make_node("Sub", ["one", "p_reject"], ["p_approve"]),
        helper.make_node("Concat", ["p_approve", "p_reject"], ["probabilities"], axis=1),
        helper.make_node("GreaterOrEqual", ["p_reject", "half"], ["is_reject"]),
        helper.make_node("Cast", ["is_reject"], ["label_column"], to=TensorProto.INT64),
        helper.make_node("Squeeze", ["label_column", "sum_axis_label"], ["label"]),
    ]
    inits.append(numpy_helper.from_array(np.array([1], dtype=np.int64), "sum_axis_label"))
    graph = helper.make_graph(
        nodes,
        "logistic_regression",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, len(model.feature_names)])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 2]),
        ],
        initializer=inits,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)], producer_name="triage")
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto.SerializeToString()
