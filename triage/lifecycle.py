"""Model lifecycle commands, composing training (registry, gate, train) with the service's store:
`triage retrain`, `triage promote`, `triage shadow-report`.

Retraining data: the original history (every listing in it was reviewed: inclusion probability 1) plus
the service's exported verdicts older than the gate's hold-out, each with the inclusion probability it was
logged with, so training weighs it by 1/probability. The newest `--holdout` share of the exported verdicts
is never trained on: it is the recent, unbiasedly weighted data the gate compares challenger and champion on.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import pandas as pd
import typer

from features.config import INCLUSION_PROB, DataConfig, load_config

if TYPE_CHECKING:  # the store is imported where a command needs it (a fast CLI start)
    from serving.store import Store


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


def split_recent(labels: pd.DataFrame, holdout: float, config: DataConfig) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(older, newest) exported labels by creation time (by their order, verdict order, for a config
    without timestamps: `time_order: row`): the newest `holdout` share is the gate's."""
    if config.timestamp:
        ordered = labels.iloc[pd.to_datetime(labels[config.timestamp], utc=True).argsort(kind="stable")]
    else:
        ordered = labels
    ordered = ordered.reset_index(drop=True)
    cut = len(ordered) - max(1, round(holdout * len(ordered)))
    return ordered.iloc[:cut].reset_index(drop=True), ordered.iloc[cut:].reset_index(drop=True)


def training_frame(history: pd.DataFrame | None, older_labels: pd.DataFrame, config: DataConfig) -> pd.DataFrame:
    """The original history (inclusion probability 1) and the older exported labels; a listing in both
    keeps its newest outcome (the exported verdict). Either without the config's id column is an error
    (de-duplicating on a missing id would keep one row of it)."""
    for name, part in (("the review history (--data)", history), ("the exported labels", older_labels)):
        if part is not None and config.id not in part.columns:
            raise ValueError(
                f"{name} has no id column {config.id!r} (columns: {', '.join(map(str, part.columns))}): "
                "pass the data config the service's bundle was trained with (--config)"
            )
    parts = []
    if history is not None:
        parts.append(history.assign(**{INCLUSION_PROB: 1.0}))
    parts.append(older_labels)
    combined = pd.concat(parts, ignore_index=True, sort=False)
    return combined.drop_duplicates(config.id, keep="last").reset_index(drop=True)


def fully_labelled_until(history: pd.DataFrame | None, exported: pd.DataFrame, config: DataConfig) -> str | None:
    """The end of the fully labelled rows of a retrain (`triage train --fully-labelled-until`), ISO 8601: the
    newest creation time of the history, every listing of which was reviewed, or just before the first
    exported verdict's listing when one was created earlier (a listing the service decided is not fully
    labelled). None without a history or a timestamp column."""
    if history is None or history.empty or config.timestamp is None:
        return None
    until = pd.to_datetime(history[config.timestamp], utc=True).max()
    if not exported.empty and config.timestamp in exported:
        first = pd.to_datetime(exported[config.timestamp], utc=True).min()
        if first <= until:
            until = first - pd.Timedelta(microseconds=1)
    return until.isoformat()


def targets_in_force(champion: Path | None, models_dir: Path) -> dict[str, Any] | None:
    """The champion's targets in force (recall, per tier or overall; block precision; confidence): those
    of the policy the service put in force for it (`PUT /v1/policy`), else of its bundle's policy.json
    (`triage thresholds` writes there); None without a champion or targets. A retrain certifies its
    challenger at these, not at the data config's defaults, so a target a PM changed survives it."""
    import tempfile

    from bundle.policies import load_policy
    from serving.settings import get_settings
    from serving.store import create_store
    from training.promotion import champion_bundle

    with tempfile.TemporaryDirectory() as scratch:
        champion_dir = champion if champion is not None else champion_bundle(models_dir, Path(scratch))
        if champion_dir is None or not (champion_dir / "policy.json").is_file():
            return None
        targets = dict(load_policy(champion_dir).targets)
        store = create_store(get_settings().database_url, group_commit=False)
        try:
            store.init_schema()
            stored = store.policy_in_force(champion_dir.resolve().name)
        finally:
            store.close()
    if stored is not None:
        targets = dict(stored.get("targets") or targets)
    wanted: dict[str, Any] = {
        key: targets[key] for key in ("recall", "block_precision", "confidence") if key in targets
    }
    return wanted if "recall" in wanted else None


