"""Training on a Dask cluster (`triage train --cluster local:N | tcp://scheduler:8786`).

The table-sized stages run on the workers, partition by partition, with the same `features/` code as
one process; everything after the fit (calibration, certification, rules, export, MLflow) is the one
path `training.pipeline` runs for both, so a bundle trained here is a normal bundle.

- Load: the Parquet file or directory of part files as a Dask dataframe; each partition is checked
  with `validate_history` (every partition's problems reported together, by partition), and ids are
  checked for duplicates across partitions.
- Split: only the creation times (with labels, review times and violation reasons) come to this
  process; the cut rule of `split_by_time` on them, and each row's rank in the stable time order,
  place every row in the same part as one process would.
- Merchant history: the outcome columns it reads (merchant, times, label) are shuffled by merchant,
  so each merchant's outcomes are in one partition, and `merchant_history` runs per partition with the
  global timeline of review times for the prior: the same numbers as one process. The features go
  back to the rows' own partitions by time rank; the listings themselves are never shuffled.
- Model selection, tier sources, the feature state (text model out of fold, category codes, price
  norms) and the logistic baseline are fitted here on the newest training rows, at most
  SELECTION_ROWS and FEATURE_FIT_ROWS of them: on smaller data that is the whole training part, and
  the same choice as one process. Training rows outside the feature sample get the final text model's
  score, which never saw them, as held out as an out-of-fold score.
- LightGBM: `lightgbm.dask` on the training part (one thread per worker process), with the
  single-process fit's early stopping: the newest tenth of the training rows are held out, the model
  is grown to `max_rounds`, and the rounds kept are where early stopping on the held-out rows'
  weighted log loss (computed on the workers) would have stopped.
- Calibration and test rows (their listing columns and features) come to this process for
  calibration, certification and the bundle's history; so do rejected training rows, for point-in-time
  product identification. Of each held-out part, the newest HELD_OUT_ROWS are used (all of them on
  smaller data; metrics.json says when it is bounded): this process holds their text and identifies
  them, which is what would run out of memory first at 10M rows, while a million rows already certify
  far tighter than the targets need. The older rows of the part are used for nothing (they are after
  the training period, so training may not see them). The similar-cases index holds every rejected
  listing and the newest SIMILAR_CASES_ROWS reviewed ones (all of them on smaller data; metrics.json
  says when it is bounded).
"""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.builder import FeatureBuilder
from features.config import MERCHANT_HISTORY, DataConfig
from features.identify import PRODUCT_MATCH, build_identifier, identify_history
from features.merchant import MERCHANT_FEATURES, ReviewTimeline, merchant_history, merchant_snapshot, to_microseconds
from features.validate import DataValidationError, review_time_column, validate_history
from training.cluster import ClusterSpec, cluster_client
from training.evaluate import audit_weights
from training.pipeline import (
    Fitted,
    TrainOptions,
    catalogue_of,
    choose_calibration_fraction,
    select,
    tier_config,
    tiers_of,
)
from training.select import LIGHTGBM, LOGISTIC, Selection, selection_data
from training.split import time_cuts
from training.tiers import TierModel, TierSource, calibrated_tier_models
from training.train import MONOTONE_INCREASING, FittedModel, LgbmParams, fit_model, float32_thresholds

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client, Future

log = logging.getLogger(__name__)

SELECTION_ROWS = 300_000  # newest training rows model selection and the tier-source choice run on
FEATURE_FIT_ROWS = 1_000_000  # newest training rows the feature state and the baseline are fitted on
SIMILAR_CASES_ROWS = 1_000_000  # newest reviewed listings in the similar-cases index (plus every reject)
HELD_OUT_ROWS = 1_000_000  # newest rows of the calibration part, and of the test part, that are used
ROWS_PER_PARTITION = 200_000  # partitions after the shuffle by merchant (at least two per worker)
STOP_FRACTION = 0.1  # newest share of the training rows that early stopping watches, as `fit_lightgbm`
MAX_PROBLEMS = 20

# internal columns of the partitions on the workers
RANK, ROLE, WEIGHT, TIER, LABEL = "_rank", "_role", "_weight", "_tier", "_label"
# roles: training rows fitted on, early-stopping rows, calibration, test, held-out rows left unused
FIT, STOP, CAL, TEST, UNUSED = 0, 1, 2, 3, 4


