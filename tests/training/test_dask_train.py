"""Training on a Dask cluster: the same features as one process (point in time included), and a bundle
like one process's. One LocalCluster of two worker processes serves the module; each test reaches it
by its scheduler address, as `--cluster tcp://...` would."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from bundle.load import Bundle
from features.builder import FeatureBuilder
from features.config import load_config
from features.merchant import MERCHANT_FEATURES
from features.validate import load_table, validate_history
from training.distributed import CAL, FIT, RANK, STOP, TEST, UNUSED, ClusterTraining, Layout, early_stopping_rounds
from training.pipeline import TrainOptions, choose_calibration_fraction, train
from triage.cli import app

ROWS = 4000
CLUSTER_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A LocalCluster of two single-threaded worker processes; its address for `--cluster`."""
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, scheduler_port=0, dashboard_address=":0", timeout=60
    )
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close(timeout=CLUSTER_TIMEOUT_S)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated history as one Parquet file and as three parts (the same rows, in order)."""
    from training.generate import write_dataset

    root = tmp_path_factory.mktemp("dask_data")
    write_dataset(root, rows=ROWS, seed=5)
    write_parts(pd.read_parquet(root / "reviews.parquet"), root / "parts")
    return root


def write_parts(table: pd.DataFrame, directory: Path, parts: int = 3) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    step = -(-len(table) // parts)
    for k in range(parts):
        table.iloc[k * step : (k + 1) * step].to_parquet(directory / f"part-{k}.parquet", index=False)
    return directory


def no_stage(name: str) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def cluster_features(scheduler: str, parts: Path) -> tuple[pd.DataFrame, FeatureBuilder]:
    """Every row's features computed on the cluster (time order), with the feature groups all on."""
    from distributed import Client

    config = load_config(None)
    options = TrainOptions(data=parts, cluster=scheduler, show_progress=False, log_mlflow=False)
    with Client(scheduler, timeout=CLUSTER_TIMEOUT_S) as client:
        training = ClusterTraining(client, options, config, no_stage)
        training.prepare()
        layout = training.layout
        builder, X_sample = training.fit_feature_state(
            training.rows(layout.feature_start, layout.n_train), tuple(sorted(config.default_feature_groups))
        )
        futures = training.features(builder, X_sample)
        X = training.gather_features(futures, FIT, STOP, CAL, TEST, columns=[*builder.feature_names, RANK])
    return X.sort_values(RANK).drop(columns=RANK).reset_index(drop=True), builder


@pytest.mark.slow
def test_cluster_features_equal_one_process_features(scheduler: str, data: Path) -> None:
    """Text model (out of fold on the training rows), lexicons, prices, categories and the point-in-time
    merchant history: the numbers one process computes, row for row."""
    from training.split import split_by_time

    X, cluster_builder = cluster_features(scheduler, data / "parts")
    config = load_config(None)
    table = validate_history(load_table(data / "reviews.parquet", config), config)
    options = TrainOptions(data=data / "reviews.parquet")
    fraction, _ = choose_calibration_fraction(table, config, options)
    parts = split_by_time(table, config, fraction, options.test_fraction)
    builder = FeatureBuilder(config, seed=0, feature_groups=tuple(sorted(config.default_feature_groups)))
    expected = pd.concat(
        [
            builder.fit_transform(parts.train, history=table),
            builder.transform(parts.calibration, history=table),
            builder.transform(parts.test, history=table),
        ],
        ignore_index=True,
    )
    assert list(X.columns) == list(expected.columns)
    assert set(MERCHANT_FEATURES) <= set(X.columns) and "text_score" in X.columns
    np.testing.assert_allclose(X.to_numpy(), expected.to_numpy(), rtol=1e-6, atol=1e-6, equal_nan=True)
    assert cluster_builder.category_codes == builder.category_codes
    assert cluster_builder.snapshot is not None and builder.snapshot is not None
    pd.testing.assert_frame_equal(cluster_builder.snapshot, builder.snapshot)


@pytest.mark.slow
def test_outcomes_reviewed_after_a_listing_do_not_change_its_cluster_merchant_features(
    scheduler: str, data: Path, tmp_path: Path
) -> None:
    table = pd.read_parquet(data / "reviews.parquet")
    cutoff = table["created_at"].quantile(0.5)
    flipped = table.copy()
    later = flipped["reviewed_at"] >= cutoff
    flipped.loc[later, "label"] = 1 - flipped.loc[later, "label"]
    before, _ = cluster_features(scheduler, data / "parts")
    after, _ = cluster_features(scheduler, write_parts(flipped, tmp_path / "parts"))
    created = table["created_at"].sort_values(kind="stable").to_numpy()
    seen_cutoff = created <= cutoff.to_datetime64()
    merchant = list(MERCHANT_FEATURES)
    pd.testing.assert_frame_equal(before.loc[seen_cutoff, merchant], after.loc[seen_cutoff, merchant])
    assert not before.loc[~seen_cutoff, merchant].equals(after.loc[~seen_cutoff, merchant])  # it does matter later


