"""A LightGBM binary classifier's ONNX export rewritten for faster inference: the ai.onnx.ml 1
`TreeEnsembleClassifier` that onnxmltools writes becomes one ai.onnx.ml 5 `TreeEnsemble` whose
categorical splits are single membership tests.

onnxmltools writes a LightGBM categorical split as a chain of BRANCH_EQ nodes on the same feature that
share one true subtree; about a third of the bench bundle's branch nodes are such tests, and
onnxruntime walks them one by one. As one BRANCH_MEMBER node each, onnxruntime 1.32 scores the bench
bundle's models 8-16% faster (bench/RESULTS_OFFLINE.md). Version 5 forbids shared nodes, so a chain's
true subtree is reached from its one membership node.

The rewritten model outputs `margin` (n, 1): the summed leaf values, equal bit for bit to what the
classifier computes before its logistic, which onnxruntime does not apply for this node (whatever its
post_transform says); `bundle.load` applies it as the classifier does.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MARGIN_OUTPUT = "margin"  # the rewritten model's one output: the raw log-odds, (n, 1)
TREE_ENSEMBLE_OPSET = 5  # ai.onnx.ml's first TreeEnsemble (membership tests)
DEFAULT_OPSET = 21  # the default domain's opset that goes with ai.onnx.ml 5
IR_VERSION = 10

# ai.onnx.ml 5 node modes (the attribute is a uint8 tensor)
_MODES = {"BRANCH_LEQ": 0, "BRANCH_LT": 1, "BRANCH_GTE": 2, "BRANCH_GT": 3, "BRANCH_EQ": 4, "BRANCH_NEQ": 5}
_BRANCH_MEMBER = 6
_AGGREGATE_SUM = 1
_POST_TRANSFORM_NONE = 0


def membership_trees(classifier: bytes) -> bytes:
    """The serialized ai.onnx.ml 5 model computing the margin of `classifier`, a serialized binary
    LightGBM classifier as onnxmltools exports it (input `input`, float32 (n, n_features)); ValueError
    for anything else (a multi-class model, base values, another post-transform)."""
    model = onnx.load_from_string(classifier)
    trees = [node for node in model.graph.node if node.op_type == "TreeEnsembleClassifier"]
    if len(trees) != 1:
        raise ValueError(f"expected one TreeEnsembleClassifier, found {len(trees)}")
    a = {attr.name: helper.get_attribute_value(attr) for attr in trees[0].attribute}
    if a.get("post_transform", b"NONE") != b"LOGISTIC" or list(a.get("classlabels_int64s", [])) != [0, 1]:
        raise ValueError("expected a binary classifier with a LOGISTIC post-transform")
    if set(a["class_ids"]) != {0} or any(a.get("base_values", [])):
        raise ValueError("expected one score per leaf (class 0) and no base values")
    nodes = _Nodes(a)
    out = _Ensemble()
    for tree in sorted(set(a["nodes_treeids"])):
        out.roots.append(out.tree(nodes, tree))
    attrs: dict[str, Any] = dict(
        n_targets=1,
        aggregate_function=_AGGREGATE_SUM,
        post_transform=_POST_TRANSFORM_NONE,
        tree_roots=out.roots,
        nodes_featureids=out.feature,
        nodes_truenodeids=out.true_id,
        nodes_trueleafs=out.true_leaf,
        nodes_falsenodeids=out.false_id,
        nodes_falseleafs=out.false_leaf,
        nodes_missing_value_tracks_true=out.missing_true,
        nodes_modes=numpy_helper.from_array(np.array(out.mode, dtype=np.uint8), "nodes_modes"),
        nodes_splits=numpy_helper.from_array(np.array(out.split, dtype=np.float32), "nodes_splits"),
        leaf_targetids=[0] * len(out.leaf_weights),
        leaf_weights=numpy_helper.from_array(np.array(out.leaf_weights, dtype=np.float32), "leaf_weights"),
    )
    if out.members:  # each membership node's values, NaN after each, in node order
        values = [v for j in sorted(out.members) for v in [*out.members[j], float("nan")]]
        attrs["membership_values"] = numpy_helper.from_array(np.array(values, dtype=np.float32), "membership_values")
    n_features = model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    graph = helper.make_graph(
        [helper.make_node("TreeEnsemble", ["input"], [MARGIN_OUTPUT], domain="ai.onnx.ml", **attrs)],
        model.graph.name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, n_features])],
        [helper.make_tensor_value_info(MARGIN_OUTPUT, TensorProto.FLOAT, [None, 1])],
    )
    rewritten = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", DEFAULT_OPSET), helper.make_opsetid("ai.onnx.ml", TREE_ENSEMBLE_OPSET)],
        ir_version=IR_VERSION,
        producer_name=model.producer_name,
        producer_version=model.producer_version,
    )
    onnx.checker.check_model(rewritten)
    return rewritten.SerializeToString()


class _Nodes:
    """The classifier's nodes, looked up by (tree id, node id), and each leaf's summed weight."""

    def __init__(self, a: dict[str, Any]):
        self.a = a
        self.index = {key: i for i, key in enumerate(zip(a["nodes_treeids"], a["nodes_nodeids"], strict=True))}
        self.modes = [mode.decode() for mode in a["nodes_modes"]]
        self.leaf_weight: dict[tuple[int, int], float] = {}
        for tree, node, weight in zip(a["class_treeids"], a["class_nodeids"], a["class_weights"], strict=True):
            self.leaf_weight[(tree, node)] = self.leaf_weight.get((tree, node), 0.0) + weight

    def at(self, tree: int, node: int) -> int:
        return self.index[(tree, node)]

    def is_leaf(self, i: int) -> bool:
        return self.modes[i] == "LEAF"


class _Ensemble:
    """The rewritten ensemble's attribute lists, built tree by tree."""

    def __init__(self) -> None:
        self.roots: list[int] = []
        self.feature: list[int] = []
        self.mode: list[int] = []
        self.split: list[float] = []
        self.true_id: list[int] = []
        self.true_leaf: list[int] = []
        self.false_id: list[int] = []
        self.false_leaf: list[int] = []
        self.missing_true: list[int] = []
        self.members: dict[int, list[float]] = {}  # a membership node's values, by node index
        self.leaf_weights: list[float] = []

    def tree(self, nodes: _Nodes, tree: int) -> int:
        """Add one tree (iteratively: a tree may be deeper than Python's recursion limit); its root's index."""
        root = nodes.at(tree, 0)
        if nodes.is_leaf(root):  # a single leaf: a split whose branches both reach it
            leaf = self._leaf(nodes, tree, 0)
            return self._node(0, _MODES["BRANCH_LEQ"], 0.0, False, (leaf, 1), (leaf, 1))
        a = nodes.a
        placed = self._placeholder()
        todo = [(root, placed)]
        while todo:
            i, j = todo.pop()
            feature, true_node = a["nodes_featureids"][i], a["nodes_truenodeids"][i]
            missing_true = bool(a["nodes_missing_value_tracks_true"][i])
            last = i
            if nodes.modes[i] == "BRANCH_EQ":  # the chain of equality tests sharing this one's true subtree
                values = [a["nodes_values"][i]]
                while True:
                    k = nodes.at(tree, a["nodes_falsenodeids"][last])
                    if not (
                        nodes.modes[k] == "BRANCH_EQ"
                        and a["nodes_featureids"][k] == feature
                        and a["nodes_truenodeids"][k] == true_node
                    ):
                        break
                    values.append(a["nodes_values"][k])
                    # a missing value fails every equality test; it reaches the true subtree at the first
                    # test of the chain that sends missing values there
                    missing_true = missing_true or bool(a["nodes_missing_value_tracks_true"][k])
                    last = k
                if len(values) > 1:
                    mode, split = _BRANCH_MEMBER, 0.0
                    self.members[j] = values
                else:
                    mode, split = _MODES["BRANCH_EQ"], values[0]
            else:
                mode, split = _MODES[nodes.modes[i]], a["nodes_values"][i]
            self.feature[j], self.mode[j], self.split[j] = feature, mode, split
            self.missing_true[j] = int(missing_true)
            for side, child in (("true", true_node), ("false", a["nodes_falsenodeids"][last])):
                k = nodes.at(tree, child)
                if nodes.is_leaf(k):
                    target, is_leaf = self._leaf(nodes, tree, child), 1
                else:
                    target, is_leaf = self._placeholder(), 0
                    todo.append((k, target))
                getattr(self, f"{side}_id")[j] = target
                getattr(self, f"{side}_leaf")[j] = is_leaf
        return placed

    def _node(
        self, feature: int, mode: int, split: float, missing_true: bool, true: tuple[int, int], false: tuple[int, int]
    ) -> int:
        self.feature.append(feature)
        self.mode.append(mode)
        self.split.append(split)
        self.missing_true.append(int(missing_true))
        self.true_id.append(true[0])
        self.true_leaf.append(true[1])
        self.false_id.append(false[0])
        self.false_leaf.append(false[1])
        return len(self.feature) - 1

    def _placeholder(self) -> int:
        """A node whose fields are set when its turn comes."""
        return self._node(0, 0, 0.0, False, (0, 0), (0, 0))

    def _leaf(self, nodes: _Nodes, tree: int, node: int) -> int:
        self.leaf_weights.append(nodes.leaf_weight[(tree, node)])
        return len(self.leaf_weights) - 1
