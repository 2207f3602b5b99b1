"""CLI commands of the service, as plain functions with Typer annotations (registered on `triage`)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from serving.settings import Settings, get_settings

if TYPE_CHECKING:
    from features.config import DataConfig

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"  # the repo's embedded MLflow store (as in training)


def serve(
    bundle: Annotated[
        Path | None,
        typer.Option(help="model bundle directory or pointer (default: TRIAGE_BUNDLE, else models/latest)"),
    ] = None,
    model: Annotated[
        str | None, typer.Option(help="serve a registered model instead, e.g. models:/listing-risk@champion")
    ] = None,
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="uvicorn worker processes")] = 1,
) -> None:
    """Run the scoring service (uvicorn). Other settings come from TRIAGE_* environment variables."""
    import uvicorn

    bundle_dir = _download_model(model) if model else bundle or Path(os.environ.get("TRIAGE_BUNDLE") or "models/latest")
    os.environ["TRIAGE_BUNDLE"] = str(bundle_dir)  # workers build their settings from the environment
    get_settings.cache_clear()
    settings = get_settings()
    served, note = bundle_in_force(bundle_dir, settings)
    if note:
        typer.echo(note)
    typer.echo(f"serving {served} on http://{host}:{port}  (docs: http://{host}:{port}/docs)")
    typer.echo(f"decision log: {settings.database_url}")
    typer.echo("create an API key with: triage keys create NAME --scopes score,review,read,admin  (or: make keys)")
    for line in startup_routing(served, settings):
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


def bundle_in_force(bundle_dir: Path, settings: Settings) -> tuple[Path, str | None]:
    """The bundle the service will serve: the model the decision log records in force (a promotion or a
    reload) when there is one, else `bundle_dir`; with a line saying so when they differ."""
    from serving.lifecycle import in_force_path

    try:
        with _open_store(settings) as store:
            served = Path(in_force_path(store, settings))
    except Exception:  # the service still starts on the configured bundle and says why at start-up
        return bundle_dir, None
    if served.resolve() == bundle_dir.resolve():
        return bundle_dir, None
    return served, (
        f"the decision log records {served.name} as the model in force: serving it rather than {bundle_dir} "
        "(a newer bundle is served once promoted with `triage promote`, or reloaded with force and a reason)"
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
    scopes: Annotated[
        list[str], typer.Option(help="score, review, read, audit, supervise, admin (repeat or comma-separate)")
    ],
    team: Annotated[str | None, typer.Option(help="the reviewers' team (e.g. a vendor), for reviewer quality")] = None,
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
            token = create_key(store, name, wanted, team, actor=_operator())
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--team") from exc
        except ConflictError as exc:
            _fail(f"{exc}: pick another name, or `triage keys rotate {name}` for a new token")
    typer.echo(token)
    typer.echo(f"key {name!r} with scopes {sorted(wanted)}: store the token now, it is not shown again", err=True)


def keys_list() -> None:
    """List API keys (name, scopes, created, revoked); tokens are never shown again."""
    with _open_store(get_settings(), read_only=True) as store:
        keys = store.list_api_keys()
    for key in keys:
        state = "revoked" if key.revoked else "live"
        team = key.team or "-"
        typer.echo(f"{key.name}\t{','.join(sorted(key.scopes))}\t{team}\t{key.created_at:%Y-%m-%dT%H:%M:%SZ}\t{state}")
    if not keys:
        typer.echo("no API keys (create one with: triage keys create NAME --scopes ...)", err=True)


def keys_revoke(name: Annotated[str, typer.Argument(help="the key's name")]) -> None:
    """Revoke an API key: every service process refuses it within a second."""
    from serving.keys import revoke_key

    with _open_store(get_settings()) as store:
        if not revoke_key(store, name, actor=_operator()):
            _fail(f"no API key named {name!r}")
    typer.echo(f"key {name!r} revoked", err=True)


def keys_rotate(name: Annotated[str, typer.Argument(help="the key's name")]) -> None:
    """Give a live key a new token (same name and scopes) and print it; the old token stops working."""
    from serving.keys import rotate_key

    with _open_store(get_settings()) as store:
        token = rotate_key(store, name, actor=_operator())
    if token is None:
        _fail(f"no live API key named {name!r}")
    typer.echo(token)
    typer.echo(f"key {name!r} rotated: store the new token now, it is not shown again", err=True)


def keys_history(
    name: Annotated[str | None, typer.Argument(help="only this key's changes (default: every key's)")] = None,
) -> None:
    """Every change of the API keys, oldest first: when, who, what (create, rotate, revoke), which key."""
    with _open_store(get_settings(), read_only=True) as store:
        changes = store.key_changes(name)
    for change in changes:
        scopes = ",".join(change["scopes"])
        typer.echo(
            f"{change['at']:%Y-%m-%dT%H:%M:%SZ}\t{change['event']}\t{change['key']}\t{scopes}\tby {change['actor']}"
        )
    if not changes:
        typer.echo("no key changes recorded" + (f" for {name!r}" if name else ""), err=True)


def _operator() -> str:
    """Who runs `triage keys` here, for the key audit (the service records the admin key's name instead)."""
    import getpass

    return f"{os.environ.get('USER') or getpass.getuser()} (triage keys)"


def _fail(message: str) -> NoReturn:
    """One line on stderr and exit status 1: for errors the user caused, no traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def export_labels(
    out: Annotated[Path, typer.Option(help="labelled outcomes file, .parquet or .csv")] = Path(
        "data/labels/reviews.parquet"
    ),
    config: Annotated[
        Path | None,
        typer.Option(help="YAML data config of the served bundle: its column names (default: configs/data.yaml)"),
    ] = None,
) -> None:
    """Write reviewers' verdicts as labelled outcomes that `triage train` accepts."""
    if out.suffix.lower() not in (".parquet", ".csv"):
        raise typer.BadParameter("use a .parquet or .csv file name", param_hint="--out")
    write_labels(out, _data_config(config))


def write_labels(out: Path, data_config: DataConfig) -> None:
    """`export-labels`: the store's verdicts in force as labelled outcomes in `data_config`'s columns."""
    import pandas as pd

    from serving.store.labels import in_config_label_values, latest_verdict_per_listing

    with _open_store(get_settings(), read_only=True) as store:
        frame, logged = store.export_labels_and_fields(data_config)
    _check_logged_columns(logged, data_config)
    frame, superseded = latest_verdict_per_listing(frame, data_config)
    # a QA sample logged before inclusion probabilities were kept has none: weighted as a review it would
    # bias retraining, so it is left out (training reads a blank inclusion_prob as 1)
    unknown = frame["inclusion_prob"].isna() if "inclusion_prob" in frame else pd.Series(False, index=frame.index)
    frame = in_config_label_values(frame[~unknown].reset_index(drop=True), data_config)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        frame.to_csv(out, index=False)
    else:
        frame.to_parquet(out, index=False)
    note = f" ({superseded} older verdicts on re-scored listings superseded)" if superseded else ""
    if unknown.any():
        note += f" ({int(unknown.sum())} QA samples logged without an inclusion probability left out)"
    typer.echo(f"wrote {len(frame)} labelled outcomes to {out}{note}")


def _check_logged_columns(logged: set[str], data_config: DataConfig) -> None:
    """Refuse a data config whose id, text or categorical columns the logged listings do not carry: its
    export would be another contract's file (the listing id under the wrong name, no text to train on).
    Nothing logged yet: nothing to check."""
    wanted = [data_config.id, *data_config.text, *data_config.categorical]
    missing = [column for column in dict.fromkeys(wanted) if column not in logged]
    if logged and missing:
        _fail(
            f"the data config's columns {', '.join(missing)} are not in the logged listings, which have "
            f"{', '.join(sorted(logged))}: pass --config with the data config of the served bundle"
        )


def _data_config(path: Path | None) -> DataConfig:
    """The data config at `path` (None: the default file); a missing or invalid file is a usage error."""
    from features.config import load_config

    try:
        return load_config(path)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--config") from exc


def _settings_with_db(db: str | None) -> Settings:
    """The service settings, with `--db` (a decision log URL) in place of TRIAGE_DATABASE_URL when given."""
    settings = get_settings()
    return settings.model_copy(update={"database_url": db}) if db else settings


def _open_store(settings: Settings, *, read_only: bool = False):  # noqa: ANN202 - a Store, imported lazily
    """The decision log at the settings' URL, its schema brought up to date. A command that only reads it
    (`read_only`) refuses a SQLite file that does not exist rather than creating an empty one; a URL that
    does not parse, names no supported database or cannot be reached is one line naming it, no traceback."""
    from sqlalchemy.exc import SQLAlchemyError

    from serving.store.store import open_store

    url = settings.database_url
    try:
        return open_store(url, must_exist=read_only)
    except ValueError as exc:
        _fail(f"decision log (--db or TRIAGE_DATABASE_URL): {_reason(exc)}")
    except SQLAlchemyError as exc:
        _fail(f"decision log (--db or TRIAGE_DATABASE_URL) {url}: {_reason(exc)}")


def _reason(exc: Exception) -> str:
    """An error's own words: a database driver's message rather than SQLAlchemy's wrapping of it."""
    return str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]


