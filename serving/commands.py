"""CLI commands of the service, as plain functions with Typer annotations (registered on `triage`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from serving.settings import Settings, get_settings

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # the repo's embedded MLflow store (as in training)


def serve(
    bundle: Annotated[Path, typer.Option(help="model bundle directory or pointer")] = Path("models/latest"),
    model: Annotated[
        str | None, typer.Option(help="serve a registered model instead, e.g. models:/listing-risk@champion")
    ] = None,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="uvicorn worker processes")] = 1,
) -> None:
    """Run the scoring service (uvicorn). Other settings come from TRIAGE_* environment variables."""
    import uvicorn

    bundle_dir = _download_model(model) if model else bundle
    os.environ["TRIAGE_BUNDLE"] = str(bundle_dir)  # workers build their settings from the environment
    get_settings.cache_clear()
    settings = get_settings()
    typer.echo(f"serving {bundle_dir} on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    typer.echo(f"decision log: {settings.database_url}")
    typer.echo("create an API key with: triage keys create NAME --scopes score,review,read,admin  (or: make keys)")
    for line in startup_routing(bundle_dir, settings):
        typer.echo(line, err=line.startswith("WARNING"))
    from serving.logs import configure_logging

    configure_logging(settings.log_level)
    uvicorn.run(
        "serving.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_config=None,
        access_log=False,
        log_level=settings.log_level.lower(),
    )


def startup_routing(bundle_dir: Path, settings: Settings) -> list[str]:
    """The routing split of the policy in force for the bundle (the store's, else the bundle's own) on its
    reference rows, with a warning when it sends nearly everything to people; a note if it cannot tell."""
    from bundle.load import Bundle
    from bundle.manifest import BundleError
    from serving.models import policy_in_force, routing_report

    try:
        bundle = Bundle.load(bundle_dir, signing_key=settings.signing_key)
        with _open_store(settings) as store:
            policy = policy_in_force(store, bundle) or bundle.policy
        return routing_report(bundle, policy)
    except BundleError as exc:
        return [f"WARNING: no servable bundle ({exc}): every listing goes to human review until a reload succeeds"]
    except Exception as exc:  # the service can still start; say why the split is missing
        return [f"routing split on the reference rows not available ({type(exc).__name__}: {exc})"]


def _download_model(uri: str) -> Path:
    """Download a registered model's artifacts and return the bundle inside (the dir with manifest.json)."""
    import mlflow

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI)
    root = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    manifests = sorted(root.rglob("manifest.json"), key=lambda p: len(p.parts))
    if not manifests:
        raise typer.BadParameter(f"{uri}: no bundle (manifest.json) in the downloaded artifacts", param_hint="--model")
    return manifests[0].parent


def keys_create(
    name: Annotated[str, typer.Argument(help="who uses the key; reviewers are recorded by this name")],
    scopes: Annotated[list[str], typer.Option(help="score, review, read, admin (repeat or comma-separate)")],
) -> None:
    """Create an API key and print its token. The token is shown this once; only a hash is stored."""
    from serving.keys import create_key, parse_scopes
    from serving.store import ConflictError

    try:
        wanted = parse_scopes([s for item in scopes for s in item.split(",")])
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scopes") from exc
    with _open_store(get_settings()) as store:
        try:
            token = create_key(store, name, wanted)
        except ConflictError as exc:
            _fail(f"{exc}: pick another name, or `triage keys rotate {name}` for a new token")
    typer.echo(token)
    typer.echo(f"key {name!r} with scopes {sorted(wanted)}: store the token now, it is not shown again", err=True)


def keys_list() -> None:
    """List API keys (name, scopes, created, revoked); tokens are never shown again."""
    with _open_store(get_settings()) as store:
        keys = store.list_api_keys()
    for key in keys:
        state = "revoked" if key.revoked else "live"
        typer.echo(f"{key.name}\t{','.join(sorted(key.scopes))}\t{key.created_at:%Y-%m-%dT%H:%M:%SZ}\t{state}")
    if not keys:
        typer.echo("no API keys (create one with: triage keys create NAME --scopes ...)", err=True)


def keys_revoke(name: Annotated[str, typer.Argument(help="the key's name")]) -> None:
    """Revoke an API key: every service process refuses it within a second."""
    from serving.keys import revoke_key

    with _open_store(get_settings()) as store:
        if not revoke_key(store, name):
            _fail(f"no API key named {name!r}")
    typer.echo(f"key {name!r} revoked", err=True)


def keys_rotate(name: Annotated[str, typer.Argument(help="the key's name")]) -> None:
    """Give a live key a new token (same name and scopes) and print it; the old token stops working."""
    from serving.keys import rotate_key

    with _open_store(get_settings()) as store:
        token = rotate_key(store, name)
    if token is None:
        _fail(f"no live API key named {name!r}")
    typer.echo(token)
    typer.echo(f"key {name!r} rotated: store the new token now, it is not shown again", err=True)


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit status 1: for errors the user caused, no traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def export_labels(
    out: Annotated[Path, typer.Option(help="labelled outcomes file, .parquet or .csv")] = Path(
        "data/labels/reviews.parquet"
    ),
) -> None:
    """Write reviewers' verdicts as labelled outcomes that `triage train` accepts."""
    import pandas as pd

    from features.config import DataConfig
    from serving.store.labels import latest_verdict_per_listing

    if out.suffix.lower() not in (".parquet", ".csv"):
        raise typer.BadParameter("use a .parquet or .csv file name", param_hint="--out")
    with _open_store(get_settings()) as store:
        frame = store.export_labels(DataConfig())
    frame, superseded = latest_verdict_per_listing(frame, DataConfig())
    # a QA sample logged before inclusion probabilities were kept has none: weighted as a review it would
    # bias retraining, so it is left out (training reads a blank inclusion_prob as 1)
    unknown = frame["inclusion_prob"].isna() if "inclusion_prob" in frame else pd.Series(False, index=frame.index)
    frame = frame[~unknown].reset_index(drop=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    note = f" ({superseded} older verdicts on re-scored listings superseded)" if superseded else ""
    if unknown.any():
        note += f" ({int(unknown.sum())} QA samples logged without an inclusion probability left out)"
    typer.echo(f"wrote {len(frame)} labelled outcomes to {out}{note}")


def _open_store(settings: Settings):  # noqa: ANN202 - a Store, imported lazily with its dependencies
    from serving.store import create_store

    store = create_store(settings.database_url, group_commit=False)
    store.init_schema()
    return store