def fit_on_cluster(options: TrainOptions, config: DataConfig, stage: Any) -> Fitted:
    """The table-sized stages of `training.pipeline.train` on the cluster `options.cluster` names."""
    assert options.cluster is not None
    spec = ClusterSpec.parse(options.cluster)
    if config.timestamp is None:
        raise ValueError(
            f"--cluster: training on a cluster needs a timestamp column; {config.where()} has `time_order: row`, "
            "whose split follows the row order of one file (train it without --cluster)"
        )
    import dask

    # the export's own column types on every partition, as `load_table` reads them in one process
    with dask.config.set({"dataframe.convert-string": False}), contextlib.ExitStack() as stack:
        with stage(f"connect to {spec.describe()}"):
            client = stack.enter_context(cluster_client(spec))
        return ClusterTraining(client, options, config, stage).run()


@dataclass(frozen=True)
class Layout:
    """Where each rank of the stable time order falls: the split's parts and the sampled rows."""

    n: int
    n_train: int
    n_cal: int
    stop_start: int  # first early-stopping row (the newest tenth of the training part)
    feature_start: int  # first row of the feature sample
    selection_start: int  # first row of the selection sample
    cal_start: int  # first calibration row used (the newest HELD_OUT_ROWS of the part)
    test_start: int  # first test row used

    @classmethod
    def of(cls, n: int, n_train: int, n_cal: int) -> Layout:
        return cls(
            n=n,
            n_train=n_train,
            n_cal=n_cal,
            stop_start=n_train - max(1, int(n_train * STOP_FRACTION)),
            feature_start=max(0, n_train - FEATURE_FIT_ROWS),
            selection_start=max(0, n_train - SELECTION_ROWS),
            cal_start=max(n_train, n_train + n_cal - HELD_OUT_ROWS),
            test_start=max(n_train + n_cal, n - HELD_OUT_ROWS),
        )

    def roles(self, rank: np.ndarray) -> np.ndarray:
        bounds = [
            rank < self.stop_start,
            rank < self.n_train,
            rank < self.cal_start,
            rank < self.n_train + self.n_cal,
            rank < self.test_start,
        ]
        return np.select(bounds, [FIT, STOP, UNUSED, CAL, UNUSED], TEST).astype(np.int8)

    def sizes(self) -> dict[str, int]:
        """The rows of each part that are used."""
        return {
            "train": self.n_train,
            "calibration": self.n_train + self.n_cal - self.cal_start,
            "test": self.n - self.test_start,
        }

    @property
    def unused(self) -> int:
        return self.cal_start - self.n_train + self.test_start - self.n_train - self.n_cal