@pytest.mark.slow
def test_cluster_bundle_is_a_normal_bundle(scheduler: str, data: Path, tmp_path: Path) -> None:
    """Training on the cluster exports a bundle that loads, scores and reports as one process's does,
    and ranks the test split about as well."""

    def options(data_path: Path, out: Path, cluster: str | None) -> TrainOptions:
        return TrainOptions(
            data=data_path, out=out, cluster=cluster, search_trials=2, show_progress=False, log_mlflow=False
        )

    on_cluster = train(options(data / "parts", tmp_path / "dask", scheduler))
    one = train(options(data / "reviews.parquet", tmp_path / "one", None))
    bundle_dir = on_cluster.bundle_dir
    bundle = Bundle.load(bundle_dir)
    risk = bundle.risk(pd.read_parquet(data / "reviews.parquet").tail(20))
    assert risk.shape == (20,) and np.all((risk >= 0) & (risk <= 1))
    metrics = json.loads((bundle_dir / "metrics.json").read_text())
    assert metrics["split_sizes"] == one.metrics["split_sizes"]
    assert set(metrics) == set(one.metrics)
    assert metrics["model"] == one.metrics["model"]  # the same selection: it ran on the same rows
    assert abs(metrics["test"]["roc_auc"] - one.metrics["test"]["roc_auc"]) < 0.02
    assert (bundle_dir / "policy.json").is_file() and (bundle_dir / "history.parquet").is_file()
    assert {p.name for p in bundle_dir.iterdir()} == {p.name for p in one.bundle_dir.iterdir()}


def test_only_the_newest_held_out_rows_are_used_past_held_out_rows(monkeypatch: pytest.MonkeyPatch) -> None:
    import training.distributed as distributed

    monkeypatch.setattr(distributed, "HELD_OUT_ROWS", 5)
    layout = Layout.of(n=100, n_train=60, n_cal=20)
    roles = layout.roles(np.arange(100))
    expected = [FIT] * 54 + [STOP] * 6 + [UNUSED] * 15 + [CAL] * 5 + [UNUSED] * 15 + [TEST] * 5
    np.testing.assert_array_equal(roles, expected)
    assert layout.sizes() == {"train": 60, "calibration": 5, "test": 5} and layout.unused == 30
    monkeypatch.setattr(distributed, "HELD_OUT_ROWS", 20)  # as large as the parts: every row used
    whole = Layout.of(n=100, n_train=60, n_cal=20)
    assert UNUSED not in whole.roles(np.arange(100)) and whole.unused == 0
    assert whole.sizes() == {"train": 60, "calibration": 20, "test": 20}


@pytest.mark.slow
def test_a_cluster_bundle_calibrates_and_tests_on_the_newest_held_out_rows(
    scheduler: str, data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import training.distributed as distributed

    monkeypatch.setattr(distributed, "HELD_OUT_ROWS", 300)
    result = train(
        TrainOptions(
            data=data / "parts", out=tmp_path, cluster=scheduler, search_trials=1, show_progress=False, log_mlflow=False
        )
    )
    metrics = json.loads((result.bundle_dir / "metrics.json").read_text())
    assert metrics["split_sizes"]["calibration"] == metrics["split_sizes"]["test"] == 300
    assert metrics["test"]["rows"] == 300
    assert any("newest 300 rows of their parts" in warning for warning in metrics["warnings"])
    table = pd.read_parquet(data / "reviews.parquet").sort_values("created_at", kind="stable")
    assert Bundle.load(result.bundle_dir).risk(table.tail(5)).shape == (5,)


def test_a_bad_cluster_value_is_refused_with_exit_code_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "--no-mlflow", "--cluster", "locl:2", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "--cluster 'locl:2'" in result.output and "local:N" in result.output


def test_early_stopping_keeps_the_best_round_before_the_patience_runs_out() -> None:
    curve = np.array([0.9, 0.8, 0.7, 0.71, 0.72, 0.69, 0.7, 0.71, 0.72, 0.73, 0.5])
    assert early_stopping_rounds(curve, patience=3) == 6  # stops at round 9; round 11's drop is never seen
    assert early_stopping_rounds(curve, patience=10) == 11
    assert early_stopping_rounds(np.array([0.5, 0.5, 0.5]), patience=1) == 1  # ties are no improvement


def test_log_loss_by_round_equals_the_loss_of_the_model_cut_at_each_round() -> None:
    import lightgbm as lgb

    from training.distributed import LABEL, ROLE, WEIGHT, _log_loss_by_round

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(2000, 4)), columns=list("abcd"))
    y = (X["a"] + rng.normal(size=2000) > 0).astype(np.int64)
    weight = rng.uniform(1, 3, size=2000)
    booster = lgb.train({"objective": "binary", "verbosity": -1, "num_leaves": 7}, lgb.Dataset(X, y), 20)
    rows = X.assign(**{ROLE: STOP, WEIGHT: weight, LABEL: y})
    losses, total = _log_loss_by_round(rows, booster.model_to_string(), list("abcd"), None)
    assert total == pytest.approx(weight.sum())
    for rounds in (1, 7, 20):
        p = np.asarray(booster.predict(X, num_iteration=rounds), dtype=np.float64)
        expected = -np.sum(weight * (y * np.log(p) + (1 - y) * np.log(1 - p))) / weight.sum()
        assert losses[rounds - 1] / total == pytest.approx(expected, rel=1e-9)