CONTRACT_ROLES = ("id", "label", "text", "categorical", "numeric")


def contract_differences(champion: DataConfig, config: DataConfig) -> dict[str, tuple[list[str], list[str]]]:
    """Role -> (the champion's columns, the config's) where the champion could not be gated on this
    config's verdicts: another id or label column, or a text, categorical or numeric column of the
    champion's that the config does not have. A config that adds a feature column (a retrain with a new
    feature) differs in nothing that matters: its export still carries every column the champion reads."""

    def columns(of: DataConfig, role: str) -> list[str]:
        value = getattr(of, role)
        return [value] if isinstance(value, str) else list(value)

    kept = set(config.listing_columns)
    return {
        role: (columns(champion, role), columns(config, role))
        for role in CONTRACT_ROLES
        if (
            columns(champion, role) != columns(config, role)
            if role in ("id", "label")
            else not set(columns(champion, role)) <= kept
        )
    }


def refuse_another_contract(
    champion_dir: Path | None, config: DataConfig, config_path: Path | None, source: str
) -> None:
    """Refuse (before training, before its targets are read) a champion trained on a data config with
    other columns than this retrain's: its targets belong to another service, and the gate could not
    score it on this service's verdicts."""
    if champion_dir is None:
        return
    champion = load_config(champion_dir / "data_config.yaml")
    differing = contract_differences(champion, config)
    if not differing:
        return
    shown = "; ".join(
        f"{role} [{', '.join(theirs)}] vs [{', '.join(ours)}]" for role, (theirs, ours) in differing.items()
    )
    _fail(
        f"the champion ({source}) {champion_dir.resolve().name} was trained on another data config than "
        f"{config_path or 'configs/data.yaml'} (--config): {shown} (champion vs --config). Pass --champion "
        "<bundle> of this service, or promote one first"
    )


def training_targets(in_force: dict[str, Any], config: DataConfig, work: Path) -> tuple[Path | None, dict[str, Any]]:
    """(a data config file with the tiers' recall targets in force, or None; `train`'s target options).
    Tier targets live in the data config, so a tiered champion's are written into a copy of `config`;
    an untiered champion's one recall target is `--recall` with `--single-tier`."""
    import yaml

    options: dict[str, Any] = {
        key: float(in_force[key]) for key in ("block_precision", "confidence") if key in in_force
    }
    recall = in_force["recall"]
    if not isinstance(recall, dict):
        return None, {**options, "recall": float(recall), "single_tier": True}
    unknown = sorted(set(recall) - {tier.name for tier in config.tiers})
    if unknown:  # a tier renamed or removed since: the config's tiers and their targets stand
        typer.echo(f"the champion's policy names tiers {unknown} that the data config does not have: not carried over")
    raw = config.to_dict()
    for name, target in recall.items():
        if name in raw["tiers"]:
            raw["tiers"][name]["recall"] = float(target)
    path = work / "data_config.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path, options