class ClusterTraining:
    """The table-sized stages on the cluster, one method per stage; `run` chains them."""

    def __init__(self, client: Client, options: TrainOptions, config: DataConfig, stage: Any):
        self.client, self.options, self.config, self.stage = client, options, config, stage
        self.notes: list[str] = []
        self.parts: list[Future] = []  # the partitions on the workers

    def prepare(self) -> None:
        """Load, validate and split the data; with merchant history on, shuffle it by merchant and add
        each row's point-in-time merchant features. Sets `parts` (futures of the partitions, each row
        with its time rank, role, weight and tier), `layout`, `snapshot`, `tiers_train`, `example`."""
        options, client = self.options, self.client
        with self.stage("load and validate data on the cluster"):
            raw = _read(options.data)
            self.parts = self._validated(raw)
            self.example = raw.partitions[raw.npartitions - 1].compute()[self.config.listing_columns].tail(5)
            slim = pd.concat(
                client.gather([client.submit(_slim, p, self.config) for p in self.parts]), ignore_index=True
            )
            self._check_unique_ids(slim)
        self.config, notes = tier_config(self.config, slim, options)
        self.notes += notes
        config = self.config
        with self.stage("split by time"):
            self.layout, rank = self._layout(slim)
            offsets = self._place_rows(rank)
            timeline = ReviewTimeline.of(slim["_reviewed_us"].to_numpy(), slim[config.label].to_numpy())
            self.tiers_train = tiers_of(slim, config)[rank < self.layout.n_train] if config.tiered else None
            del slim
        self.snapshot: pd.DataFrame | None = None
        if MERCHANT_HISTORY in config.feature_groups:
            with self.stage("shuffle outcomes by merchant; point-in-time merchant history per merchant partition"):
                self.snapshot = self._merchant_history(timeline, rank, offsets)

    def fit_feature_state(self, sample: pd.DataFrame, groups: tuple[str, ...]) -> tuple[FeatureBuilder, pd.DataFrame]:
        """The feature builder fitted on `sample` (the newest training rows), and their features."""
        builder = FeatureBuilder(self.config, seed=self.options.seed, feature_groups=groups)
        return builder, builder.fit_transform(sample, None, merchant=_merchant_columns(sample), snapshot=self.snapshot)

    def run(self) -> Fitted:
        self.prepare()
        options, config, layout = self.options, self.config, self.layout
        with self.stage(f"select the model on the newest {min(layout.n_train, SELECTION_ROWS):,} training rows"):
            sample = self.rows(layout.feature_start, layout.n_train)
            selection, tier_sources = self._select(sample.iloc[layout.selection_start - layout.feature_start :])
        chosen = selection.winner.candidate
        with self.stage(f"fit the feature state on the newest {len(sample):,} training rows"):
            builder, X_sample = self.fit_feature_state(sample, chosen.groups)
            fit = _ClusterFit(self.client, builder, chosen.kind, chosen.params, options.seed)
            fit.local = (X_sample, sample[config.label].to_numpy(dtype=np.int64), audit_weights(sample))
            del sample
        with self.stage(f"build features on the cluster ({layout.n:,} rows)"):
            fit.features = self.features(builder, X_sample)
        with self.stage("bring the calibration and test rows here; index listings for product identification"):
            held_out, identifier, matches = self._held_out_and_identification()
            self.parts = []  # the listings' columns leave the workers' memory; the features stay
            calibration, test, X_cal, X_test = self._held_out_features(held_out, fit.features, builder)
        with self.stage(f"fit {selection.winner.name} on the whole training part (Dask)"):
            model = fit.model(None)
        with self.stage("fit logistic-regression baseline (on the feature sample)"):
            baseline = fit_model(LOGISTIC, *fit.local[:2], fit.categorical, seed=options.seed, weight=fit.local[2])
        w_cal = audit_weights(calibration)
        tier_models = []
        if config.tiered:
            with self.stage(f"fit one {selection.winner.name} per tier ({', '.join(config.tier_names)})"):
                own = {source.name: source.own for source in tier_sources}
                tier_models = self._tier_models(fit, model, own, X_cal, tiers_of(calibration, config), w_cal)
        self._sample_notes(layout, chosen.kind)
        return Fitted(
            config=config,
            notes=self.notes,
            sizes=layout.sizes(),
            selection=selection,
            tier_sources=tier_sources,
            builder=builder,
            model=model,
            baseline=baseline,
            tier_models=tier_models,
            calibration=calibration,
            test=test,
            X_cal=X_cal,
            X_test=X_test,
            w_cal=w_cal,
            identifier=identifier,
            matches=matches,
            example=self.example.reset_index(drop=True),
        )

    def _select(self, rows: pd.DataFrame) -> tuple[Selection, list[TierSource]]:
        """Model selection and each tier's source on `rows`, the newest training rows (time order)."""
        options = self.options
        rows = rows.reset_index(drop=True)
        inner = selection_data(
            rows,
            None,
            self.config,
            seed=options.seed,
            validation_fraction=options.validation_fraction,
            feature_groups=options.feature_groups,
            merchant=_merchant_columns(rows),
            snapshot=self.snapshot,
            train_rows=self.layout.n_train,
        )
        return select(inner, rows, self.config, options, self.stage)

    def _held_out_features(
        self, held_out: pd.DataFrame, features: list[Future], builder: FeatureBuilder
    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """The calibration rows, the test rows and the features of each, row for row, in time order."""
        X_held = self.gather_features(features, CAL, TEST, columns=[*builder.feature_names, RANK])
        X_held = X_held.sort_values(RANK, kind="stable").drop(columns=RANK).reset_index(drop=True)
        is_cal = held_out[RANK].to_numpy() < self.layout.n_train + self.layout.n_cal
        held_out = held_out.drop(columns=RANK)
        calibration, test = (held_out[m].reset_index(drop=True) for m in (is_cal, ~is_cal))
        X_cal, X_test = (X_held[m].reset_index(drop=True) for m in (is_cal, ~is_cal))
        return calibration, test, X_cal, X_test

    def _tier_models(
        self,
        fit: _ClusterFit,
        overall: FittedModel,
        own: dict[str, bool],
        X_cal: pd.DataFrame,
        tiers_cal: np.ndarray,
        w_cal: np.ndarray | None,
    ) -> list[TierModel]:
        assert self.tiers_train is not None
        names = self.config.tier_names
        violations = {name: int((self.tiers_train == name).sum()) for name in names}
        return calibrated_tier_models(
            names, own, overall, fit.model, violations, self.layout.n_train, X_cal, tiers_cal, w_cal
        )

    # --- load and split ----------------------------------------------------------------------------
    def _validated(self, raw: dd.DataFrame) -> list[Future]:
        """One future per non-empty partition, validated; every partition's problems raised together."""
        import dask

        client = self.client
        checked = client.compute([dask.delayed(_validate)(p, self.config, k) for k, p in enumerate(raw.to_delayed())])
        problems = [p for part in client.gather([client.submit(_problems_of, c) for c in checked]) for p in part]
        if problems:
            more = [f"... and {len(problems) - MAX_PROBLEMS} more problems"] if len(problems) > MAX_PROBLEMS else []
            raise DataValidationError([*problems[:MAX_PROBLEMS], *more])
        sizes = client.gather([client.submit(_size_of, c) for c in checked])
        parts = [client.submit(_frame_of, c) for c, n in zip(checked, sizes, strict=True) if n]
        if not parts:
            raise DataValidationError(["the outcomes table has no rows"])
        return parts

    def _check_unique_ids(self, slim: pd.DataFrame) -> None:
        """Duplicate ids across partitions (`validate_history` finds them within one)."""
        hashes, counts = np.unique(slim["_id_hash"].to_numpy(), return_counts=True)
        repeated = hashes[counts > 1]
        if not len(repeated):
            return
        column = self.config.id
        ids = pd.concat(
            self.client.gather([self.client.submit(_ids_with_hash, p, column, repeated) for p in self.parts])
        )
        counted = ids.value_counts()
        duplicated = counted[counted > 1]
        if len(duplicated):  # else only a hash collision
            listed = ", ".join(repr(x) for x in duplicated.index[:5])
            raise DataValidationError(
                [
                    f"column {column!r}: {int(duplicated.sum())} rows in different partitions share a duplicated id "
                    f"({len(duplicated)} ids: {listed})"
                ]
            )

    def _layout(self, slim: pd.DataFrame) -> tuple[Layout, np.ndarray]:
        """The split of `split_by_time` on the creation times, and each row's rank in the stable time order."""
        options, config = self.options, self.config
        fraction, note = choose_calibration_fraction(slim, config, options)
        self.notes += [note] if note else []
        created = slim[config.timestamp]
        order = np.argsort(created.to_numpy(), kind="stable")
        rank = np.empty(len(order), dtype=np.int64)
        rank[order] = np.arange(len(order))
        cal_start, test_start = time_cuts(created.iloc[order], fraction, options.test_fraction)
        n_train, n_cal = int((created < cal_start).sum()), int(((created >= cal_start) & (created < test_start)).sum())
        if not 0 < n_train < n_train + n_cal < len(slim):
            raise ValueError("time split: a part is empty; the data spans too few distinct timestamps")
        return Layout.of(len(slim), n_train, n_cal), rank

    def _place_rows(self, rank: np.ndarray) -> np.ndarray:
        """Give each partition's rows their time rank, role, weight and tier (`_place`); partition k
        holds the ranks `rank[offsets[k]:offsets[k + 1]]`, returns the offsets."""
        parts, self.parts = self.parts, []  # each old partition is freed once its placed copy exists
        sizes = self.client.gather([self.client.submit(len, p) for p in parts])
        offsets = np.concatenate([[0], np.cumsum(sizes)])
        self.parts = [
            self.client.submit(_place, p, rank[offsets[k] : offsets[k + 1]], self.layout, self.config)
            for k, p in enumerate(parts)
        ]
        return offsets

    # --- merchant history --------------------------------------------------------------------------
    def _merchant_history(self, timeline: ReviewTimeline, rank: np.ndarray, offsets: np.ndarray) -> pd.DataFrame:
        """Each row's point-in-time merchant features, added to its partition; returns the snapshot.

        Only the outcome columns merchant history reads are shuffled by merchant (the listings stay
        where they are); each merchant partition computes its rows' features with the global timeline
        for the prior, and the features go back to the rows' partitions by time rank."""
        import dask.dataframe as dd

        client, config = self.client, self.config
        columns = [config.merchant, config.timestamp, review_time_column(config), config.label, RANK]
        events = [client.submit(_columns, p, columns) for p in self.parts]
        meta = client.submit(_empty, events[0]).result()
        workers = max(1, len(client.scheduler_info().get("workers", {})))
        count = max(2 * workers, math.ceil(self.layout.n / ROWS_PER_PARTITION))
        frame = dd.from_delayed(events, meta=meta, verify_meta=False)
        by_merchant = client.compute(frame.shuffle(on=config.merchant, npartitions=count).to_delayed())
        del events, frame
        shared = client.scatter(timeline, broadcast=True)
        computed = client.gather([client.submit(_merchant_features, p, shared, config) for p in by_merchant])
        snapshots = client.gather([client.submit(merchant_snapshot, p, config) for p in by_merchant])
        del by_merchant
        by_rank = np.empty((self.layout.n, len(MERCHANT_FEATURES)))
        for part in computed:
            by_rank[part[RANK].to_numpy()] = part[list(MERCHANT_FEATURES)].to_numpy()
        del computed
        parts, self.parts = self.parts, []
        self.parts = [
            client.submit(_with_merchant_columns, p, by_rank[rank[offsets[k] : offsets[k + 1]]])
            for k, p in enumerate(parts)
        ]
        return pd.concat(snapshots).sort_index()

    # --- features ----------------------------------------------------------------------------------
    def rows(self, start: int, stop: int) -> pd.DataFrame:
        """Rows ranked in [start, stop), in time order, with every column the partitions hold."""
        rows = self.client.gather([self.client.submit(_ranked, p, start, stop) for p in self.parts])
        return pd.concat(rows, ignore_index=True).sort_values(RANK, kind="stable").reset_index(drop=True)

    def features(self, builder: FeatureBuilder, X_sample: pd.DataFrame) -> list[Future]:
        """Per partition, its rows' features and the columns the fits read (`_features`); `X_sample`:
        the features `fit_feature_state` gave the sample, whose text scores are out of fold."""
        client, parts, layout = self.client, self.parts, self.layout
        texts = [name for name in ("text_score", "text_score_chars") if name in builder.feature_names]
        shared_builder = client.scatter(builder, broadcast=True)
        oof = client.scatter(X_sample[texts].to_numpy(), broadcast=True)
        features = [client.submit(_features, p, shared_builder, oof, texts, layout.feature_start) for p in parts]
        client.gather([client.submit(len, f) for f in features])  # any feature error surfaces here
        return features

    def gather_features(self, features: list[Future], *roles: int, columns: list[str]) -> pd.DataFrame:
        rows = self.client.gather([self.client.submit(_of_roles, f, roles, columns) for f in features])
        return pd.concat(rows, ignore_index=True)

    # --- held-out rows and identification ----------------------------------------------------------
    def _held_out_and_identification(self) -> tuple[pd.DataFrame, Any, pd.Series]:
        """The calibration and test rows (time order), the product identifier the bundle ships, and the
        point-in-time product matches of the held-out rows."""
        config, client, layout = self.config, self.client, self.layout
        columns = client.submit(_listing_columns, self.parts[0]).result()
        held_out = self._listings(CAL, TEST, columns=columns)
        first_similar = max(0, layout.n - SIMILAR_CASES_ROWS)
        rejected = self._listings(FIT, STOP, columns=columns, rejected_or_from=first_similar)
        catalogue = catalogue_of(self.options)
        known = pd.concat([rejected, held_out], ignore_index=True).sort_values(RANK, kind="stable")
        known = known.reset_index(drop=True)
        is_reject = known[config.label].to_numpy() == 1
        before_held_out = known[RANK].to_numpy() < layout.n_train
        # rejects are all a held-out row is matched against; the train rows that are not rejected are
        # there for the similar-cases index only
        matched = known[is_reject | ~before_held_out]
        matches = identify_history(matched, config, catalogue)[PRODUCT_MATCH].set_axis(matched[config.id])
        similar = known[is_reject | (known[RANK].to_numpy() >= first_similar)]
        identifier = build_identifier(similar, config, catalogue)
        if first_similar > 0:
            self.notes.append(
                f"similar cases: the review console's index holds every rejected listing and the newest "
                f"{SIMILAR_CASES_ROWS:,} reviewed ones ({len(similar):,} of {layout.n:,} rows)"
            )
        return held_out, identifier, matches

    def _listings(self, *roles: int, columns: list[str], rejected_or_from: int | None = None) -> pd.DataFrame:
        label = self.config.label
        rows = self.client.gather(
            [self.client.submit(_listings_of, p, roles, columns, label, rejected_or_from) for p in self.parts]
        )
        return pd.concat(rows, ignore_index=True).sort_values(RANK, kind="stable").reset_index(drop=True)

    def _sample_notes(self, layout: Layout, kind: str) -> None:
        if layout.unused:
            self.notes.append(
                f"calibration and test used the newest {HELD_OUT_ROWS:,} rows of their parts "
                f"({layout.unused:,} older held-out rows unused)"
            )
        if layout.n_train > SELECTION_ROWS:
            self.notes.append(
                f"model selection and the tier-model choice ran on the newest {SELECTION_ROWS:,} of "
                f"{layout.n_train:,} training rows"
            )
        if layout.n_train > FEATURE_FIT_ROWS:
            fitted_here = "the model, " if kind != LIGHTGBM else ""
            self.notes.append(
                f"the feature state (text model, category codes, price norms), {fitted_here}and the logistic "
                f"baseline were fitted on the newest {FEATURE_FIT_ROWS:,} of {layout.n_train:,} training rows"
            )


class _ClusterFit:
    """Fits the chosen model kind on the training part: LightGBM with `lightgbm.dask` on the workers,
    the logistic model here on the feature sample (`local`)."""

    def __init__(self, client: Client, builder: FeatureBuilder, kind: str, params: Any, seed: int):
        self.client, self.kind, self.seed = client, kind, seed
        self.features: list[Future] = []  # `ClusterTraining.features`
        self.params: LgbmParams = params or LgbmParams()
        self.columns = list(builder.feature_names)
        self.categorical = list(builder.categorical_features)
        self.local: tuple[pd.DataFrame, np.ndarray, np.ndarray | None] | None = None

    def model(self, tier: str | None) -> FittedModel:
        """The model of the overall label (`tier` None) or of one tier's violations."""
        if self.kind != LIGHTGBM:
            assert self.local is not None
            X, y, w = self.local
            return fit_model(self.kind, X, y, self.categorical, seed=self.seed, weight=w)
        return FittedModel(LIGHTGBM, booster=self._lightgbm(tier))

    def _lightgbm(self, tier: str | None) -> Any:
        import dask.dataframe as dd
        from lightgbm.dask import DaskLGBMClassifier

        client = self.client
        columns = [*self.columns, "_y", WEIGHT]
        fit_rows = [client.submit(_training_rows, f, (FIT,), self.columns, tier) for f in self.features]
        meta = client.submit(_empty, fit_rows[0]).result()
        frame = dd.from_delayed(fit_rows, meta=meta[columns], verify_meta=False)
        lgb_params = self.params.to_lightgbm(self.seed)
        lgb_params.pop("num_threads")  # lightgbm.dask gives each worker process its own threads
        lgb_params["monotone_constraints"] = [1 if c in MONOTONE_INCREASING else 0 for c in self.columns]
        estimator = DaskLGBMClassifier(client=client, n_estimators=self.params.max_rounds, **lgb_params)
        estimator.fit(
            frame[self.columns], frame["_y"], sample_weight=frame[WEIGHT], categorical_feature=self.categorical
        )
        model_str = estimator.booster_.model_to_string()
        del fit_rows, frame
        curve = self._stop_curve(model_str, tier)
        rounds = early_stopping_rounds(curve, self.params.early_stopping_rounds)
        log.info("lightgbm.dask: %d rounds grown, %d kept by early stopping", len(curve), rounds)
        return float32_thresholds(estimator.booster_.model_to_string(num_iteration=rounds))

    def _stop_curve(self, model_str: str, tier: str | None) -> np.ndarray:
        """Weighted log loss of the early-stopping rows after each round, summed over the partitions."""
        client = self.client
        shared = client.scatter(model_str, broadcast=True)
        sums = client.gather([client.submit(_log_loss_by_round, f, shared, self.columns, tier) for f in self.features])
        losses = np.sum([s[0] for s in sums], axis=0)
        weights = float(sum(s[1] for s in sums))
        return losses / max(weights, 1e-12)


def early_stopping_rounds(curve: np.ndarray, patience: int) -> int:
    """The rounds LightGBM's early stopping keeps on a validation loss curve (lower is better): the best
    round seen before `patience` rounds without improvement."""
    best, best_round = math.inf, 0
    for i, value in enumerate(curve):
        if value < best:
            best, best_round = float(value), i
        elif i - best_round >= patience:
            break
    return best_round + 1


# --- tasks on the workers (module-level functions: they travel by reference) -----------------------
def _read(path: Path) -> dd.DataFrame:
    import dask.dataframe as dd

    if not path.exists():
        raise FileNotFoundError(f"data not found: {path}")
    if path.is_file() and path.suffix.lower() not in (".parquet", ".pq"):
        raise DataValidationError(
            [f"could not read {path}: --cluster reads Parquet (a file or a directory of parts), not {path.suffix!r}"]
        )
    try:
        return dd.read_parquet(str(path))
    except Exception as exc:  # any reader failure becomes one message that names the file
        raise DataValidationError([f"could not read {path}: {type(exc).__name__}: {exc}"]) from exc


def _validate(raw: pd.DataFrame, config: DataConfig, part: int) -> tuple[pd.DataFrame | None, list[str]]:
    if raw.empty:
        return None, []
    try:
        return validate_history(raw, config), []
    except DataValidationError as exc:
        return None, [f"partition {part}: {problem}" for problem in exc.problems]


def _problems_of(checked: tuple[pd.DataFrame | None, list[str]]) -> list[str]:
    return checked[1]


def _size_of(checked: tuple[pd.DataFrame | None, list[str]]) -> int:
    return 0 if checked[0] is None else len(checked[0])


def _frame_of(checked: tuple[pd.DataFrame | None, list[str]]) -> pd.DataFrame:
    assert checked[0] is not None
    return checked[0]


def _slim(part: pd.DataFrame, config: DataConfig) -> pd.DataFrame:
    """What the split needs of each row: creation time, label, review time, violation reason, id hash."""
    slim = pd.DataFrame(
        {
            config.timestamp: part[config.timestamp].to_numpy(),
            config.label: part[config.label].to_numpy(dtype=np.int8),
            "_reviewed_us": to_microseconds(part[review_time_column(config)]),
            "_id_hash": pd.util.hash_pandas_object(part[config.id], index=False).to_numpy(),
        }
    )
    if config.violation_reason and config.violation_reason in part:
        slim[config.violation_reason] = part[config.violation_reason].astype("category").to_numpy()
    return slim


def _ids_with_hash(part: pd.DataFrame, column: str, hashes: np.ndarray) -> pd.Series:
    ids = part[column]
    return ids[np.isin(pd.util.hash_pandas_object(ids, index=False).to_numpy(), hashes)]


def _place(part: pd.DataFrame, rank: np.ndarray, layout: Layout, config: DataConfig) -> pd.DataFrame:
    """The partition with each row's time rank, role, weight and (tiered) violation tier."""
    weight = audit_weights(part)
    placed = part.assign(
        **{RANK: rank, ROLE: layout.roles(rank), WEIGHT: 1.0 if weight is None else weight},
    )
    if config.tiered:
        placed[TIER] = tiers_of(part, config)
    return placed


def _empty(part: pd.DataFrame) -> pd.DataFrame:
    return part.iloc[:0]


def _columns(part: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    return part[columns]


def _merchant_features(outcomes: pd.DataFrame, timeline: ReviewTimeline, config: DataConfig) -> pd.DataFrame:
    """A merchant partition's rows' merchant features (each of its merchants' outcomes all here), by rank."""
    features = merchant_history(outcomes, outcomes, config, timeline=timeline)
    return features.assign(**{RANK: outcomes[RANK].to_numpy()})


def _with_merchant_columns(part: pd.DataFrame, features: np.ndarray) -> pd.DataFrame:
    return part.assign(**{name: features[:, j] for j, name in enumerate(MERCHANT_FEATURES)})


def _merchant_columns(rows: pd.DataFrame) -> pd.DataFrame | None:
    return rows[list(MERCHANT_FEATURES)] if MERCHANT_FEATURES[0] in rows else None


def _ranked(part: pd.DataFrame, start: int, stop: int) -> pd.DataFrame:
    rank = part[RANK].to_numpy()
    return part[(rank >= start) & (rank < stop)]


def _features(
    part: pd.DataFrame, builder: FeatureBuilder, oof: np.ndarray, texts: list[str], oof_start: int
) -> pd.DataFrame:
    """The partition's features (training rows of the feature sample with their out-of-fold text
    scores), with the label, weight, role, rank and tier columns the fits read."""
    X = builder.transform(part.reset_index(drop=True), merchant=_merchant_columns(part))
    rank = part[RANK].to_numpy()
    sampled = np.flatnonzero((rank >= oof_start) & (part[ROLE].to_numpy() <= STOP))
    for j, name in enumerate(texts):
        values = X[name].to_numpy(copy=True)
        values[sampled] = oof[rank[sampled] - oof_start, j]
        X[name] = values
    extra = [c for c in (ROLE, RANK, WEIGHT, TIER) if c in part]
    labels = part[builder.config.label].to_numpy(dtype=np.int64)
    return pd.concat([X, part[extra].reset_index(drop=True)], axis=1).assign(**{LABEL: labels})


def _of_roles(features: pd.DataFrame, roles: tuple[int, ...], columns: list[str]) -> pd.DataFrame:
    return features.loc[features[ROLE].isin(roles).to_numpy(), columns]


def _training_rows(
    features: pd.DataFrame, roles: tuple[int, ...], columns: list[str], tier: str | None
) -> pd.DataFrame:
    rows = features[features[ROLE].isin(roles).to_numpy()]
    y = rows[LABEL].to_numpy() if tier is None else (rows[TIER].to_numpy() == tier)
    return rows[columns].assign(_y=y.astype(np.int64), **{WEIGHT: rows[WEIGHT].to_numpy()})


def _log_loss_by_round(
    features: pd.DataFrame, model_str: str, columns: list[str], tier: str | None
) -> tuple[np.ndarray, float]:
    """(weighted log-loss sum of this partition's early-stopping rows after each round, their weight).

    One pass of the model gives each row's leaf in every tree; the raw score after round k is the sum of
    those leaves' values up to k (what `predict(raw_score=True, num_iteration=k)` returns)."""
    import lightgbm as lgb

    rows = _training_rows(features, (STOP,), columns, tier)
    booster = lgb.Booster(model_str=model_str)
    rounds = booster.current_iteration()
    if rows.empty:
        return np.zeros(rounds), 0.0
    y, w = rows["_y"].to_numpy(dtype=np.float64), rows[WEIGHT].to_numpy(dtype=np.float64)
    leaves = np.asarray(booster.predict(rows[columns], pred_leaf=True, num_threads=1), dtype=np.int64)
    leaves = leaves.reshape(len(rows), -1)
    raw = np.zeros(len(rows))
    losses = np.empty(rounds)
    for k in range(rounds):
        values = np.array([booster.get_leaf_output(k, j) for j in range(int(leaves[:, k].max()) + 1)])
        raw += values[leaves[:, k]]
        p = np.clip(1.0 / (1.0 + np.exp(-raw)), 1e-15, 1 - 1e-15)
        losses[k] = float(np.sum(w * -(y * np.log(p) + (1 - y) * np.log(1 - p))))
    return losses, float(w.sum())


def _listing_columns(part: pd.DataFrame) -> list[str]:
    """The validated export's columns (without the internal and merchant-feature ones), and the rank."""
    internal = {ROLE, WEIGHT, TIER, *MERCHANT_FEATURES}
    return [c for c in part.columns if c not in internal]


def _listings_of(
    part: pd.DataFrame, roles: tuple[int, ...], columns: list[str], label: str, rejected_or_from: int | None
) -> pd.DataFrame:
    keep = part[ROLE].isin(roles).to_numpy()
    if rejected_or_from is not None:
        keep = keep & ((part[label].to_numpy() == 1) | (part[RANK].to_numpy() >= rejected_or_from))
    return part.loc[keep, columns]
