"""`triage retrain` end to end: the service's verdicts -> train -> gate -> candidate; `triage promote`
then moves champion, records who and why in the registry and in the service's store."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from bundle.load import Bundle
from features.merchant import snapshot_cutoff_us
from serving.store import DecisionRecord, create_store


def _log_reviewed(url: str, rows: pd.DataFrame, id_column: str = "listing_id") -> None:
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
                listing_id=str(row[id_column]),
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


def _renamed_config(tmp_path: Path) -> Path:
    """The default data config with the id column `sku` and the title column `name`."""
    root = Path(__file__).resolve().parents[2]
    config = (root / "configs" / "data.yaml").read_text()
    config = config.replace("id: listing_id ", "id: sku ").replace("text: [title,", "text: [name,")
    assert "id: sku " in config and "text: [name," in config
    (tmp_path / "renamed.yaml").write_text(config)
    return tmp_path / "renamed.yaml"


FAST = ("--search-trials", "2")  # the challenger's hyperparameter search: what these tests check does not need 12


def _bundles(models: Path) -> set[Path]:
    return {p for p in models.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")}


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
    monkeypatch.setenv("TRIAGE_MODELS_DIR", str(tmp_path / "models"))  # the service's: promote's default
    get_settings.cache_clear()
    runner = CliRunner()
    latest = tmp_path / "models" / "latest"
    import training.pipeline

    ends: list[object] = []  # what each retrain's `train` was told about the end of the fully labelled rows
    split = training.pipeline.split_for_certification

    def spy(table: pd.DataFrame, config: object, options: training.pipeline.TrainOptions) -> object:
        ends.append(options.fully_labelled_until)
        return split(table, config, options)  # type: ignore[arg-type]

    monkeypatch.setattr("training.pipeline.split_for_certification", spy)
    try:
        retrained = runner.invoke(
            app,
            ["retrain", "--data", str(tmp_path / "history.parquet"), "--work", str(tmp_path / "labels"),
             "--out", str(tmp_path / "models"), *FAST, "--holdout", "0.3", "--audit-volume", "2000000"],
        )  # fmt: skip
        (first,) = _bundles(tmp_path / "models")
        latest_after_retrain = latest.exists()  # a retrain never points `latest` at its challenger
        candidate = MlflowClient(tracking_uri=mlflow_uri).get_model_version_by_alias(REGISTERED_MODEL, CANDIDATE_ALIAS)
        elsewhere = runner.invoke(  # a directory the service does not serve from: refused, nothing moved
            app,
            ["promote", "--reason", "wrong dir", "--version", candidate.version, "--models-dir", str(tmp_path / "x")],
        )
        promoted = runner.invoke(app, ["promote", "--reason", "gate passed", "--actor", "ds-lead"])
        latest_after_promote = latest.resolve()
        other_contract = runner.invoke(  # the champion serves another contract: refused before anything
            app,
            ["retrain", "--data", str(tmp_path / "history.parquet"), "--work", str(tmp_path / "labels-other"),
             "--out", str(tmp_path / "models"), *FAST, "--config", str(_renamed_config(tmp_path))],
        )  # fmt: skip
        lowered = runner.invoke(  # a PM lowers the champion's targets (a new policy in its bundle)
            app, ["thresholds", "--bundle", str(first), "--tier-recall", "severe:0.98", "--tier-recall", "minor:0.88"]
        )
        # with a champion now: its targets in force carry over; the gate is made to refuse the challenger
        monkeypatch.setattr("training.promotion.AUC_MARGIN", -1.0)  # (it must beat the champion's AUC by 1)
        again = runner.invoke(
            app,
            ["retrain", "--data", str(tmp_path / "history.parquet"), "--work", str(tmp_path / "labels-2"),
             "--out", str(tmp_path / "models"), *FAST, "--holdout", "0.3"],
        )  # fmt: skip
    finally:
        get_settings.cache_clear()

    assert retrained.exit_code == 0, retrained.output
    assert "gating on the newest 1,200 verdicts" in retrained.output
    assert ends and pd.Timestamp(ends[0]) == pd.to_datetime(history["created_at"], utc=True).iloc[-4001]
    assert "PASSED" in retrained.output and "@candidate" in retrained.output
    gate_rows = pd.read_parquet(tmp_path / "labels" / "gate.parquet")
    trained_rows = pd.read_parquet(tmp_path / "labels" / "train.parquet")
    assert not set(gate_rows["listing_id"]) & set(trained_rows["listing_id"])  # the gate's data is held out
    assert (
        pd.to_datetime(gate_rows["created_at"], utc=True).min()
        >= pd.to_datetime(trained_rows["created_at"], utc=True).max()
    )

    # the gate's verdicts are never trained on, yet count in the challenger's merchant history: its snapshot
    # holds them, so the service counts each one from the start (a verdict reviewed before the snapshot's
    # cutoff is taken for part of it, never added live)
    snapshot = Bundle.load(first).builder.snapshot
    assert snapshot is not None  # the generated data's merchant history is part of every candidate model
    assert int(snapshot["reviews"].sum()) == len(trained_rows) + len(gate_rows)
    gate_reviewed = pd.to_datetime(gate_rows["reviewed_at"], utc=True).max()
    assert pd.Timestamp(snapshot_cutoff_us(snapshot), unit="us", tz="UTC") >= gate_reviewed.floor("us")

    metrics = json.loads((first / "metrics.json").read_text())
    if metrics["thresholds"]["feasible"]:  # the audit plan is for the stated production volume
        assert metrics["audit_sizing"]["traffic"] == 2_000_000

    client = MlflowClient(tracking_uri=mlflow_uri)
    bundle_version = first.name
    assert candidate.tags["gate"] == "passed" and '"passed": true' in candidate.tags["gate_report"]
    assert candidate.run_id is not None
    assert client.get_run(candidate.run_id).data.tags["bundle_version"] == bundle_version
    assert client.get_run(candidate.run_id).data.params["search_trials"] == "2"  # --search-trials reached train
    assert promoted.exit_code == 0, promoted.output
    assert f"the service serves bundle {first.name} ({tmp_path / 'models' / first.name})" in promoted.output
    assert not latest_after_retrain and latest_after_promote == first  # promote points `latest` at what serves
    assert elsewhere.exit_code != 0 and "is outside the service's models directory" in elsewhere.output
    assert "->" not in elsewhere.output  # the alias was not moved
    champion = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
    assert champion.version == candidate.version and champion.tags["champion_by"] == "ds-lead"
    store = create_store(url, group_commit=False)
    change = store.latest_model_change(("promote",))
    policy_history = store.policy_history()
    store.close()
    assert change is not None and change.new_model == bundle_version and change.actor == "ds-lead"
    # the promoted bundle's policy is in the policy history too, in the same transaction
    promoted_policy = [p for p in policy_history if p.actor == "ds-lead"]
    assert len(promoted_policy) == 1 and promoted_policy[0].new_version == change.policy_version is not None
    assert promoted_policy[0].reason == (
        f"promote of model {bundle_version} put the policy in force for its bundle: gate passed"
    )
    assert change.reason == "gate passed" and change.registry_version == str(candidate.version)
    assert lowered.exit_code == 0, lowered.output
    assert other_contract.exit_code != 0 and "certifying" not in other_contract.output
    assert (
        "the champion (the registry's listing-risk@champion) " + f"{first.name} was trained on another data config"
    ) in other_contract.output
    assert "id [listing_id] vs [sku]; text [title, description, brand] vs [name, description, brand]" in (
        other_contract.output
    )
    assert "Pass --champion <bundle> of this service" in other_contract.output
    assert not (tmp_path / "labels-other").exists()  # nothing exported, nothing trained
    assert "certifying at the targets in force for the champion" in again.output, again.output
    assert again.exit_code == 1 and "REFUSED" in again.output, again.output
    assert latest.resolve() == first  # the refused challenger is not what a restarted service would serve
    (refused,) = _bundles(tmp_path / "models") - {first}
    second = json.loads((refused / "policy.json").read_text())["targets"]
    assert second["recall"] == {"severe": 0.98, "minor": 0.88}  # not the config's 0.99 / 0.90


def test_retrain_with_a_data_config_reads_the_served_bundles_column_names(
    generated_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export whose id column is `sku` and title column `name`: the service logs listings under those
    names, and `retrain --config` exports, trains and gates with them."""
    from serving.settings import get_settings
    from triage.cli import app

    renamed = {"listing_id": "sku", "title": "name"}
    history = pd.read_parquet(generated_dir / "reviews.parquet").sort_values("created_at").reset_index(drop=True)
    history = history.rename(columns=renamed)
    _renamed_config(tmp_path)
    url = f"sqlite:///{tmp_path / 'service.db'}"
    _log_reviewed(url, history.tail(3000), id_column="sku")
    history.head(len(history) - 3000).to_parquet(tmp_path / "history.parquet")
    monkeypatch.setenv("TRIAGE_DATABASE_URL", url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        default = runner.invoke(
            app, ["retrain", "--data", str(tmp_path / "history.parquet"), "--work", str(tmp_path / "default"),
                  "--out", str(tmp_path / "models"), *FAST],
        )  # fmt: skip
        missing = runner.invoke(app, ["retrain", "--config", str(tmp_path / "nowhere.yaml")])
        retrained = runner.invoke(
            app,
            ["retrain", "--data", str(tmp_path / "history.parquet"), "--work", str(tmp_path / "labels"),
             "--out", str(tmp_path / "models"), *FAST, "--config", str(tmp_path / "renamed.yaml")],
        )  # fmt: skip
        (first,) = _bundles(tmp_path / "models")
        against_first = runner.invoke(
            app,
            ["retrain", "--data", str(tmp_path / "history.parquet"), "--work", str(tmp_path / "labels-2"),
             "--out", str(tmp_path / "models"), *FAST, "--config", str(tmp_path / "renamed.yaml"),
             "--champion", str(first)],
        )  # fmt: skip
        # a --champion of another contract (the default config's columns): refused before anything is read
        default_against_first = runner.invoke(
            app,
            ["retrain", "--data", str(tmp_path / "history.parquet"), "--work", str(tmp_path / "labels-3"),
             "--out", str(tmp_path / "models"), *FAST, "--champion", str(first)],
        )  # fmt: skip
    finally:
        get_settings.cache_clear()

    # the default contract's columns are not what this service logged: a clear error that names the fix
    assert default.exit_code != 0 and "columns listing_id, title are not in the logged listings" in default.output
    assert "pass --config" in default.output and not (tmp_path / "default" / "exported.parquet").exists()
    assert missing.exit_code != 0 and "nowhere.yaml" in missing.output
    assert retrained.exit_code == 0, retrained.output
    assert "gating on the newest 900 verdicts" in retrained.output
    exported = pd.read_parquet(tmp_path / "labels" / "exported.parquet")
    assert {"sku", "name"} <= set(exported.columns) and "listing_id" not in exported.columns
    assert len(exported) == 3000
    assert "id: sku" in (first / "data_config.yaml").read_text()
    assert not (tmp_path / "models" / "latest").exists()  # no retrain points `latest` at its challenger
    # the gate compared the new bundle with the champion named, not with itself
    (second,) = _bundles(tmp_path / "models") - {first}
    assert re.search(rf"champion\s+{first.name}", against_first.output), against_first.output
    assert "carry the same bundle version" not in against_first.output and second != first
    assert default_against_first.exit_code != 0
    assert f"the champion (--champion) {first.name} was trained on another data config" in (
        default_against_first.output
    )
    assert "id [sku] vs [listing_id]" in default_against_first.output
    assert not (tmp_path / "labels-3").exists()


@pytest.mark.parametrize(
    ("name", "id_column", "reviewed"),
    [("sms_spam", "message_id", 1500), ("youtube_spam", "comment_id", 500)],
)
def test_retrain_on_a_csv_history_of_another_shape(
    name: str, id_column: str, reviewed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real exports' shapes: SMS has no timestamp (`time_order: row`) and labels spam / ham; YouTube's
    CSV dates are text beside the export's timestamps. Export-labels wrote a column named NaN for the
    missing timestamp (Parquet refused it), labels as 1 / 0 that the SMS config refuses, and retrain
    could not write the YouTube history and the verdicts as one table."""
    from serving.settings import get_settings
    from triage.cli import app

    root = Path(__file__).resolve().parents[2]
    config = root / "configs" / f"{name}.yaml"
    rows = pd.read_csv(root / "bench" / "realdata" / f"{name}.csv", dtype={id_column: str})
    spam = rows["label"].isin(["spam", 1])
    url = f"sqlite:///{tmp_path / 'service.db'}"
    _log_reviewed(url, rows.tail(reviewed).assign(label=spam.tail(reviewed).astype(int)), id_column=id_column)
    rows.head(len(rows) - reviewed).to_csv(tmp_path / "history.csv", index=False)
    monkeypatch.setenv("TRIAGE_DATABASE_URL", url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    get_settings.cache_clear()
    runner = CliRunner()
    try:
        exported = runner.invoke(app, ["export-labels", "--out", str(tmp_path / "labels.csv"), "--config", str(config)])
        no_history = runner.invoke(
            app,
            ["retrain", "--data", str(tmp_path / "nope.csv"), "--config", str(config), "--work", str(tmp_path / "w0")],
        )
        retrained = runner.invoke(
            app,
            ["retrain", "--data", str(tmp_path / "history.csv"), "--config", str(config),
             "--work", str(tmp_path / "w"), "--out", str(tmp_path / "models")],
        )  # fmt: skip
    finally:
        get_settings.cache_clear()

    assert exported.exit_code == 0, exported.output
    labels = pd.read_csv(tmp_path / "labels.csv", dtype={id_column: str})
    assert not any(str(c).startswith("Unnamed") for c in labels.columns), list(labels.columns)
    assert sorted(labels["label"].astype(str).unique()) == sorted(rows["label"].astype(str).unique())
    assert labels[id_column].tolist() == rows[id_column].tail(reviewed).tolist()
    assert no_history.exit_code != 0 and "nope.csv not found" in no_history.output
    assert not (tmp_path / "w0").exists()  # checked before anything was exported
    assert retrained.exit_code in (0, 1), retrained.output  # 1: the gate refused the challenger, said why
    assert "Traceback" not in retrained.output and len(_bundles(tmp_path / "models")) == 1
    assert not (tmp_path / "models" / "latest").exists()  # pass or refusal, `latest` is promote's to move
    found = re.search(r"gating on the newest ([\d,]+) verdicts", retrained.output)
    assert found is not None, retrained.output
    gated = int(found.group(1).replace(",", ""))
    train = pd.read_parquet(tmp_path / "w" / "train.parquet")
    assert len(train) == len(rows) - gated  # the history and the older verdicts, each row once
    assert set(train["label"].astype(str)) == set(rows["label"].astype(str))  # in the config's label values


def test_promote_without_a_candidate_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty registry, or a retrain the gate refused: MLflow's "alias candidate not found" traceback."""
    from serving.settings import get_settings
    from triage.cli import app

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("TRIAGE_MODELS_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["promote", "--reason", "gate passed"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code != 0
    assert "has no candidate version" in result.output and "Traceback" not in result.output


def test_make_retrain_and_promote_run_the_chain(generated_dir: Path) -> None:
    from tests.conftest import make_dry_run

    retrain = make_dry_run("retrain", f"DATA_DIR={generated_dir}", "SEED=3")
    assert f"triage retrain --data {generated_dir}/reviews.parquet --out models --seed 3" in retrain
    assert 'triage promote --reason "after the shadow week"' in make_dry_run("promote", "REASON=after the shadow week")
    mine = (f"DATA={generated_dir}/reviews.parquet", "CONFIG=configs/mine.yaml")
    expected = f"--data {generated_dir}/reviews.parquet --out models --seed 0 --config configs/mine.yaml"
    assert f"triage retrain {expected}" in make_dry_run("retrain", *mine)
    assert f"triage train {expected}" in make_dry_run("train", *mine)


def test_a_retrain_certifies_at_the_targets_in_force_for_the_champion(
    tiered_bundle_dir: Path, untiered_bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PM lowered the champion's targets through the service: the retrain certifies its challenger at
    those, not at the data config's defaults (per tier through a copy of the config; untiered as --recall)."""
    from bundle.policies import load_policy
    from features.config import DataConfig, load_config
    from serving.settings import get_settings
    from triage.lifecycle import targets_in_force, training_targets

    url = f"sqlite:///{tmp_path / 'service.db'}"
    monkeypatch.setenv("TRIAGE_DATABASE_URL", url)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    get_settings.cache_clear()
    try:
        shipped = load_policy(tiered_bundle_dir).to_dict()
        untiered = targets_in_force(untiered_bundle_dir, tmp_path)  # (both fixtures' directories are "bundle")
        assert targets_in_force(tiered_bundle_dir, tmp_path)["recall"] == shipped["targets"]["recall"]  # type: ignore[index]
        lowered = {
            **shipped,
            "version": "pm-1",
            "targets": {**shipped["targets"], "recall": {"severe": 0.97, "minor": 0.85}},
        }
        store = create_store(url, group_commit=False)
        store.init_schema()
        store.put_policy_in_force(tiered_bundle_dir.resolve().name, "pm", "fewer reviews", shipped, lowered)
        store.close()
        in_force = targets_in_force(tiered_bundle_dir, tmp_path)
        no_champion = targets_in_force(None, tmp_path / "models")  # no registered champion yet
    finally:
        get_settings.cache_clear()

    assert in_force is not None and in_force["recall"] == {"severe": 0.97, "minor": 0.85}
    config_file, options = training_targets(in_force, DataConfig(), tmp_path)
    assert config_file is not None
    assert {tier.name: tier.recall for tier in load_config(config_file).tiers} == {"severe": 0.97, "minor": 0.85}
    assert options == {k: float(shipped["targets"][k]) for k in ("block_precision", "confidence")}
    renamed = {**in_force, "recall": {"severe": 0.97, "fraud": 0.8}}  # a tier the config no longer has
    config_file, _ = training_targets(renamed, DataConfig(), tmp_path)
    assert config_file is not None
    assert {tier.name: tier.recall for tier in load_config(config_file).tiers} == {"severe": 0.97, "minor": 0.9}
    assert untiered is not None and not isinstance(untiered["recall"], dict)
    assert training_targets(untiered, DataConfig(), tmp_path)[1]["single_tier"] is True
    assert no_champion is None


def test_a_champion_is_another_contract_only_when_it_could_not_be_gated_on_this_configs_verdicts() -> None:
    """Another id or label column, or a feature column of the champion's the config lacks; a retrain that
    adds a feature column is not refused (its export still carries every column the champion reads)."""
    from dataclasses import replace

    from features.config import DataConfig
    from triage.lifecycle import contract_differences

    champion = DataConfig()
    added = replace(champion, numeric=(*champion.numeric, "shipping_days"))
    dropped = replace(champion, numeric=tuple(c for c in champion.numeric if c != "price"))
    assert contract_differences(champion, added) == {}
    assert contract_differences(champion, replace(champion, categorical=champion.categorical[::-1])) == {}
    assert set(contract_differences(champion, dropped)) == {"numeric"}
    assert set(contract_differences(champion, replace(champion, id="sku"))) == {"id"}


def test_the_fully_labelled_rows_end_with_the_history_and_before_any_listing_the_service_decided() -> None:
    from features.config import DataConfig
    from triage.lifecycle import fully_labelled_until

    config = DataConfig()
    ts = config.timestamp
    history = pd.DataFrame({ts: ["2025-01-01T00:00:00Z", "2025-03-01T12:00:00Z"]})
    later = pd.DataFrame({ts: ["2025-03-02T00:00:00Z"]})
    assert fully_labelled_until(history, later, config) == "2025-03-01T12:00:00+00:00"
    earlier = pd.DataFrame({ts: ["2025-03-01T00:00:00Z", "2025-04-01T00:00:00Z"]})  # decided before history's end
    assert fully_labelled_until(history, earlier, config) == "2025-02-28T23:59:59.999999+00:00"
    assert fully_labelled_until(None, later, config) is None  # --labels-only: nothing is fully labelled
    assert fully_labelled_until(history, later, DataConfig(timestamp=None, time_order="row", reviewed_at=None)) is None
