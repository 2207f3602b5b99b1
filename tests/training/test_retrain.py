"""`triage retrain` end to end: the service's verdicts -> train -> gate -> candidate; `triage promote`
then moves champion, records who and why in the registry and in the service's store."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from serving.store import DecisionRecord, create_store


def _log_reviewed(url: str, rows: pd.DataFrame) -> None:
    """The service decided these listings (human review) and reviewers gave the generator's verdicts."""
    store = create_store(url, group_commit=False)
    store.init_schema()
    outcome = ("label", "violation_reason", "review_seconds", "reviewed_at")
    listing_columns = [c for c in rows.columns if c not in outcome]
    records = []
    for row in rows.to_dict("records"):
        listing = {c: (row[c].isoformat() if isinstance(row[c], pd.Timestamp) else row[c]) for c in listing_columns}
        records.append(
            DecisionRecord(
                listing_id=str(row["listing_id"]),
                decision="human_review",
                automated=False,
                policy_version="p",
                listing=listing,
                priority=0.5,
            )
        )
    store.record_decisions(records)
    for record, row in zip(records, rows.to_dict("records"), strict=True):
        verdict = "reject" if row["label"] == 1 else "approve"
        store.record_review(record.decision_id, "reviewer", verdict, row.get("violation_reason") or None)
    store.close()


def test_retrain_gates_registers_the_candidate_and_promote_records_it_for_the_service(
    generated_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from serving.settings import get_settings
    from training.registry import CANDIDATE_ALIAS, CHAMPION_ALIAS, REGISTERED_MODEL
    from triage.cli import app

    history = pd.read_parquet(generated_dir / "reviews.parquet").sort_values("created_at").reset_index(drop=True)
    url, mlflow_uri = f"sqlite:///{tmp_path / 'service.db'}", f"sqlite:///{tmp_path / 'mlflow.db'}"
    _log_reviewed(url, history.tail(4000))
    history.head(len(history) - 4000).to_parquet(tmp_path / "history.parquet")
    monkeypatch.setenv("TRIAGE_DATABASE_URL", url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        retrained = runner.invoke(
            app,
            ["retrain", "--data", str(tmp_path / "history.parquet"), "--work", str(tmp_path / "labels"),
             "--out", str(tmp_path / "models"), "--holdout", "0.3", "--audit-volume", "2000000"],
        )  # fmt: skip
        promoted = runner.invoke(app, ["promote", "--reason", "gate passed", "--actor", "ds-lead",
                                       "--models-dir", str(tmp_path / "models")])  # fmt: skip
    finally:
        get_settings.cache_clear()

    assert retrained.exit_code == 0, retrained.output
    assert "gating on the newest 1,200 verdicts" in retrained.output
    assert "PASSED" in retrained.output and "@candidate" in retrained.output
    gate_rows = pd.read_parquet(tmp_path / "labels" / "gate.parquet")
    trained_rows = pd.read_parquet(tmp_path / "labels" / "train.parquet")
    assert not set(gate_rows["listing_id"]) & set(trained_rows["listing_id"])  # the gate's data is held out
    assert gate_rows["created_at"].min() >= pd.to_datetime(trained_rows["created_at"], utc=True).max()

    metrics = json.loads((tmp_path / "models" / "latest" / "metrics.json").read_text())
    if metrics["thresholds"]["feasible"]:  # the audit plan is for the stated production volume
        assert metrics["audit_sizing"]["traffic"] == 2_000_000

    client = MlflowClient(tracking_uri=mlflow_uri)
    candidate = client.get_model_version_by_alias(REGISTERED_MODEL, CANDIDATE_ALIAS)
    bundle_version = (tmp_path / "models" / "latest").resolve().name
    assert candidate.tags["gate"] == "passed" and '"passed": true' in candidate.tags["gate_report"]
    assert candidate.run_id is not None
    assert client.get_run(candidate.run_id).data.tags["bundle_version"] == bundle_version
    assert promoted.exit_code == 0, promoted.output
    champion = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
    assert champion.version == candidate.version and champion.tags["champion_by"] == "ds-lead"
    store = create_store(url, group_commit=False)
    change = store.latest_model_change(("promote",))
    store.close()
    assert change is not None and change.new_model == bundle_version and change.actor == "ds-lead"
    assert change.reason == "gate passed" and change.registry_version == str(candidate.version)


def test_make_retrain_and_promote_run_the_chain(generated_dir: Path) -> None:
    from tests.conftest import make_dry_run

    retrain = make_dry_run("retrain", f"DATA_DIR={generated_dir}", "SEED=3")
    assert f"triage retrain --data {generated_dir}/reviews.parquet --out models --seed 3" in retrain
    assert 'triage promote --reason "after the shadow week"' in make_dry_run("promote", "REASON=after the shadow week")
