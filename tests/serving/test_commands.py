"""The service's CLI functions: key creation, serving a registered model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bundle.load import Bundle
from serving.commands import _download_model, keys_create
from serving.keys import verify_key
from serving.settings import get_settings
from serving.store import create_store


@pytest.fixture
def env_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("TRIAGE_DATABASE_URL", url)
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


def test_keys_create_prints_a_working_token_once(env_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    keys_create("review-tool", ["review,score"])

    token = capsys.readouterr().out.strip()
    with create_store(env_database) as store:
        key = verify_key(store, token)
    assert key is not None and key.name == "review-tool" and key.scopes == {"review", "score"}


def test_keys_create_refuses_unknown_scopes(env_database: str) -> None:
    import typer

    with pytest.raises(typer.BadParameter):
        keys_create("x", ["superuser"])


def test_a_registered_model_is_downloaded_to_a_loadable_bundle(
    trained, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)

    bundle_dir = _download_model("models:/listing-risk@candidate")

    assert (bundle_dir / "manifest.json").is_file()
    assert Bundle.load(bundle_dir).version == Bundle.load(trained.bundle_dir).version


def test_keys_list_revoke_rotate_from_the_cli(env_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    from serving.commands import keys_list, keys_revoke, keys_rotate

    keys_create("pm", ["read"])
    old = capsys.readouterr().out.strip()
    keys_rotate("pm")
    new = capsys.readouterr().out.strip()
    keys_create("bot", ["score"])
    capsys.readouterr()
    keys_revoke("bot")
    keys_list()
    listing = capsys.readouterr().out

    with create_store(env_database) as store:
        assert verify_key(store, old) is None and verify_key(store, new) is not None
    assert "pm\tread\t" in listing and listing.splitlines()[-1].endswith("revoked")
    assert old not in listing and new not in listing


def test_a_taken_key_name_is_one_line_not_a_traceback(env_database: str, capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    keys_create("twice", ["score"])
    capsys.readouterr()
    with pytest.raises(typer.Exit) as exit_info:
        keys_create("twice", ["score"])

    assert exit_info.value.exit_code == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "twice" in err and "already exists" in err
