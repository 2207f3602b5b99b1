"""MLflow tracking and registry: every run logs params, metrics, plots and the bundle."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd

REGISTERED_MODEL = "listing-risk"
CANDIDATE_ALIAS = "candidate"
CHAMPION_ALIAS = "champion"
EXPERIMENT = "listing-triage"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_MODELS_DIR = Path("models")  # bundles the project serves; `triage train --out` default

log = logging.getLogger(__name__)


class RegistryError(RuntimeError):
    """Logging or registering a run failed after its bundle was exported (the message says where)."""


def tracking_uri() -> str:
    """`MLFLOW_TRACKING_URI` if set, else an embedded SQLite store in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def _flatten(prefix: str, value: Any, out: dict[str, float]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif isinstance(value, bool):
        return
    elif isinstance(value, int | float) and value == value:  # skip NaN
        out[re.sub(r"[^\w\-./: ]", "_", prefix).replace(" ", "_")] = float(value)  # MLflow's allowed characters


def _artifact_location() -> str | None:
    """Beside an embedded SQLite store, artifacts go to `mlartifacts/` next to the database file."""
    uri = tracking_uri()
    if not uri.startswith("sqlite:///"):
        return None
    return (Path(uri[len("sqlite:///") :]).resolve().parent / "mlartifacts").as_uri()


def experiment_url(ui: str) -> str:
    """Where the MLflow UI at `ui` shows this project's runs (read without creating anything)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is None:
        return f"MLflow UI: {ui} (no runs of experiment {EXPERIMENT!r} yet: make train logs one)"
    return f"MLflow UI: {ui}/#/experiments/{experiment.experiment_id} (experiment {EXPERIMENT!r})"


def _experiment_id() -> str:
    import mlflow

    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return str(experiment.experiment_id)
    return str(mlflow.create_experiment(EXPERIMENT, artifact_location=_artifact_location()))


def candidate_alias(out: Path, move: bool | None = None) -> str | None:
    """The alias a run's registered version gets: `candidate` for a run into the default models directory
    (what `make train` and `make serve` produce), none for a run elsewhere (an experiment, a test), so a
    side run never silently replaces the model `triage promote` would promote. `move` overrides."""
    if move is None:
        move = out.resolve() == DEFAULT_MODELS_DIR.resolve()
    return CANDIDATE_ALIAS if move else None


def log_run(
    bundle_dir: Path,
    params: dict[str, Any],
    metrics: dict[str, Any],
    example: pd.DataFrame | None = None,
    alias: str | None = CANDIDATE_ALIAS,
) -> dict[str, str]:
    """Log one training run, register the bundle as a new model version and point `alias` at it (None:
    registered without alias). The result has `alias` only when one was moved.

    With `example` listings, the registered model carries a signature (input columns and output) and the
    example itself.
    """
    import mlflow
    from mlflow import MlflowClient

    from training.pyfunc import BUNDLE_ARTIFACT

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_experiment(experiment_id=_experiment_id())
    flat: dict[str, float] = {}
    _flatten("", metrics, flat)
    with _no_artifact_progress_bars(), mlflow.start_run(run_name=bundle_dir.name) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(flat)
        mlflow.set_tag("bundle_version", bundle_dir.name)
        plots = bundle_dir / "plots"
        if plots.is_dir():
            mlflow.log_artifacts(str(plots), artifact_path="plots")
        example = _signature_example(example) if example is not None else None
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=str(Path(__file__).resolve().parent / "pyfunc_model.py"),  # from code: nothing pickled
            artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
            code_paths=[
                str(Path(__file__).resolve().parent.parent / "features"),
                str(Path(__file__).resolve().parent),
            ],
            pip_requirements=_requirements(),
            signature=_signature(bundle_dir, example) if example is not None else None,
            input_example=example,
            registered_model_name=REGISTERED_MODEL,
        )
        version = str(info.registered_model_version)
        out = {"run_id": run.info.run_id, "model_version": version, "model_uri": info.model_uri}
        if alias is not None:
            MlflowClient().set_registered_model_alias(REGISTERED_MODEL, alias, version)
            out["alias"] = alias
        return out


@contextmanager
def _no_artifact_progress_bars() -> Iterator[None]:
    """MLflow reloads the logged model to check the input example and draws a download bar for it;
    `triage train` has its own progress display."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def _signature_example(frame: pd.DataFrame) -> pd.DataFrame:
    """The listings MLflow infers the signature from, in the types a caller sends: integer columns as
    doubles (a listing may arrive with a count missing, which pandas holds as a float NaN, and an integer
    column in the signature would refuse it); decimals (a Parquet decimal column) as doubles, as
    validation reads them; categorical columns as their values (an export written with pandas
    categories; MLflow's schema has no category type); timestamps with a time zone as UTC without one
    (MLflow's datetime type is naive, and training reads times as UTC)."""
    frame = frame.copy()
    for column in frame.columns:
        values = frame[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            values = frame[column] = values.astype(values.cat.categories.dtype)
        if isinstance(values.dtype, pd.DatetimeTZDtype):
            frame[column] = values.dt.tz_convert("UTC").dt.tz_localize(None)
        elif pd.api.types.is_integer_dtype(values) or pd.api.types.infer_dtype(values, skipna=True) == "decimal":
            frame[column] = values.astype("float64")
    return frame


def _signature(bundle_dir: Path, example: pd.DataFrame) -> Any:
    from mlflow.models import infer_signature

    from bundle.load import Bundle
    from features.validate import validate_listings
    from training.offline import score_frame

    bundle = Bundle.load(bundle_dir)
    return infer_signature(example, score_frame(bundle, validate_listings(example, bundle.config)))


def _requirements() -> list[str]:
    from importlib.metadata import requires

    pinned = [r.split(";")[0].strip() for r in (requires("listing-triage") or []) if "extra ==" not in r]
    return pinned or ["mlflow"]


def _client() -> Any:
    import mlflow
    from mlflow import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri())
    return MlflowClient()


def promote(
    version: str | None = None,
    alias: str = CHAMPION_ALIAS,
    actor: str | None = None,
    reason: str | None = None,
    force: bool = False,
) -> tuple[str, bool]:
    """Point an alias (default `champion`) at a model version (default: the current candidate); returns
    the version and whether it was forced past the gate's refusal. Who and why are kept on the version as
    tags `<alias>_by` and `<alias>_reason` (the registry's own record).

    A version the promotion gate refused (its `gate` tag, `training.promotion.gate_and_register`) is not
    made champion unless `force`: ValueError naming the gate's verdict. A forced promotion is tagged
    `<alias>_forced` on the version, beside who and why."""
    from mlflow.exceptions import MlflowException

    client = _client()
    if version is None:
        version = alias_version(CANDIDATE_ALIAS)
        if version is None:
            raise ValueError(
                f"{REGISTERED_MODEL} has no {CANDIDATE_ALIAS} version in the registry at {tracking_uri()}: only a "
                "retrain whose promotion gate passed makes one (`triage retrain`, `triage gate`); name a version "
                "with --version"
            )
        if alias == CHAMPION_ALIAS and alias_version(CHAMPION_ALIAS) == version:
            raise ValueError(
                f"{REGISTERED_MODEL}@{CANDIDATE_ALIAS} is version {version}, already the champion: nothing to "
                "promote (a retrain whose gate refused its challenger makes no new candidate); name a version "
                "with --version"
            )
    try:
        gate = client.get_model_version(REGISTERED_MODEL, str(version)).tags.get("gate")
    except MlflowException as exc:
        raise ValueError(f"{REGISTERED_MODEL} version {version} is not in the registry at {tracking_uri()}") from exc
    forced = alias == CHAMPION_ALIAS and gate == "refused"
    if forced and not force:
        raise ValueError(
            f"{REGISTERED_MODEL} version {version} was refused by the promotion gate (its gate_report tag says "
            "why): it is not made champion unless forced (--force, with the reason)"
        )
    client.set_registered_model_alias(REGISTERED_MODEL, alias, str(version))
    if forced:
        client.set_model_version_tag(REGISTERED_MODEL, str(version), f"{alias}_forced", "past the gate's refusal")
    if actor:
        client.set_model_version_tag(REGISTERED_MODEL, str(version), f"{alias}_by", actor)
    if reason:
        client.set_model_version_tag(REGISTERED_MODEL, str(version), f"{alias}_reason", reason[:5000])
    return str(version), forced


def alias_version(alias: str) -> str | None:
    """The model version an alias points at, or None when the alias (or the registered model) is unset."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client().get_model_version_by_alias(REGISTERED_MODEL, alias).version)
    except MlflowException:
        return None


def bundle_version_of(version: str) -> str:
    """The bundle directory name (`models/<bundle_version>`) a registered model version was trained as:
    the `bundle_version` tag `log_run` puts on the run."""
    client = _client()
    run_id = client.get_model_version(REGISTERED_MODEL, str(version)).run_id
    tags = client.get_run(run_id).data.tags
    if "bundle_version" not in tags:
        raise LookupError(f"{REGISTERED_MODEL} version {version}: its run {run_id} has no bundle_version tag")
    return str(tags["bundle_version"])


def version_of_bundle(bundle_version: str) -> str | None:
    """The registered model version trained as `bundle_version` (the newest if several), or None."""
    client = _client()
    runs = client.search_runs(
        [_experiment_id()], filter_string=f"tags.bundle_version = '{bundle_version}'", max_results=50
    )
    run_ids = {run.info.run_id for run in runs}
    versions = [v for v in client.search_model_versions(f"name = '{REGISTERED_MODEL}'") if v.run_id in run_ids]
    return str(max(int(v.version) for v in versions)) if versions else None


def set_version_tags(version: str, tags: dict[str, str]) -> None:
    """Tag a registered model version (e.g. the promotion gate's verdict)."""
    client = _client()
    for key, value in tags.items():
        client.set_model_version_tag(REGISTERED_MODEL, str(version), key, value)


def set_alias(version: str, alias: str) -> None:
    """Point `alias` at a registered model version."""
    _client().set_registered_model_alias(REGISTERED_MODEL, alias, str(version))


def download_bundle(model_uri: str, dst: Path) -> Path:
    """Fetch a registered model (e.g. `models:/listing-risk@champion`) and return its bundle directory."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(dst)))
    candidates = [p.parent for p in local.rglob("manifest.json")]
    if not candidates:
        raise FileNotFoundError(f"{model_uri}: no bundle (manifest.json) in the registered model's artifacts")
    return candidates[0]
