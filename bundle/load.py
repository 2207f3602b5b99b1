"""A verified bundle loaded for scoring: feature builder -> ONNX model (LightGBM or logistic) -> calibrator,
and its policy.

This is the only way serving and offline scoring turn listings into risk; it reads the bundle and
nothing else. The manifest is verified before anything is loaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from bundle.linear import LINEAR_FILE, LinearModel
from bundle.manifest import BundleError, resolve_bundle, verify_manifest
from bundle.policies import load_policy
from decision.policy import Policy
from features.builder import FeatureBuilder
from features.calibration import Calibrator
from features.config import INCLUSION_PROB, DataConfig
from features.identify import IDENTIFY_DIR, ProductIdentifier

TIERS_DIR = "tiers"  # tiers/<name>.onnx and tiers/<name>.calibrator.json per tier
# The held-out labelled rows (calibration + test splits), scored: what rule backtests and certificates
# run on (`decision.backtest`). Bundles exported before it existed have none.
HISTORY_FILE = "history.parquet"
RULES_REPORT_FILE = "rules_report.json"  # the shipped rules' certificates and workload
# The scored, labelled rows the simulator replays (`training.pipeline._reference`): id, risk, label, tier
# risks, handling time, segments; no text.
REFERENCE_FILE = "reference.parquet"


def _reference_owns(column: str) -> bool:
    """Names the reference set gives a meaning of its own (`training.pipeline._reference`, read by
    `decision.simulate.reference_tiers`): a listing column so named is not joined in."""
    owned = ("listing_id", "label", "tier", "split", "review_seconds", "created_at", INCLUSION_PROB)
    return column in owned or column.startswith("risk")


def read_reference(bundle_dir: Path, id_column: str, listing_columns: Sequence[str]) -> pd.DataFrame:
    """The bundle's reference rows, with the columns a rule may read that the reference does not keep (the
    `listing_columns` of its data config, such as the text, and the derived `product_match`), taken from
    `history.parquet` for the same listings: a rule reading a product match or a title then applies in
    the simulator as in the service. Without `history.parquet`, or if it does not hold every reference
    row once (by `id_column`), the reference alone (rules on the other columns are then reported as not
    applied). A listing column named like one of the reference's own (`tier`, `risk...`,
    `review_seconds`, ...) is left out. Raises FileNotFoundError when the bundle has no reference."""
    import pyarrow.parquet as pq

    from decision.rules import DERIVED_COLUMNS

    reference = pd.read_parquet(bundle_dir / REFERENCE_FILE)
    path = bundle_dir / HISTORY_FILE
    if not path.is_file() or "listing_id" not in reference:
        return reference
    names = set(pq.read_schema(path).names)
    wanted = dict.fromkeys([*listing_columns, *sorted(DERIVED_COLUMNS)])
    extra = [c for c in wanted if c in names and c not in reference and c != id_column and not _reference_owns(c)]
    if id_column not in names or not extra:
        return reference
    history = pd.read_parquet(path, columns=[id_column, *extra])
    ids = pd.Index(history[id_column].astype(str))
    if ids.has_duplicates:
        return reference
    rows = ids.get_indexer(reference["listing_id"].astype(str))
    if (rows < 0).any():
        return reference
    return pd.concat([reference, history[extra].iloc[rows].reset_index(drop=True)], axis=1)


@dataclass
class Bundle:
    """A verified, loaded bundle: everything needed to score a listing and route it."""

    path: Path
    version: str
    config: DataConfig
    builder: FeatureBuilder
    calibrator: Calibrator
    policy: Policy
    session: Any  # onnxruntime.InferenceSession
    metrics: dict[str, Any]
    # tiered bundles: per tier (in the data config's order) its model's session and calibrator
    tiers: list[tuple[str, Any, Calibrator]] = field(default_factory=list)
    _history: pd.DataFrame | None = field(default=None, init=False, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | Path, threads: int = 1, signing_key: bytes | None = None) -> Bundle:
        """Load a bundle whose files match its manifest (and, with a signing key, whose manifest is
        signed with it); BundleError otherwise."""
        import onnxruntime as ort

        bundle_dir = resolve_bundle(path)
        manifest = verify_manifest(bundle_dir, signing_key)
        try:
            config_file = bundle_dir / "data_config.yaml"
            config = DataConfig.from_dict(
                yaml.safe_load(config_file.read_text()), origin=f"the bundle's data config is {config_file}"
            )
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3  # the label output's declared shape is {1}; only probabilities are read

            def session_for(model: bytes) -> Any:
                return ort.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])

            model_bytes = (bundle_dir / "model.onnx").read_bytes()
            session = session_for(model_bytes)

            def tier_session(name: str) -> Any:
                # a tier scored by the overall model ships the same bytes (`training.export`): one session,
                # and its probabilities are computed once (`score_matrix`)
                tier_bytes = (bundle_dir / TIERS_DIR / f"{name}.onnx").read_bytes()
                return session if tier_bytes == model_bytes else session_for(tier_bytes)

            tiers = [
                (name, tier_session(name), Calibrator.load(bundle_dir / TIERS_DIR / f"{name}.calibrator.json"))
                for name in config.tier_names
            ]
            return cls(
                path=bundle_dir,
                version=str(manifest.get("version", bundle_dir.name)),
                config=config,
                builder=FeatureBuilder.load(bundle_dir / "feature_state", config),
                calibrator=Calibrator.load(bundle_dir / "calibrator.json"),
                policy=load_policy(bundle_dir).validate(config.listing_columns),
                session=session,
                metrics=json.loads((bundle_dir / "metrics.json").read_text()),
                tiers=tiers,
            )
        except BundleError:
            raise
        except Exception as exc:  # any unreadable part makes the whole bundle unusable
            raise BundleError(f"bundle {bundle_dir}: cannot load ({type(exc).__name__}: {exc})") from exc

    @property
    def has_history(self) -> bool:
        """Whether the bundle ships `history.parquet` (without reading it)."""
        return self._history is not None or (self.path / HISTORY_FILE).is_file()

    def history(self) -> pd.DataFrame | None:
        """The bundle's scored, labelled held-out rows (`history.parquet`), read on first use (its sum
        was checked with the manifest at load); None for a bundle exported without them."""
        if self._history is None:
            path = self.path / HISTORY_FILE
            if not path.is_file():
                return None
            self._history = pd.read_parquet(path)
        return self._history

    @property
    def feature_names(self) -> list[str]:
        return list(self.builder.feature_names)

    def raw_scores(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated model probability for a float32 feature matrix."""
        return _probability(self.session, np.ascontiguousarray(X, dtype=np.float32))

    @property
    def tier_names(self) -> list[str]:
        return [name for name, _, _ in self.tiers]

    def tier_risk(self, X: np.ndarray, raw: np.ndarray | None = None) -> np.ndarray | None:
        """Calibrated risk per tier, (n, K) in `tier_names` order; None for an untiered bundle. `raw`, the
        overall model's `raw_scores(X)` when the caller has them, stands in for the tiers it scores."""
        if not self.tiers:
            return None
        X32 = np.ascontiguousarray(X, dtype=np.float32)

        def probability(session: Any) -> np.ndarray:
            return raw if raw is not None and session is self.session else _probability(session, X32)

        return np.column_stack([calibrator(probability(session)) for _, session, calibrator in self.tiers])

    def score_matrix(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(overall calibrated risk, per-tier risk or None) for a feature matrix; a model shared by the
        overall risk and a tier runs once."""
        raw = self.raw_scores(X)
        return self.calibrator(raw), self.tier_risk(X, raw)

    def scores(
        self, listings: pd.DataFrame, history: pd.DataFrame | None = None
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """(overall calibrated risk, per-tier risk or None) for a frame of listings."""
        return self.score_matrix(self.features(listings, history))

    def features(self, listings: pd.DataFrame, history: pd.DataFrame | None = None) -> np.ndarray:
        return self.builder.transform(listings, history=history).to_numpy(dtype=np.float32)

    def risk(self, listings: pd.DataFrame, history: pd.DataFrame | None = None) -> np.ndarray:
        """Calibrated risk of rejection for each listing."""
        return self.calibrator(self.raw_scores(self.features(listings, history)))

    @cached_property
    def linear(self) -> LinearModel | None:
        """The logistic-regression model, when that is what the bundle ships (else None)."""
        path = self.path / LINEAR_FILE
        return LinearModel.load(path) if path.exists() else None

    @cached_property
    def identifier(self) -> ProductIdentifier | None:
        """Product identification (re-posts of rejected listings, catalogue), when the bundle ships its
        index (`identify/`); one per bundle, so the rejects the service adds reach every engine on it."""
        directory = self.path / IDENTIFY_DIR
        return ProductIdentifier.load(directory) if (directory / "identify.json").is_file() else None

    @cached_property
    def matcher(self) -> ProductIdentifier | None:
        """Product identification for matching new listings (re-posts, catalogue): `identifier` when it is
        loaded already, else the bundle's index without the past cases that only the review console
        reads (offline scoring loads this one)."""
        if "identifier" in self.__dict__:
            return self.identifier
        directory = self.path / IDENTIFY_DIR
        return ProductIdentifier.load(directory, past_cases=False) if (directory / "identify.json").is_file() else None

    @cached_property
    def booster(self) -> Any:
        """The native LightGBM model, used only for per-feature contributions (reasons)."""
        import lightgbm as lgb

        if self.linear is not None:
            raise BundleError(f"bundle {self.path}: ships a logistic-regression model, not LightGBM")
        return lgb.Booster(model_file=str(self.path / "lightgbm.txt"))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """Per-feature contributions to the raw log-odds (exact: TreeSHAP, or the linear terms), (n, n_features)."""
        if self.linear is not None:
            return self.linear.contributions(X)
        contrib = np.asarray(self.booster.predict(X, pred_contrib=True))
        return contrib[:, :-1]


def _probability(session: Any, X32: np.ndarray) -> np.ndarray:
    """The positive class's probability from an exported model's ONNX session: a binary classifier's
    (label, probabilities), or the margin of LightGBM trees exported with membership tests
    (`training.onnx_trees`), through the logistic that classifier applies."""
    outputs = session.run(None, {"input": X32})
    if len(outputs) == 1:
        return _logistic32(outputs[0][:, 0]).astype(np.float64)
    probabilities = outputs[1]
    return np.asarray(probabilities[:, 1] if probabilities.ndim == 2 else probabilities, dtype=np.float64)


# The C library's expf, which onnxruntime's tree classifier calls for its logistic (None where ctypes
# cannot find it).
_LIBM = ctypes.util.find_library("m")
_expf = ctypes.CDLL(_LIBM).expf if _LIBM else None
if _expf is not None:
    _expf.restype, _expf.argtypes = ctypes.c_float, [ctypes.c_float]
# How close to halfway between two float32 values an exact exp must be for the float64 one, rounded, to
# risk differing from expf (documented as within 0.502 units in the last place, so within 0.002 of
# halfway): a relative 2^-24 / 200 either side is 0.005 to 0.01 of a unit. About one value in a hundred
# is that close; those are recomputed with expf itself.
_EXPF_TIE = 2.0**-24 / 200
# Up to this many margins, calling expf for each costs less than the numpy passes (one row: 2 µs, not 10).
_EXPF_EACH_MAX = 16


def _logistic32(margin: np.ndarray) -> np.ndarray:
    """float32 probabilities from float32 margins, computed as onnxruntime's tree classifier computes its
    LOGISTIC post-transform: v = 1 / (1 + expf(-|m|)), and 1 - v for m < 0, in float32, so a model
    exported with membership tests scores exactly what its classifier export scores.

    expf is the C library's own for a few margins; for more, float64 exp rounded to float32, except for
    the margins whose exp lies so near halfway between two float32 values that expf may round the other
    way: those take expf itself."""
    m = np.asarray(margin, dtype=np.float32)
    if _expf is not None and len(m) <= _EXPF_EACH_MAX:  # a few rows (serving): expf itself is quicker
        e = np.array([_expf(-abs(x)) for x in m.tolist()], dtype=np.float32)
    else:
        exact = np.exp(-np.abs(m).astype(np.float64))
        e = exact.astype(np.float32)
        if _expf is not None:
            low, high = (exact * (1 - _EXPF_TIE)).astype(np.float32), (exact * (1 + _EXPF_TIE)).astype(np.float32)
            ties = np.flatnonzero(low != high)
            e[ties] = [_expf(float(x)) for x in -np.abs(m[ties])]
    one = np.float32(1)
    v = one / (one + e)
    return np.where(m < 0, one - v, v)