def retrain(
    data: Annotated[
        Path | None, typer.Option(help="the original review history trained on too (omit with --labels-only)")
    ] = Path("data/generated/reviews.parquet"),
    labels_only: Annotated[bool, typer.Option(help="train on the exported labels alone")] = False,
    work: Annotated[Path, typer.Option(help="where the exported, training and gate data are written")] = Path(
        "data/labels"
    ),
    out: Annotated[Path, typer.Option(help="directory of bundles")] = Path("models"),
    holdout: Annotated[
        float, typer.Option(min=0.05, max=0.8, help="newest share of exported labels kept for the gate")
    ] = 0.3,
    seed: Annotated[int, typer.Option()] = 0,
    champion: Annotated[
        Path | None, typer.Option(help="the champion bundle (default: the registry's champion)")
    ] = None,
    audit_volume: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="listings the next retrain's certification will stand for, for audit sizing (default: what the "
            "training rows' certification split stands for, from their inclusion probabilities)",
        ),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="YAML data config: the served bundle's column names, read by export-labels and train alike "
            "(default: configs/data.yaml)"
        ),
    ] = None,
    search_trials: Annotated[
        int | None,
        typer.Option(min=1, help="the challenger's LightGBM hyperparameter trials (default: train's 12)"),
    ] = None,
) -> None:
    """export-labels -> train (original history + older verdicts, weighted) -> promotion gate -> `candidate`.

    The gate's newest verdicts are never trained on, but they count in the challenger's merchant history
    (`triage train --merchant-outcomes`), so that the service counts each of them once it serves.

    The new bundle is registered without an alias and OUT/latest is left where it was; only a pass of the
    gate makes it the candidate, and only `triage promote` makes it serve (and points `latest` at it). Exit
    status 1 when the gate refuses it."""
    import tempfile

    from bundle.manifest import BundleError, resolve_bundle
    from training.commands import gate, train
    from training.promotion import champion_bundle

    try:
        data_config = load_config(config)
    except (OSError, ValueError) as exc:
        _fail(f"--config: {exc}")
        return
    if champion is not None:  # the bundle named now (`--champion models/latest` is what serves)
        try:
            champion = resolve_bundle(champion)
        except BundleError as exc:
            _fail(f"--champion: {exc}")
            return
    if data is not None and not labels_only and not (data.is_file() or data.is_dir()):
        _fail(f"--data: review history {data} not found (name the file the bundle was trained on, or --labels-only)")
    with tempfile.TemporaryDirectory() as scratch:  # the registry champion's bundle when OUT lacks it
        champion_dir = champion if champion is not None else champion_bundle(out, Path(scratch))
        source = "--champion" if champion is not None else "the registry's listing-risk@champion"
        refuse_another_contract(champion_dir, data_config, config, source)
        work.mkdir(parents=True, exist_ok=True)
        in_force = targets_in_force(champion_dir, out)
        targets = _export_and_split(data, labels_only, work, holdout, config, data_config, in_force)
        # `latest` stays where it was: a service started on it must not serve a challenger the gate may refuse
        challenger = train(
            data=work / "train.parquet", out=out, seed=seed, alias=False, latest=False, audit_volume=audit_volume,
            search_trials=search_trials, merchant_outcomes=work / "gate.parquet", **targets,
        )  # fmt: skip
        gate(
            challenger=challenger,
            labels=work / "gate.parquet",
            champion=champion_dir,
            models_dir=out,
            history=work / "train.parquet",
        )


def _export_and_split(
    data: Path | None,
    labels_only: bool,
    work: Path,
    holdout: float,
    config: Path | None,
    data_config: DataConfig,
    in_force: dict[str, Any] | None,
) -> dict[str, Any]:
    """Export the verdicts, write WORK/train.parquet (history + older verdicts) and WORK/gate.parquet (the
    newest), and return `train`'s config and target options (the champion's targets in force, if any)."""
    from features.validate import load_table, validate_history
    from serving.commands import write_labels
    from serving.store.labels import in_config_label_values

    exported = work / "exported.parquet"
    write_labels(exported, data_config)
    labels = pd.read_parquet(exported)
    if len(labels) < 2:
        _fail(f"the store holds {len(labels)} verdicts: too few to retrain and gate on (review more listings)")
    try:  # history and verdicts in one form (labels 1/0, timestamps parsed), written back in the config's
        labels = validate_history(labels, data_config)  # label values for `train` and the gate to read
        history = None if labels_only or data is None else validate_history(load_table(data, data_config), data_config)
        older, recent = split_recent(labels, holdout, data_config)
        training = training_frame(history, older, data_config)
    except ValueError as exc:  # a DataValidationError too: one message per broken rule
        _fail(str(exc))
    in_config_label_values(training, data_config).to_parquet(work / "train.parquet", index=False)
    in_config_label_values(recent, data_config).to_parquet(work / "gate.parquet", index=False)
    typer.echo(
        f"training on {len(training):,} rows ({len(older):,} exported verdicts), "
        f"gating on the newest {len(recent):,} verdicts ({work / 'gate.parquet'})"
    )
    targets: dict[str, Any] = {"config": config}
    if in_force is not None:
        config_file, targets = training_targets(in_force, data_config, work)  # the config `train` reads
        targets["config"] = config_file or config
        typer.echo(f"certifying at the targets in force for the champion: {json.dumps(in_force, sort_keys=True)}")
    return {**targets, "fully_labelled_until": fully_labelled_until(history, labels, data_config)}


