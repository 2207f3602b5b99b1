"""CLI commands of the offline pipeline, as plain functions with Typer annotations (registered on `triage`
by `triage.cli`): generate, train, evaluate, score, gate. `triage thresholds` and `triage simulate`
live in `training.policy_cli`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from training.cli_output import console, number_between, range_help, recall_on_tiers, warning
from training.cli_output import fail as _fail


def generate(
    rows: Annotated[int, typer.Option(min=100, help="number of reviewed listings")] = 100_000,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    out: Annotated[Path, typer.Option(help="output directory")] = Path("data/generated"),
    start: Annotated[str, typer.Option(help="first creation date, YYYY-MM-DD")] = "2025-01-01",
    months: Annotated[int, typer.Option(min=1, help="months of history")] = 12,
    force: Annotated[bool, typer.Option(help="overwrite existing data of another size")] = False,
) -> None:
    """Write synthetic review history (reviews.parquet), its oracle (oracle.parquet) and catalogue.csv.

    Existing data of another size is kept unless --force: a bundle or a notebook may rest on it."""
    from training.generate import write_dataset

    existing = _existing_rows(out / "reviews.parquet")
    if existing is not None and existing != rows and not force:
        _fail(
            f"{out / 'reviews.parquet'} already holds {existing:,} rows (asked for {rows:,}); "
            "pass --force to overwrite it (make data FORCE=1), or --out another directory (make data DATA_DIR=...)"
        )
    paths = write_dataset(out, rows=rows, seed=seed, start=start, months=months)
    for name, path in paths.items():
        console.print(f"wrote {name}: {escape(str(path))}")


def _existing_rows(path: Path) -> int | None:
    """Rows of an existing Parquet file (from its footer, without reading the data), or None."""
    if not path.is_file():
        return None
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        with pq.ParquetFile(path) as parquet:
            return int(parquet.metadata.num_rows)
    except (OSError, pa.ArrowException):  # not a readable Parquet file: nothing worth keeping
        return None


def train(
    data: Annotated[Path, typer.Option(help="review outcomes, .parquet or .csv")] = Path(
        "data/generated/reviews.parquet"
    ),
    config: Annotated[Path | None, typer.Option(help="YAML data config (default: configs/data.yaml)")] = None,
    out: Annotated[Path, typer.Option(help="directory of bundles")] = Path("models"),
    seed: Annotated[int, typer.Option()] = 0,
    recall: Annotated[
        float | None,
        typer.Option(
            parser=number_between(0.5, 0.99999),
            help=range_help(
                0.5,
                0.99999,
                "one recall target over every violation (default 0.99): for a data config without tiers, "
                "or with --single-tier; a tiered config's targets are its tiers'",
            ),
        ),
    ] = None,
    block_precision: Annotated[
        float, typer.Option(parser=number_between(0.5, 0.99999), help=range_help(0.5, 0.99999))
    ] = 0.98,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.9999)] = 0.95,
    segment_by: Annotated[str | None, typer.Option(help="choose thresholds per value of this column")] = None,
    single_tier: Annotated[
        bool,
        typer.Option("--single-tier", help="one --recall target over every violation, ignoring the config's tiers"),
    ] = False,
    certify_on: Annotated[
        str, typer.Option(help="rows the shipped policy is certified on: calibration+test (default) or calibration")
    ] = "calibration+test",
    calibration_fraction: Annotated[
        float | None,
        typer.Option(min=0.05, max=0.6, help="calibration share (default: 0.2, raised up to 0.4 for small data)"),
    ] = None,
    mlflow: Annotated[bool, typer.Option(help="log the run to MLflow and register the model")] = True,
    alias: Annotated[
        bool | None,
        typer.Option(
            "--alias/--no-alias",
            help="move the registry's candidate alias to this model (default: only when --out is models)",
        ),
    ] = None,
    audit_sizing: Annotated[
        bool,
        typer.Option(
            "--audit-sizing/--default-audit-rates",
            help="raise the policy's audit rates where the next retrain's certificate on audited labels needs "
            "them (best expected auto-pass share net of audits; metrics.json audit_sizing)",
        ),
    ] = True,
    plan_alpha_split: Annotated[
        bool,
        typer.Option(
            "--plan-alpha-split/--default-alpha-split",
            help="share the confidence budget among the recall targets and block precision as the model "
            "selection's validation rows predict auto-decides most (default: half to the block, half to recall; "
            "metrics.json alpha_split)",
        ),
    ] = True,
    audit_volume: Annotated[
        float | None,
        typer.Option(
            min=1,
            help="listings the next retrain's certification will stand for (production traffic between retrains), "
            "for audit sizing (default: as many as this run's certification rows)",
        ),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            help="train on Dask: local:N (N worker processes here) or a scheduler address (tcp://scheduler:8786); "
            "--data is then a Parquet file or a directory of Parquet parts"
        ),
    ] = None,
    search_trials: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="LightGBM hyperparameter trials on the validation rows (fixed budget, seeded; default 12); "
            "fewer trains faster",
        ),
    ] = None,
    merchant_outcomes: Annotated[
        Path | None,
        typer.Option(
            help="verdicts known besides DATA (a retrain's gate verdicts, .parquet or .csv), counted in merchant "
            "history only, never trained on: the service then counts each of them from the start",
        ),
    ] = None,
    fully_labelled_until: Annotated[
        str | None,
        typer.Option(
            help="newest creation time (ISO 8601) of the rows of DATA every listing of which was reviewed (the "
            "history before the service decided): when the newest rows are audit-sampled too thinly to certify "
            "the recall targets even with no miss, certify on the newest of those rows instead (triage retrain "
            "passes it)",
        ),
    ] = None,
    latest: Annotated[
        bool,
        typer.Option(
            "--latest/--no-latest",
            help="repoint OUT/latest at the new bundle (--no-latest: leave it naming what it named, as a retrain does)",
        ),
    ] = True,
) -> Path:
    """Train, calibrate, choose thresholds, evaluate and export a bundle to OUT/<version>; returns its path.

    The registered model version gets the alias `candidate` only for a run into models/ (or --alias):
    an experiment with --out elsewhere never replaces the candidate `triage promote` would promote."""
    from features.validate import DataValidationError
    from training.cluster import ClusterSpec
    from training.pipeline import TrainOptions
    from training.pipeline import train as run
    from training.registry import RegistryError

    if cluster is not None:
        try:
            ClusterSpec.parse(cluster)
        except ValueError as exc:
            _fail(str(exc))
    if recall is not None and not single_tier:
        _refuse_recall_on_tiers(recall, config)
    if fully_labelled_until is not None:
        from serving.commands import parse_time

        fully_labelled_until = parse_time(fully_labelled_until, "--fully-labelled-until").isoformat()

    options = TrainOptions(
        data=data,
        config=config,
        out=out,
        seed=seed,
        recall=0.99 if recall is None else recall,
        block_precision=block_precision,
        confidence=confidence,
        segment_by=segment_by,
        tiers=not single_tier,
        certify_on=certify_on,
        calibration_fraction=calibration_fraction,
        log_mlflow=mlflow,
        move_candidate=alias,
        cluster=cluster,
        audit_sizing=audit_sizing,
        audit_volume=audit_volume,
        plan_alpha_split=plan_alpha_split,
        move_latest=latest,
        merchant_outcomes=merchant_outcomes,
        fully_labelled_until=fully_labelled_until,
    )
    if search_trials is not None:
        options.search_trials = search_trials
    try:
        result = run(options)
    except (DataValidationError, FileNotFoundError, ValueError, RegistryError) as exc:
        _fail(str(exc))
    from training.summary import summary_lines

    for line in summary_lines(result.metrics):
        console.print(line)
    pointer = escape(str(result.bundle_dir.parent / "latest"))
    pointed = f"{pointer} points to it" if latest else f"{pointer} not moved"
    console.print(f"bundle: [bold]{escape(str(result.bundle_dir))}[/] ({pointed})")
    if result.mlflow:
        registered = f"MLflow: registered listing-risk version {result.mlflow['model_version']}"
        if "alias" in result.mlflow:
            console.print(f"{registered} (alias {result.mlflow['alias']}), run {result.mlflow['run_id']}")
        else:
            why = (
                "--no-alias: `triage gate` makes it the candidate if it passes"
                if alias is False
                else "--out is not models/; pass --alias to make it the candidate"
            )
            console.print(f"{registered} without alias ({why}), run {result.mlflow['run_id']}")
    return result.bundle_dir


def _refuse_recall_on_tiers(recall: float, config: Path | None) -> None:
    """--recall on a tiered data config would change nothing the policy certifies (each tier has its own
    target): refused before any work, naming the tiers' targets and how to change them."""
    from features.config import load_config

    try:
        data_config = load_config(config)
    except (FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if data_config.tiered:
        _fail(
            recall_on_tiers(
                recall,
                {t.name: t.recall for t in data_config.tiers},
                f"the data config {config or 'configs/data.yaml'}",
                "copy the data config, set `recall:` under that tier in `tiers:` and pass the copy with --config",
            )
        )


def evaluate(
    bundle: Annotated[Path, typer.Option(help="bundle directory or models/latest")] = Path("models/latest"),
    data: Annotated[Path, typer.Option(help="labelled review outcomes to evaluate on")] = Path(
        "data/generated/reviews.parquet"
    ),
    oracle: Annotated[Path | None, typer.Option(help="oracle.parquet from `triage generate`")] = None,
    rows: Annotated[
        str, typer.Option(help="test: only the rows in the bundle's own test split; all: every row of DATA")
    ] = "test",
    config: Annotated[
        Path | None, typer.Option(help="data config of DATA when its columns are named unlike the bundle's")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="also write the JSON here")] = None,
) -> None:
    """Metrics of a bundle as strict JSON: by default on its own held-out test split, read from DATA."""
    from bundle.manifest import BundleError
    from features.validate import DataValidationError
    from training.offline import evaluate_bundle

    try:
        metrics = evaluate_bundle(bundle, data, oracle, rows=rows, config_path=config)
    except (BundleError, DataValidationError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    for message in metrics["warnings"]:  # on stderr: stdout is the JSON
        warning(message, stderr=True)
    text = json.dumps(metrics, indent=2, allow_nan=False)
    if out:
        out.write_text(text)
    sys.stdout.write(text + "\n")


def score(
    bundle: Annotated[Path, typer.Option(help="bundle directory or models/latest")] = Path("models/latest"),
    data: Annotated[
        Path, typer.Option(help="listings to score: a .parquet or .csv file, or a directory of Parquet files")
    ] = Path("data/generated/reviews.parquet"),
    out: Annotated[
        Path, typer.Option(help="output .parquet or .csv (with --cluster: a directory of Parquet parts)")
    ] = Path("data/scored.parquet"),
    cluster: Annotated[
        str | None,
        typer.Option(help="score on Dask: local:N (N worker processes here) or a scheduler, tcp://host:8786"),
    ] = None,
) -> None:
    """Offline batch scoring: risk and decision for every listing in a file or a directory of Parquet
    files (with --cluster, partition by partition on a Dask cluster)."""
    from bundle.manifest import BundleError
    from features.validate import DataValidationError
    from training.offline import score_file

    try:
        summary = score_file(bundle, data, out) if cluster is None else _score_on_cluster(bundle, data, out, cluster)
    except (BundleError, DataValidationError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    except OSError as exc:  # an output folder that cannot be written, a full disk
        _fail(f"{type(exc).__name__}: {exc}")
    console.print(summary)
    for column, found in summary.get("unknown_categories", {}).items():
        share = found["rows"] / max(summary["rows"], 1)
        typer.echo(
            f"warning: column {column!r}: {found['rows']:,} listings ({share:.1%}) hold values the model has no "
            f"code for (unseen in training, or too rare there), scored as unknown: e.g. {found['values']}",
            err=True,
        )


def _score_on_cluster(bundle: Path, data: Path, out: Path, cluster: str) -> dict:
    from training.cluster import ClusterSpec
    from training.dask_score import score_on_cluster

    spec = ClusterSpec.parse(cluster)  # a bad value fails before anything is read
    try:
        return score_on_cluster(bundle, data, out, spec)
    except (OSError, TimeoutError) as exc:
        raise ValueError(f"--cluster {cluster}: {type(exc).__name__}: {exc}") from exc


def gate(
    challenger: Annotated[Path, typer.Option(help="the challenger bundle (default: models/latest)")] = Path(
        "models/latest"
    ),
    labels: Annotated[Path, typer.Option(help="recent labelled outcomes (export-labels), .parquet or .csv")] = Path(
        "data/labels/gate.parquet"
    ),
    champion: Annotated[
        Path | None, typer.Option(help="the champion bundle (default: the registry's champion; none: first model)")
    ] = None,
    models_dir: Annotated[Path, typer.Option(help="where the registry champion's bundle is looked for")] = Path(
        "models"
    ),
    register: Annotated[
        bool, typer.Option("--register/--no-register", help="on a pass, alias the challenger `candidate`")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    history: Annotated[
        Path | None,
        typer.Option(
            help="the outcomes known before LABELS (the training rows), .parquet or .csv: merchant history counts "
            "them as the service does (default: LABELS alone)"
        ),
    ] = None,
) -> None:
    """The promotion gate: compare the challenger with the champion on the same recent labelled data
    (weighted by 1/inclusion_prob) and, if it is no worse, make it the registry's `candidate`.

    Exit status 1 when the challenger is refused (the report says why)."""
    import tempfile

    from bundle.manifest import BundleError, resolve_bundle
    from features.config import load_config
    from features.validate import DataValidationError, load_table
    from training.promotion import champion_bundle, gate_and_register, run_gate

    try:
        # read as the challenger was trained (a CSV's ids and text as strings, "NA" a value there), and
        # a bad file fails before the registry is asked anything
        config = load_config(resolve_bundle(challenger) / "data_config.yaml")
        recent = load_table(labels, config)
        known = load_table(history, config) if history is not None else None
        with tempfile.TemporaryDirectory() as scratch:
            champion_dir = champion if champion is not None else champion_bundle(models_dir, Path(scratch))
            report = run_gate(challenger, champion_dir, recent, known)
        registered = gate_and_register(report) if register else None
    except (BundleError, DataValidationError, FileNotFoundError, LookupError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        sys.stdout.write(json.dumps({**report.to_dict(), "candidate_version": registered}, indent=2) + "\n")
    else:
        for line in report.lines():
            console.print(line, highlight=False)
        if registered is not None:
            console.print(
                f"registered: listing-risk version {registered} is now @candidate (triage promote to serve it)"
            )
    if not report.passed:
        raise typer.Exit(code=1)
