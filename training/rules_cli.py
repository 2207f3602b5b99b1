"""`triage rules backtest`: a rule change tested on labelled history, a plain function registered by triage.cli."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from rich.console import Console
from rich.table import Table

from bundle.load import HISTORY_FILE, Bundle
from bundle.manifest import BundleError
from decision.backtest import backtest as run_backtest
from decision.policy import DECISIONS
from decision.rules import Rule
from training.evaluate import json_safe

console = Console()


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
    as_json: Annotated[bool, typer.Option("--json", help="print the full result as JSON")] = False,
) -> None:
    """Backtest a candidate, changed or removed rule with the bundle's policy on labelled history: routing
    split and reviewer-hours before and after, misses and wrongful blocks, the rule's hits, precision and
    recall with exact intervals, and for a block rule whether it would be certified to auto-block."""
    candidate = _rule(rule, rule_file)
    try:
        loaded = Bundle.load(bundle)
    except BundleError as exc:
        _fail(str(exc))
    history = _history(loaded, data)
    try:
        result = run_backtest(history, loaded.policy, candidate, replace, remove, segment_by or [], alpha)
    except ValueError as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(json_safe(result), indent=2, allow_nan=False))
        return
    _print(result, loaded.policy.version, data or loaded.path / HISTORY_FILE)


def _fail(message: str) -> Any:
    console.print(f"[red]error:[/] {message}")
    raise typer.Exit(code=2)


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


def _history(bundle: Bundle, data: Path | None) -> pd.DataFrame:
    if data is None:
        history = bundle.history()
        if history is None:
            _fail(f"bundle {bundle.path} ships no {HISTORY_FILE} (exported before it existed): pass --data")
        assert history is not None
        return history
    if not data.is_file():
        _fail(f"--data: {data} not found")
    return pd.read_csv(data) if data.suffix == ".csv" else pd.read_parquet(data)


def _print(result: dict[str, Any], policy_version: str, source: Path) -> None:
    change = result["change"]
    console.print(
        f"backtest of a rule {change['kind']} on {result['rows']:,} rows of {source} "
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
                value,
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
        f"{label} {stats['name']!r} ({stats['action']}): {stats['hits']:,} hits, {stats['violations']:,} violations; "
        f"precision {_interval(precision)}, recall {_interval(recall)} ({1 - alpha:.0%} intervals); without it "
        f"its hits go {', '.join(f'{v:,} {k}' for k, v in stats['hits_otherwise'].items())}"
    )


def _interval(value: dict[str, float | None]) -> str:
    if value["value"] is None:
        return "n/a"
    return f"{_num(value['value'])} [{_num(value['lower'])}, {_num(value['upper'])}]"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"