def monitor(
    hours: Annotated[float, typer.Option(min=0.001, max=24 * 92, help="window: the last HOURS before --until")] = 24.0,
    since: Annotated[str | None, typer.Option(help="window start, ISO 8601 (default: until - hours)")] = None,
    until: Annotated[str | None, typer.Option(help="window end, ISO 8601 (default: now)")] = None,
    group_by: Annotated[
        list[str] | None, typer.Option("--group-by", help="day, tier or segment (repeat for several)")
    ] = None,
    segment: Annotated[str | None, typer.Option(help="listing field of --group-by segment")] = None,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999)] = 0.95,
    bundle: Annotated[
        Path | None, typer.Option(help="bundle whose reference and policy to compare with (default: TRIAGE_BUNDLE)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON of GET /v1/monitor")] = False,
) -> None:
    """Production estimates from the decision log (miss rate, recall, block precision, queue share, with
    intervals) beside the simulator's expectation, and the drift checks with their status."""
    import json
    from datetime import timedelta

    from serving.monitor import MonitorError, MonitorRequest, report

    settings = get_settings()
    end = parse_time(until, "--until") if until else datetime.now(UTC)
    request = MonitorRequest(
        since=parse_time(since, "--since") if since else end - timedelta(hours=hours),
        until=end,
        group_by=tuple(dict.fromkeys(group_by or ())),
        segment=segment,
        confidence=confidence,
    )
    loaded, policy = _bundle_and_policy(bundle or Path(settings.bundle), settings)
    with _open_store(settings, read_only=True) as store:
        try:
            result = report(store, loaded, policy, request)
        except MonitorError as exc:
            raise typer.BadParameter(str(exc), param_hint=f"--{exc.field.replace('_', '-')}") from exc
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        for line in monitor_table(result):
            typer.echo(line)


