"""What the data scientist's make targets promise: `make data` keeps existing data of another size unless
FORCE=1, `make serve` says why it trains first and takes PORT, `make mlflow-ui` takes MLFLOW_PORT and
prints the experiment's URL."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from tests.conftest import make_dry_run
from triage.cli import app

REPO = Path(__file__).resolve().parents[2]


def _rows(path: Path) -> int:
    return int(pq.ParquetFile(path).metadata.num_rows)


def test_generate_refuses_to_replace_data_of_another_size(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "generated"
    assert runner.invoke(app, ["generate", "--rows", "300", "--out", str(out)]).exit_code == 0
    refused = runner.invoke(app, ["generate", "--rows", "500", "--out", str(out)])
    assert refused.exit_code == 2
    message = " ".join(refused.output.split())
    assert "already holds 300 rows" in message and "--force" in message and "FORCE=1" in message
    assert _rows(out / "reviews.parquet") == 300
    assert runner.invoke(app, ["generate", "--rows", "300", "--out", str(out)]).exit_code == 0  # same size
    forced = runner.invoke(app, ["generate", "--rows", "500", "--out", str(out), "--force"])
    assert forced.exit_code == 0, forced.output
    assert _rows(out / "reviews.parquet") == 500


def test_make_targets_take_ports_and_force(tmp_path: Path) -> None:
    assert "--port 9123" in make_dry_run("serve", "PORT=9123", "BUNDLE=models/latest")
    mlflow_ui = make_dry_run("mlflow-ui", "MLFLOW_PORT=5123")
    assert "--port 5123" in mlflow_ui and "experiment_url('http://127.0.0.1:5123')" in mlflow_ui
    assert make_dry_run("data", "FORCE=1", f"DATA_DIR={tmp_path}").rstrip().endswith("--force")
    assert "--force" not in make_dry_run("data", f"DATA_DIR={tmp_path}")


def test_make_serve_says_it_trains_first_when_there_is_no_model() -> None:
    makefile = (REPO / "Makefile").read_text()
    serve = makefile[makefile.index("\nserve:") : makefile.index("\nkeys:")]
    assert "no model in models/latest: training one on the built-in data first (about $(TRAIN_MINUTES) minutes" in serve
    assert "TRAIN_MINUTES = " in makefile


def test_experiment_url_names_the_experiment_or_says_there_is_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.registry import EXPERIMENT, experiment_url

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert "no runs" in experiment_url("http://127.0.0.1:5000")
    import mlflow

    experiment_id = mlflow.create_experiment(EXPERIMENT)
    assert experiment_url("http://127.0.0.1:5000").startswith(
        f"MLflow UI: http://127.0.0.1:5000/#/experiments/{experiment_id}"
    )
