"""Training on logged labels: audit-sampled rows weighted by 1 / inclusion_prob in fitting, calibration
and certification; bad inclusion probabilities refused by name."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from decision.audit import AuditPlan, draw_audits, inclusion_probabilities, pass_margin
from decision.policy import route
from features.config import DataConfig
from features.validate import DataValidationError, validate_history
from training.pipeline import TrainOptions, train


def _logged_export(generated_dir: Path, seed: int = 0) -> pd.DataFrame:
    """The built-in history, its newest 40% replayed as if a deployed policy had decided it: only
    reviewed rows and audited automated ones keep their label, with their inclusion probability."""
    reviews = pd.read_parquet(generated_dir / "reviews.parquet")
    oracle = pd.read_parquet(generated_dir / "oracle.parquet")
    risk = reviews[["listing_id"]].merge(oracle, on="listing_id", how="left")["limit_risk"].to_numpy()
    rng = np.random.default_rng(seed)
    old = np.clip(risk * np.exp(rng.normal(0.0, 0.3, len(risk))), 0.0, 1.0)  # the old model: a noisy view
    order = np.argsort(pd.to_datetime(reviews["created_at"]).to_numpy(), kind="stable")
    logged = np.zeros(len(reviews), dtype=bool)
    logged[order[int(0.6 * len(order)) :]] = True
    codes = route(old, 0.02, 0.95)
    pi = inclusion_probabilities(codes, pass_margin(old, 0.02), 0.1, AuditPlan(near_rate=0.3, block_rate=0.3))
    keep = ~logged | (codes == 1) | draw_audits(codes, pi, rng)
    out = reviews.assign(inclusion_prob=np.where(logged, pi, 1.0))[keep].reset_index(drop=True)
    return out


def test_weighted_training_certifies_on_audit_weighted_rows(generated_dir: Path, tmp_path: Path) -> None:
    export = _logged_export(generated_dir)
    assert (export["inclusion_prob"] < 1).any()
    data = tmp_path / "logged.parquet"
    export.to_parquet(data, index=False)
    result = train(
        TrainOptions(
            data=data, out=tmp_path / "models", recall=0.9, tiers=False, search_trials=2, log_mlflow=False,
            show_progress=False,
        )
    )  # fmt: skip
    thresholds = result.metrics["thresholds"]
    assert result.metrics["test"]["weighted"] is True  # test figures are estimates for traffic
    assert thresholds["targets"]["weighted"] is True
    assert set(thresholds["targets"]["strata"]) >= {"1", "0.1"}
    # shares are of traffic: weighted auto-pass is larger than the share of labelled rows passed
    assert 0.0 <= thresholds["achieved"]["auto_pass_share"] <= 1.0
    if thresholds["feasible"]:
        assert thresholds["bounds"]["recall_lower"] >= 0.9


def test_inclusion_probability_outside_0_1_is_named_with_its_rows() -> None:
    config = DataConfig()
    columns: dict[str, list[Any]] = {config.id: ["a", "b", "c"], config.label: [0, 1, 0]}
    if config.timestamp:
        columns[config.timestamp] = ["2025-01-01", "2025-01-02", "2025-01-03"]
    if config.merchant:
        columns[config.merchant] = ["m"] * 3
    columns.update({c: ["x"] * 3 for c in (*config.text, *config.categorical)})
    columns.update({c: [1.0] * 3 for c in config.numeric})
    frame = pd.DataFrame({**columns, "inclusion_prob": [1.0, 0.0, None]})
    with pytest.raises(DataValidationError, match=r"inclusion_prob.*row 1"):
        validate_history(frame, config)
    ok = validate_history(frame.assign(inclusion_prob=[1.0, 0.5, None]), config)
    assert ok["inclusion_prob"].tolist() == [1.0, 0.5, 1.0]  # blank: a fully labelled row


def _history_end(generated_dir: Path) -> str:
    """The newest creation time of the rows `_logged_export` leaves fully labelled (its oldest 60%)."""
    created = pd.to_datetime(pd.read_parquet(generated_dir / "reviews.parquet")["created_at"], utc=True)
    return created.sort_values(kind="stable").iloc[int(0.6 * len(created)) - 1].isoformat()


def _split(table: pd.DataFrame, **changes: Any) -> tuple[Any, list[str], str, DataConfig]:
    from features.config import load_config
    from training.pipeline import split_for_certification, tier_config

    options = TrainOptions(data=Path("unused"), tiers=False, **changes)
    config, _ = tier_config(load_config(None), table, options)
    parts, notes, rows_from = split_for_certification(table, config, options)
    return parts, notes, rows_from, config


def test_thin_audits_certify_on_the_newest_fully_labelled_rows(generated_dir: Path) -> None:
    """The newest 40% are audit-sampled at a 10% floor: too thin to certify recall 0.99 even with no miss,
    so calibration and test are the newest rows of the fully labelled history, and every later row trains.
    Recall 0.5 they can certify, and without the history's end nothing changes. A history too short to
    certify leaves the newest rows certifying, and says why; an end after audit-sampled rows is refused,
    naming the first of them."""
    from features.config import load_config

    table = validate_history(_logged_export(generated_dir), load_config(None))
    until = pd.Timestamp(_history_end(generated_dir))
    parts, notes, rows_from, config = _split(table, recall=0.99, fully_labelled_until=until.isoformat())

    def created(frame: pd.DataFrame) -> pd.Series:
        return pd.to_datetime(frame[config.timestamp], utc=True)

    assert rows_from == "newest fully labelled rows"
    assert created(parts.calibration).max() <= created(parts.test).min()
    assert created(parts.test).max() <= until
    assert created(parts.calibration).min() > created(parts.train[created(parts.train) <= until]).max()
    assert (parts.train["inclusion_prob"] < 1).any() and (parts.test["inclusion_prob"] == 1).all()
    assert created(parts.train).is_monotonic_increasing
    ids = pd.concat([parts.train, parts.calibration, parts.test])[config.id]
    assert ids.is_unique and set(ids) == set(table[config.id])  # every row in exactly one part
    assert any("certified on the newest fully labelled rows" in note and "recall >= 0.99" in note for note in notes)

    newest, _, rows_from, _ = _split(table, recall=0.99)
    assert rows_from == "newest rows"
    assert created(newest.test).max() > until and (newest.test["inclusion_prob"] < 1).any()
    enough, notes, rows_from, _ = _split(table, recall=0.5, fully_labelled_until=until.isoformat())
    assert rows_from == "newest rows" and created(enough.test).max() == created(newest.test).max()
    assert not any("fully" in n for n in notes)
    for short_history, why in ((created(table).min(), "cannot be split"), ("2000-01-01", "cannot be split")):
        kept, notes, rows_from, _ = _split(table, recall=0.99, fully_labelled_until=str(short_history))
        assert rows_from == "newest rows" and created(kept.test).max() == created(newest.test).max()
        assert any("audit-sampled too thinly" in n and why in n for n in notes), notes
    few = created(table).sort_values().iloc[1500]  # 1,500 fully labelled rows: too few violations for 0.99
    _, notes, rows_from, _ = _split(table, recall=0.99, fully_labelled_until=few.isoformat())
    assert rows_from == "newest rows" and any("hold too few violations too" in n for n in notes), notes
    first_sampled = created(table[table["inclusion_prob"] < 1]).min()
    for recall in (0.99, 0.5):  # refused whether or not the newest rows fall short
        with pytest.raises(
            ValueError, match=f"--fully-labelled-until .* audit-sampled .*{re.escape(first_sampled.isoformat())}"
        ):
            _split(table, recall=recall, fully_labelled_until=created(table).max().isoformat())


def test_train_with_the_history_end_certifies_the_policy_on_fully_labelled_rows(
    generated_dir: Path, tmp_path: Path
) -> None:
    """`triage train --fully-labelled-until`: the exact certificate on the history's newest rows, which the
    metrics name; a value that is not a time is a usage error naming the option."""
    import json

    from typer.testing import CliRunner

    from triage.cli import app

    data = tmp_path / "logged.parquet"
    _logged_export(generated_dir).to_parquet(data, index=False)
    until = _history_end(generated_dir)
    runner = CliRunner()
    bad = runner.invoke(
        app, ["train", "--data", str(data), "--fully-labelled-until", "yesterday-ish"], env={"COLUMNS": "400"}
    )
    assert bad.exit_code == 2 and "--fully-labelled-until" in bad.output and "not an ISO 8601 time" in bad.output
    out = tmp_path / "models"
    args = ["train", "--data", str(data), "--out", str(out), "--single-tier", "--recall", "0.99", "--no-mlflow"]
    result = runner.invoke(app, [*args, "--search-trials", "1", "--fully-labelled-until", until])
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "latest" / "metrics.json").read_text())
    certification = metrics["certification"]
    assert pd.Timestamp(certification["created"]["last"]) <= pd.Timestamp(until)
    assert certification["feasible"] and not metrics["thresholds"]["targets"].get("weighted")  # the exact one
    assert any("certified on the newest fully labelled rows" in w for w in metrics["warnings"])
    assert certification["rows_from"] == "newest fully labelled rows"
    card = (out / "latest" / "MODEL_CARD.md").read_text()
    assert "**Certification rows**: the newest fully labelled rows, created" in card
    # rule suggestions on the same rows flag the verdicts since the history as trained on, not held out
    suggest = runner.invoke(
        app, ["rules", "suggest", "--bundle", str(out / "latest"), "--data", str(data), "--top", "1"],
        env={"COLUMNS": "400"},
    )  # fmt: skip
    assert suggest.exit_code == 0, suggest.output
    assert "are newer than the bundle's held-out rows, which are the newest fully labelled ones" in suggest.output