def parse_time(text: str, option: str) -> datetime:
    """An ISO 8601 time from a command-line option (UTC when it names no zone); a usage error naming the
    option otherwise."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not an ISO 8601 time", param_hint=option) from exc
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _bundle_and_policy(path: Path, settings: Settings):  # noqa: ANN202 - (Bundle | None, Policy | None)
    """The bundle and the policy in force for it; (None, None) with a warning when it cannot be loaded
    (the estimates need only the log)."""
    from bundle.load import Bundle
    from bundle.manifest import BundleError
    from serving.models import policy_in_force

    try:
        loaded = Bundle.load(path, signing_key=settings.signing_key)
    except BundleError as exc:
        typer.echo(f"note: no bundle to compare with ({exc}): estimates only", err=True)
        return None, None
    with _open_store(settings, read_only=True) as store:
        return loaded, policy_in_force(store, loaded) or loaded.policy


MONITOR_ROWS = ("miss_rate", "recall", "block_precision", "queue_share", "violation_rate")


def monitor_table(result: dict[str, Any]) -> list[str]:
    """`triage monitor`'s table: estimates with intervals beside the simulated expectation, then drift."""
    labels, expected = result["labels"], result["expected"] or {}
    lines = [
        f"window {result['window']['since']} .. {result['window']['until']}: {labels['decisions']} decisions, "
        f"{labels['with_verdict']} with a verdict, {labels['pending_review']} reviews and "
        f"{labels['pending_audit']} audits pending, {labels['skipped_automated']} automated without a logged "
        f"audit probability (left out){'; TRUNCATED to the most recent' if result['truncated'] else ''}",
        f"{'estimate':<16}{'value':>9}{'low':>9}{'high':>9}{'verdicts':>10}{'simulated':>11}",
    ]
    simulated = {
        "miss_rate": expected.get("miss_rate"),
        "recall": (expected.get("recall") or {}).get("value"),
        "block_precision": (expected.get("block_precision") or {}).get("value"),
        "queue_share": (expected.get("queue_share") or {}).get("value"),
    }
    for key in MONITOR_ROWS:
        e = result["estimates"][key]
        lines.append(
            f"{key:<16}{_pct(e['estimate']):>9}{_pct(e['low']):>9}{_pct(e['high']):>9}{e['n_labelled']:>10}"
            f"{_pct(simulated.get(key)):>11}"
        )
    lines += [
        f"  {key}: no estimate, {result['estimates'][key]['why']}"
        for key in MONITOR_ROWS
        if result["estimates"][key]["why"]
    ]
    for name, groups in _group_tables(result["groups"]):
        lines.append(f"{name:<24}{'miss rate':>11}{'recall':>9}{'recall CI':>17}{'block prec':>11}{'queue':>8}")
        for value, e in groups.items():
            ci = f"[{_pct(e['recall']['low'])}, {_pct(e['recall']['high'])}]"
            lines.append(
                f"  {value[:22]:<22}{_pct(e['miss_rate']['estimate']):>11}{_pct(e['recall']['estimate']):>9}"
                f"{ci:>17}{_pct(e['block_precision']['estimate']):>11}{_pct(e['queue_share']['estimate']):>8}"
            )
    drift = result["drift"]
    unchecked = "; risk and features not checked" if drift["reference"] != "test split" else ""
    lines.append(f"drift: {drift['status'].upper()} (reference: {drift['reference']}{unchecked})")
    checks = [(name, drift[name]) for name in ("risk", "routing") if name in drift]
    checks += [(f"feature {name}", check) for name, check in drift.get("features", {}).items()]
    for name, check in checks:
        shown = "-" if check["psi"] is None else f"{check['psi']:.4f}"
        lines.append(f"  {name:<28} PSI {shown:>8}  {check['status']:<18} n={check['n']}")
    overall = [("recall", drift["recall"])] if "recall" in drift else []
    recalls = overall + [(f"recall {k}", v) for k, v in drift.get("tier_recall", {}).items()]
    for name, check in recalls:
        target = "none" if check["target"] is None else _pct(check["target"])
        lines.append(f"  {name:<28} {_pct(check['estimate']):>12}  target {target:<8} {check['status']}")
    return lines


def _group_tables(groups: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    tables = [(f"per {name}", groups[name]) for name in ("day", "tier") if name in groups]
    if "segment" in groups:
        tables.append((f"per {groups['segment']['column']}", groups["segment"]["values"]))
    return tables


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"
