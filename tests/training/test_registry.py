"""The MLflow registry: only a run into models/ moves `candidate`; a run is logged without MLflow's
warnings (integer columns, input example, pickled model) because their causes are fixed, not filtered;
an export with pandas categories, decimals or time-zone-aware timestamps is logged too."""

from __future__ import annotations

import logging
import warnings
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from training.registry import CANDIDATE_ALIAS, REGISTERED_MODEL, candidate_alias, log_run


def test_only_a_run_into_the_default_models_directory_moves_candidate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert candidate_alias(Path("models")) == CANDIDATE_ALIAS
    assert candidate_alias(tmp_path / "models") == CANDIDATE_ALIAS  # the same directory, spelled absolute
    assert candidate_alias(Path("experiments")) is None
    assert candidate_alias(Path("experiments"), move=True) == CANDIDATE_ALIAS
    assert candidate_alias(Path("models"), move=False) is None


def test_a_run_without_alias_is_registered_without_warnings_and_leaves_candidate_alone(
    bundle_dir: Path,
    generated_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    import mlflow
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from bundle.load import Bundle

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    columns = Bundle.load(bundle_dir).config.listing_columns
    example = pd.read_parquet(generated_dir / "reviews.parquet")[columns].tail(5).reset_index(drop=True)
    assert any(pd.api.types.is_integer_dtype(example[c]) for c in columns)  # the case MLflow warned about
    # an export written with pandas categories, Parquet decimals and UTC offsets: MLflow's schema knows none
    example["category"] = example["category"].astype("category")
    example["price"] = [Decimal(f"{price:.2f}") for price in example["price"]]
    example["created_at"] = pd.to_datetime(example["created_at"]).dt.tz_localize("Europe/Berlin")
    capfd.readouterr()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="mlflow"):
        warnings.simplefilter("always")
        info = log_run(bundle_dir, {"seed": 7}, {"test": {"roc_auc": 0.9}}, example, alias=None)
    from_mlflow = [str(w.message) for w in caught if "mlflow" in w.filename and issubclass(w.category, UserWarning)]
    assert from_mlflow == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("mlflow")] == []
    assert "alias" not in info
    assert "Downloading artifacts" not in capfd.readouterr().err  # no progress bar inside triage train's

    client = MlflowClient(tracking_uri=uri)
    assert client.get_model_version(REGISTERED_MODEL, info["model_version"]).aliases == []
    with pytest.raises(MlflowException):
        client.get_model_version_by_alias(REGISTERED_MODEL, CANDIDATE_ALIAS)
    model = mlflow.pyfunc.load_model(f"models:/{REGISTERED_MODEL}/{info['model_version']}")
    schema = {c.name: c.type.name for c in model.metadata.get_input_schema().inputs}
    assert {schema[c] for c in columns if pd.api.types.is_integer_dtype(example[c])} == {"double"}
    assert (schema["category"], schema["created_at"], schema["price"]) == ("string", "datetime", "double")
    assert model.metadata.load_input_example() is not None
    # numeric columns are float64 in the data contract (a missing value is NaN), so callers send floats
    numeric = {c: "float64" for c in columns if pd.api.types.is_integer_dtype(example[c])}
    sent = example.astype({**numeric, "category": str, "price": "float64"})
    sent["created_at"] = example["created_at"].dt.tz_convert("UTC").dt.tz_localize(None)
    assert len(model.predict(sent)) == len(example)


def test_a_version_the_gate_refused_is_made_champion_only_when_forced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow import MlflowClient

    from training.registry import CHAMPION_ALIAS, promote, set_version_tags

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model(REGISTERED_MODEL)
    passed, refused, ungated = (
        client.create_model_version(REGISTERED_MODEL, str(tmp_path / name)).version for name in ("a", "b", "c")
    )
    set_version_tags(str(passed), {"gate": "passed"})
    set_version_tags(str(refused), {"gate": "refused"})

    assert promote(str(passed), actor="ds", reason="gate passed") == (str(passed), False)
    with pytest.raises(ValueError, match=f"version {refused} was refused by the promotion gate"):
        promote(str(refused), actor="ds", reason="looks fine")
    assert client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS).version == passed  # unchanged
    assert promote(str(refused), alias="shadow", reason="compare") == (str(refused), False)  # other aliases: free
    assert promote(str(refused), actor="ds", reason="incident fix", force=True) == (str(refused), True)
    champion = client.get_model_version_by_alias(REGISTERED_MODEL, CHAMPION_ALIAS)
    assert champion.version == refused and champion.tags["champion_forced"] == "past the gate's refusal"
    assert promote(str(ungated), reason="first model") == (str(ungated), False)  # never gated: as before


def test_promoting_the_candidate_that_is_already_champion_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retrain whose gate refused its challenger leaves the candidate alias on the champion: `make
    promote` then re-promoted the champion, exited 0 and wrote a promotion that changed nothing."""
    from mlflow import MlflowClient

    from training.registry import CANDIDATE_ALIAS, promote

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    client.create_registered_model(REGISTERED_MODEL)
    first = client.create_model_version(REGISTERED_MODEL, str(tmp_path / "a")).version
    client.set_registered_model_alias(REGISTERED_MODEL, CANDIDATE_ALIAS, str(first))

    assert promote(reason="first model") == (str(first), False)
    with pytest.raises(ValueError, match=f"@candidate is version {first}, already the champion: nothing to promote"):
        promote(reason="make candidate champion")
    assert promote(str(first), reason="named on purpose") == (str(first), False)  # a named version: as asked
