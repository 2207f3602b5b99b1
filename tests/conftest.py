"""Session fixtures: a small seeded dataset and one bundle trained on it, shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

SMALL_ROWS = 40_000
SEED = 7


@pytest.fixture(scope="session")
def generated_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.generate import write_dataset

    out = tmp_path_factory.mktemp("generated")
    write_dataset(out, rows=SMALL_ROWS, seed=SEED, start="2025-01-01", months=12)
    return out


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="session")
def trained(generated_dir: Path, tmp_path_factory: pytest.TempPathFactory, mlflow_uri: str):
    """One full training run (with MLflow logging) on the small dataset; returns the TrainResult."""
    from training.pipeline import TrainOptions, train

    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    try:
        result = train(
            TrainOptions(
                data=generated_dir / "reviews.parquet",
                out=tmp_path_factory.mktemp("models"),
                seed=SEED,
                show_progress=False,
                move_candidate=True,  # tests read models:/listing-risk@candidate
            )
        )
    finally:
        mp.undo()
    return result


@pytest.fixture(scope="session")
def bundle_dir(trained) -> Path:
    return trained.bundle_dir


def make_dry_run(*args: str) -> str:
    """`make -n` in the repository with the install step taken as done (nothing runs, nothing is installed).

    Run as a fresh make, not a sub-make of `make test`: the inherited MAKEFLAGS/MAKELEVEL would add
    "Entering directory" lines to the output."""
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    repo = Path(__file__).resolve().parents[1]
    command = ["make", "--no-print-directory", "-n", "-o", ".venv/.installed", *args]
    return subprocess.run(command, cwd=repo, capture_output=True, text=True, check=True, env=env).stdout
