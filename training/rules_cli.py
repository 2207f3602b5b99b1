"""`triage rules backtest`: a rule change tested on labelled history (the bundle's, a file, the decision log's
decisions with a verdict, or history and log together), a plain function registered by triage.cli."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from bundle.load import HISTORY_FILE, Bundle
from bundle.manifest import BundleError
from decision.backtest import SOURCES, mixed_history
from decision.backtest import backtest as run_backtest
from decision.policy import DECISIONS, Policy
from decision.rules import Rule, check_new_rule
from features.validate import DataValidationError, load_table
from training.cli_output import console
from training.cli_output import fail as _fail
from training.evaluate import json_safe

MAX_LOG_ROWS = 1_000_000  # the most recent logged decisions a backtest reads


def backtest(
    bundle: Annotated[Path, typer.Option(help="bundle directory or the models/latest pointer")] = Path("models/latest"),
    rule: Annotated[str | None, typer.Option(help="the rule to test, as JSON (name, action, kind, ...)")] = None,
    rule_file: Annotated[Path | None, typer.Option(help="the rule to test, in a JSON file")] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="scored labelled history (.parquet/.csv: risk, label, the rule's columns; tier_risk_<tier> or "
            "risk_<tier> on a tiered bundle) instead of the bundle's history.parquet"
        ),
    ] = None,
    replace: Annotated[str | None, typer.Option(help="name of the policy rule the tested rule replaces")] = None,
    remove: Annotated[str | None, typer.Option(help="name of a policy rule to remove")] = None,
    segment_by: Annotated[list[str] | None, typer.Option(help="break results down by this column (repeatable)")] = None,
    alpha: Annotated[float, typer.Option(min=0.0001, max=0.5, help="two-sided intervals at 1 - alpha")] = 0.05,
    source: Annotated[
        str,
        typer.Option(
            help="history (the bundle's, or --data), log (the decision log's decisions of this bundle's model "
            "with a verdict) or both"
        ),
    ] = "history",
    db: Annotated[
        str | None,
        typer.Option(
            "--db", "--store", help="decision log database URL for --source log/both (default: TRIAGE_DATABASE_URL)"
        ),
    ] = None,
    since: Annotated[str | None, typer.Option(help="log window start, ISO 8601 (default: the log's start)")] = None,
    until: Annotated[str | None, typer.Option(help="log window end, exclusive, ISO 8601 (default: now)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the full result as JSON")] = False,
) -> None:
    """Backtest a candidate, changed or removed rule with the bundle's policy (the policy in force from the
    decision log when it is read) on labelled rows: routing split and reviewer-hours before and after,
    misses and wrongful blocks, the rule's hits, precision and recall with exact intervals, and for a
    block rule whether it would be certified to auto-block."""
    if source not in SOURCES:
        _fail(f"--source: {source!r} is not one of {list(SOURCES)}")
    if source == "history" and (since or until or db):
        option = "--since" if since else "--until" if until else "--db"
        _fail(f"{option}: applies to the decision log: give --source log or both")
    window = _window(since, until)
    candidate = _rule(rule, rule_file)
    try:
        loaded = Bundle.load(bundle)
    except BundleError as exc:
        _fail(str(exc))
    if candidate is not None:  # as the service checks a rule it would backtest or put in force
        from serving.api.schemas import text_limits

        try:
            check_new_rule(candidate, "rule", loaded.config.column_roles(), text_limits(loaded.config))
        except ValueError as exc:
            _fail(str(exc))
    policy, history, note = loaded.policy, None, str(data or loaded.path / HISTORY_FILE)
    if source in ("history", "both"):
        history = _history(loaded, data, required=source == "history")
    if source in ("log", "both"):
        policy, log, note = _log(loaded, db, *window)
        if log.empty and (source == "log" or history is None):
            _fail(f"--source: {note}")
        if source == "both":
            history = mixed_history(history, log, loaded.config.id)
            note = f"{data or loaded.path / HISTORY_FILE} and {note}"
        else:
            history = log
    assert history is not None
    try:
        result = run_backtest(history, policy, candidate, replace, remove, segment_by or [], alpha)
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(json_safe({**result, "source": source}), indent=2, allow_nan=False))
        return
    _print(result, policy.version, note)


def _rule(text: str | None, path: Path | None) -> Rule | None:
    if text is not None and path is not None:
        _fail("--rule and --rule-file: give one of them")
    if path is not None:
        if not path.is_file():
            _fail(f"--rule-file: {path} not found")
        text = path.read_text()
    if text is None:
        return None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"rule: not valid JSON ({exc})")
    try:
        return Rule.from_dict(raw, "rule")
    except ValueError as exc:
        return _fail(str(exc))


def _history(bundle: Bundle, data: Path | None, required: bool = True) -> pd.DataFrame | None:
    if data is None:
        history = bundle.history()
        if history is None and required:
            _fail(f"bundle {bundle.path} ships no {HISTORY_FILE} (exported before it existed): pass --data")
        return history
    if not data.is_file():
        _fail(f"--data: {data} not found")
    try:  # as training reads it: a CSV's ids and text as strings, "NA" a value there, not a missing one
        return load_table(data, bundle.config)
    except DataValidationError as exc:
        return _fail(str(exc))


def _window(since: str | None, until: str | None) -> tuple[datetime | None, datetime]:
    start = _when(since, "--since") if since else None
    end = _when(until, "--until") if until else datetime.now(UTC)
    if start is not None and start >= end:
        _fail(f"--since: {start.isoformat()} is not before --until {end.isoformat()}")
    return start, end


def _when(text: str, option: str) -> datetime:
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        _fail(f"{option}: {text!r} is not an ISO 8601 time (e.g. 2026-12-01T00:00:00+00:00)")
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _log(bundle: Bundle, db: str | None, since: datetime | None, until: datetime) -> tuple[Policy, pd.DataFrame, str]:
    """The policy in force for the bundle and the decision log's decisions of its model with a verdict in
    the window. The log is the service's: read through its store (imported here, only for this source),
    opened as `triage rules stats` opens it."""
    from serving.models import policy_in_force
    from serving.settings import get_settings
    from serving.store.store import open_store

    url = db or get_settings().database_url
    try:
        with open_store(url, must_exist=True) as store:
            policy = policy_in_force(store, bundle) or bundle.policy
            log, truncated = store.decision_history(bundle.version, since, until, MAX_LOG_ROWS)
    except Exception as exc:  # a bad URL or an unreachable database: say which, no traceback
        return _fail(f"--db: cannot read the decision log at {url} ({type(exc).__name__}: {exc})")
    if log.empty:
        return (
            policy,
            log,
            (
                f"the decision log at {url} has no decision of model {bundle.version} with a verdict between "
                f"{since.isoformat() if since else 'its start'} and {until.isoformat()}"
            ),
        )
    cut = f", the most recent {MAX_LOG_ROWS:,}" if truncated else ""
    return policy, log, f"the decision log ({len(log):,} decisions with a verdict{cut})"


def _print(result: dict[str, Any], policy_version: str, source: str) -> None:
    change = result["change"]
    console.print(
        f"backtest of a rule {change['kind']} on {result['rows']:,} rows of {escape(source)} "
        f"({result['violations']:,} violations), policy {policy_version}"
    )
    table = Table("", "auto_pass", "human_review", "auto_block", "reviewer-hours", "missed", "wrongful blocks")
    for when in ("before", "after"):
        routing = result[when]
        table.add_row(
            when,
            *(f"{routing['counts'][d]:,} ({routing['shares'][d]:.2%})" for d in DECISIONS),
            f"{routing['reviewer_hours']:.1f}",
            f"{routing['missed_violations']:,}",
            f"{routing['wrongful_blocks']:,}",
        )
    console.print(table)
    for key in ("rule", "removed"):
        if key in result:
            _print_rule(result[key], result["alpha"], "removed rule" if key == "removed" else "rule")
    certificate = result.get("certificate")
    if certificate:
        verdict = "[green]certified[/]" if certificate["certified"] else "[red]NOT certified[/]"
        console.print(
            f"auto-block: {verdict}: precision lower bound {_num(certificate['lower'])} at "
            f"{1 - certificate['alpha']:.1%} vs the policy's block-precision target {certificate['target']:g}"
        )
    for column, segments in result["segments"].items():
        seg = Table(column, "rows", "review before", "review after", "hours change", "rule hits")
        for value, entry in segments.items():
            seg.add_row(
                escape(str(value)),
                f"{entry['rows']:,}",
                f"{entry['before']['shares']['human_review']:.2%}",
                f"{entry['after']['shares']['human_review']:.2%}",
                f"{entry['delta']['reviewer_hours']:+.1f}",
                str(entry["rule"]["hits"]) if "rule" in entry else "",
            )
        console.print(seg)


def _print_rule(stats: dict[str, Any], alpha: float, label: str) -> None:
    precision, recall = stats["precision"], stats["recall"]
    console.print(
        f"{label} {escape(repr(stats['name']))} ({stats['action']}): {stats['hits']:,} hits, "
        f"{stats['violations']:,} violations; "
        f"precision {_interval(precision)}, recall {_interval(recall)} ({1 - alpha:.0%} intervals); without it "
        f"its hits go {', '.join(f'{v:,} {k}' for k, v in stats['hits_otherwise'].items())}"
    )


def _interval(value: dict[str, float | None]) -> str:
    if value["value"] is None:
        return "n/a"
    return f"{_num(value['value'])} [{_num(value['lower'])}, {_num(value['upper'])}]"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