def promote(
    reason: Annotated[str, typer.Option(help="why (kept in the registry and the service's audit trail)")],
    version: Annotated[str | None, typer.Option(help="model version (default: the current candidate)")] = None,
    alias: Annotated[str, typer.Option()] = "champion",
    actor: Annotated[str | None, typer.Option(help="who promotes (default: the login name)")] = None,
    models_dir: Annotated[
        Path | None,
        typer.Option(help="where the service finds bundles (default: the service's, TRIAGE_MODELS_DIR)"),
    ] = None,
    force: Annotated[
        bool, typer.Option(help="make champion a version the promotion gate refused (recorded with the reason)")
    ] = False,
) -> None:
    """Point an MLflow registry alias (default champion) at a model version, recording who and why.

    Promoting the champion also records it in the service's store (TRIAGE_DATABASE_URL): every running
    worker then serves it within a second, and `POST /v1/admin/reload` accepts it; and it points `latest`
    in the models directory at its bundle, so a service started on `latest` serves it too."""
    from serving.settings import get_settings
    from serving.store import create_store
    from serving.store.model_audit import SERVING_EVENTS
    from training.export import point_latest
    from training.registry import CHAMPION_ALIAS, REGISTERED_MODEL, bundle_version_of, download_bundle
    from training.registry import promote as move_alias

    actor = actor or os.environ.get("USER") or getpass.getuser()
    if len(reason.strip()) < 3:
        _fail("--reason: say why (at least 3 characters)")
    served_root = get_settings().models_root
    models_dir = models_dir if models_dir is not None else served_root
    if alias == CHAMPION_ALIAS and not models_dir.resolve().is_relative_to(served_root):
        _fail(
            f"--models-dir {models_dir} is outside the service's models directory {served_root}: the service "
            "would refuse the bundle and keep serving its current model; pass the service's TRIAGE_MODELS_DIR "
            "(or set TRIAGE_MODELS_DIR here)"
        )
    try:
        promoted, forced = move_alias(version, alias, actor=actor, reason=reason, force=force)
    except ValueError as exc:
        _fail(str(exc))
        return
    if forced:
        reason = f"{reason} (forced past the promotion gate's refusal)"
        typer.echo(f"version {promoted} was refused by the promotion gate: promoted anyway (--force)", err=True)
    typer.echo(f"{REGISTERED_MODEL}@{alias} -> version {promoted} (by {actor})")
    if alias != CHAMPION_ALIAS:
        return
    bundle_version = bundle_version_of(promoted)
    bundle = models_dir / bundle_version
    if not bundle.is_dir():
        bundle = download_bundle(f"models:/{REGISTERED_MODEL}/{promoted}", bundle)
    store = create_store(get_settings().database_url, group_commit=False)
    try:
        store.init_schema()
        before = store.latest_model_change(("promote",))
        serving = store.latest_model_change(SERVING_EVENTS)
        new_policy = _policy_deciding(store, bundle_version, bundle)
        store.record_model_change(
            "promote",
            actor,
            old_model=before.new_model if before else None,
            new_model=bundle_version,
            bundle=str(bundle.resolve()),
            registry_version=promoted,
            policy_version=new_policy.get("version"),
            reason=reason,
            policies=(_policy_deciding(store, serving.new_model, serving.bundle) if serving else {}, new_policy),
        )
    finally:
        store.close()
    point_latest(models_dir, bundle)  # `latest` names what serves: a service (re)started on it serves this
    latest = models_dir / "latest"
    typer.echo(f"the service serves bundle {bundle_version} ({bundle}) from now on; {latest} points to it")


def _policy_deciding(store: Store, bundle_version: str | None, bundle: str | Path | None) -> dict[str, Any]:
    """The policy a bundle decides with once served: the one stored for it, else its policy.json ({} when
    neither can be read, e.g. a bundle no longer on this machine)."""
    from bundle.policies import load_policy

    stored = store.policy_in_force(bundle_version) if bundle_version else None
    if stored is not None:
        return dict(stored)
    try:
        return load_policy(bundle).to_dict() if bundle else {}
    except (OSError, ValueError):
        return {}


def shadow_report(
    model_version: Annotated[str | None, typer.Option(help="only this shadow model")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Champion vs shadow decisions from the service's store: agreement, confusion, review share of each,
    and each model's errors where a reviewer's verdict exists."""
    from serving.settings import get_settings
    from serving.shadow import report_lines
    from serving.shadow import shadow_report as build
    from serving.store import create_store

    store = create_store(get_settings().database_url, group_commit=False)
    try:
        store.init_schema()
        report = build(store.shadow_pairs(model_version))
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    for line in report_lines(report):
        typer.echo(line)
