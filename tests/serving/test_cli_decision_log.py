"""The CLI commands that only read the decision log: a mistyped path or a bad URL is one line naming it,
and no command leaves an empty database behind."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving.settings import get_settings
from triage.cli import app as cli

READ_ONLY = {
    "decisions show": ["decisions", "show", "d-1", "--db"],
    "reviewers stats": ["reviewers", "stats", "--db"],
    "rules stats": ["rules", "stats", "--bundle", "no-such-bundle", "--db"],
}


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[CliRunner]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TRIAGE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    yield CliRunner()
    get_settings.cache_clear()


@pytest.mark.parametrize("command", sorted(READ_ONLY))
def test_a_read_only_command_refuses_a_decision_log_that_does_not_exist(runner: CliRunner, command: str) -> None:
    """`decisions show`, `reviewers stats` and `rules stats` created an empty SQLite file at a mistyped
    --db path and then reported nothing found in it."""
    typo = Path("decisoins.db").resolve()
    result = runner.invoke(cli, [*READ_ONLY[command], f"sqlite:///{typo}"])
    assert result.exit_code == 1, result.output
    assert f"no decision log at {typo}: the file does not exist" in result.output
    assert not typo.exists()


@pytest.mark.parametrize(
    ("url", "said"),
    [
        ("bogus://somewhere/db", "unsupported database 'bogus'"),
        ("decisions.db", "'decisions.db' is not a database URL"),
    ],
)
@pytest.mark.parametrize("command", sorted(READ_ONLY))
def test_a_bad_decision_log_url_is_one_line_not_a_traceback(
    runner: CliRunner, command: str, url: str, said: str
) -> None:
    result = runner.invoke(cli, [*READ_ONLY[command], url])
    assert result.exit_code == 1, result.output
    assert f"error: decision log (--db or TRIAGE_DATABASE_URL): {said}" in result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output


def test_the_default_decision_log_is_refused_the_same_way_when_missing(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """TRIAGE_DATABASE_URL stands in for --db: `keys list` and `export-labels` read it and create nothing."""
    monkeypatch.setenv("TRIAGE_DATABASE_URL", f"sqlite:///{tmp_path / 'var' / 'triage.db'}")
    get_settings.cache_clear()
    listed = runner.invoke(cli, ["keys", "list"])
    exported = runner.invoke(cli, ["export-labels", "--out", str(tmp_path / "labels.parquet")])
    for result in (listed, exported):
        assert result.exit_code == 1, result.output
        assert "no decision log at" in result.output
    assert not (tmp_path / "var").exists() and not (tmp_path / "labels.parquet").exists()


def test_a_command_that_writes_still_creates_the_decision_log(runner: CliRunner, tmp_path: Path) -> None:
    """Creating the first API key on a fresh machine is what makes the log; then reading it works."""
    database = tmp_path / "fresh" / "triage.db"
    created = runner.invoke(
        cli, ["keys", "create", "me", "--scopes", "read"], env={"TRIAGE_DATABASE_URL": f"sqlite:///{database}"}
    )
    assert created.exit_code == 0, created.output
    assert database.is_file()
    shown = runner.invoke(cli, ["decisions", "show", "d-1", "--db", f"sqlite:///{database}"])
    assert shown.exit_code == 1 and "no decision d-1 in the decision log" in shown.output


def test_export_labels_refuses_a_data_config_the_logged_listings_do_not_match(
    runner: CliRunner, tmp_path: Path
) -> None:
    """An SMS service's log (listings with `message_id` and `text`) exported with the default marketplace
    config wrote the other contract's file (the id under `listing_id`, no text) and exited 0."""
    from serving.store import DecisionRecord, create_store

    url = f"sqlite:///{tmp_path / 'sms.db'}"
    store = create_store(url, group_commit=False)
    store.init_schema()
    records = [
        DecisionRecord(
            listing_id=f"m-{i}",
            decision="human_review",
            automated=False,
            policy_version="p",
            listing={"message_id": f"m-{i}", "text": "win a prize now"},
            priority=0.5,
        )
        for i in range(3)
    ]
    store.record_decisions(records)
    for record in records:
        store.record_review(record.decision_id, "reviewer", "reject", "spam")
    store.close()
    sms_config = Path(__file__).resolve().parents[2] / "configs" / "sms_spam.yaml"
    env = {"TRIAGE_DATABASE_URL": url}

    default = runner.invoke(cli, ["export-labels", "--out", str(tmp_path / "wrong.csv")], env=env)
    matching = runner.invoke(
        cli, ["export-labels", "--out", str(tmp_path / "sms.csv"), "--config", str(sms_config)], env=env
    )

    assert default.exit_code == 1, default.output
    assert not (tmp_path / "wrong.csv").exists()
    assert "columns listing_id, title, description, brand, category, market are not in the logged" in default.output
    assert "which have message_id, text" in default.output and "--config" in default.output
    assert matching.exit_code == 0, matching.output
    assert "wrote 3 labelled outcomes" in matching.output


def test_serve_without_bundle_takes_triage_bundle_from_the_environment(
    bundle_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`triage serve` overwrote TRIAGE_BUNDLE with its option's default, models/latest, so a service
    configured through the environment (as the README's settings say) started with no bundle."""
    import uvicorn

    import serving.logs

    ran: list[str] = []
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: ran.append("run"))
    # serve configures the root logger onto stdout, which is the runner's: closed after the invoke, later
    # tests in this process would log into it
    monkeypatch.setattr(serving.logs, "configure_logging", lambda level: None)
    monkeypatch.chdir(tmp_path)  # no models/latest here
    monkeypatch.setenv("TRIAGE_BUNDLE", str(bundle_dir))
    monkeypatch.setenv("TRIAGE_DATABASE_URL", f"sqlite:///{tmp_path / 'serve.db'}")
    try:
        result = CliRunner().invoke(cli, ["serve", "--port", "8799"])
        assert result.exit_code == 0, result.output
        assert f"serving {bundle_dir}" in result.output and ran == ["run"]
        assert get_settings().bundle == str(bundle_dir)
    finally:
        get_settings.cache_clear()
