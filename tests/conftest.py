"""Session fixtures: a small seeded dataset and one bundle trained on it, shared by every test package."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


TIERED_POLICY_VERSION = "tiered-test"


@pytest.fixture(scope="session")
def untiered_bundle_dir(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session bundle as a bundle trained with one tier over every violation: no tier models, no
    tier columns in its reference, a policy without tier thresholds (the same overall model)."""
    import shutil

    import pandas as pd
    import yaml

    from bundle.manifest import write_manifest
    from bundle.policies import load_policy, save_policy
    from decision.thresholds import choose_policy_thresholds

    target = Path(shutil.copytree(bundle_dir, tmp_path_factory.mktemp("untiered") / "bundle"))
    config_file = target / "data_config.yaml"
    config_file.write_text(yaml.safe_dump({**yaml.safe_load(config_file.read_text()), "tiers": {}}, sort_keys=False))
    shutil.rmtree(target / "tiers", ignore_errors=True)
    for name in ("reference.parquet", "test_scores.parquet"):
        frame = pd.read_parquet(target / name)
        frame.drop(columns=[c for c in frame if c == "tier" or c.startswith("risk_")]).to_parquet(target / name)
    write_manifest(target)
    current = load_policy(target)  # certified again on the untiered reference, as training would
    chosen = choose_policy_thresholds(pd.read_parquet(target / "reference.parquet"))
    save_policy(target, chosen.to_policy(rules=current.rules, version=f"{current.version}-untiered"))
    return target


@pytest.fixture(scope="session")
def tiered_bundle_dir(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiered copy of the session bundle, for the simulator: its reference with `tier` and one
    `risk_<tier>` column per tier, and a policy with per-tier thresholds chosen on it.

    Whatever the session bundle already has is kept (tier models, tier columns); what it lacks is made
    here: a tier's risk column from the overall risk (synthetic, seeded) and, for a bundle trained
    without tiers, the overall model and calibrator standing in for each tier's."""
    import shutil

    import numpy as np
    import pandas as pd
    import yaml

    from bundle.manifest import write_manifest
    from bundle.policies import load_policy, save_policy
    from decision.thresholds import choose_policy_thresholds
    from decision.tiers import NO_TIER, risk_column
    from features.config import MARKETPLACE_TIERS, DataConfig, Tier

    target = Path(shutil.copytree(bundle_dir, tmp_path_factory.mktemp("tiered") / "bundle"))
    config_file = target / "data_config.yaml"
    config = DataConfig.from_dict(yaml.safe_load(config_file.read_text()))
    if not config.tiered:
        raw = {**config.to_dict(), "tiers": {t.name: t.to_dict() for t in MARKETPLACE_TIERS}}
        config_file.write_text(yaml.safe_dump(raw, sort_keys=False))
        config = DataConfig.from_dict(raw)
    for name in config.tier_names:
        (target / "tiers").mkdir(exist_ok=True)
        for source, suffix in (("model.onnx", ".onnx"), ("calibrator.json", ".calibrator.json")):
            if not (target / "tiers" / f"{name}{suffix}").is_file():
                shutil.copy(target / source, target / "tiers" / f"{name}{suffix}")
    reference = pd.read_parquet(target / "reference.parquet")
    if "tier" not in reference:
        rng = np.random.default_rng(SEED)
        label = reference["label"].to_numpy().astype(bool)
        reference["tier"] = np.where(label, rng.choice(config.tier_names, len(reference)), NO_TIER)
        for name in config.tier_names:
            own = (reference["tier"] == name).to_numpy()
            reference[risk_column(name)] = np.clip(reference["risk"] * np.where(own, 1.0, 0.3), 0.0, 1.0)
        reference.to_parquet(target / "reference.parquet", index=False)
    write_manifest(target)
    # targets the small reference can certify: the simulator is under test here, not the guarantee
    tiers = [Tier(t.name, t.reasons, min(t.recall, 0.9)) for t in config.tiers]
    chosen = choose_policy_thresholds(reference, block_precision=0.9, tiers=tiers)
    current = load_policy(target)
    save_policy(target, chosen.to_policy(rules=current.rules, version=TIERED_POLICY_VERSION))
    return target


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The figures the reliability checks report (`tests/reliability/conftest.py`, `report`), read from the
    test reports' user properties: here in the root conftest, with the reports, because a pytest-xdist
    controller loads only this conftest and the workers send it only their reports."""
    reports = [
        report
        for outcome in ("passed", "failed")
        for report in terminalreporter.stats.get(outcome, [])
        if getattr(report, "when", None) == "call" and getattr(report, "user_properties", None)
    ]
    if not reports:
        return
    terminalreporter.section("reliability figures")
    for report in sorted(reports, key=lambda r: r.nodeid):
        terminalreporter.write_line(report.nodeid.split("::", 1)[-1])
        terminalreporter.write_line("    " + ", ".join(f"{k}={v}" for k, v in report.user_properties))
