"""`triage reviewers ...` commands of the service, as plain functions with Typer annotations."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

from serving.commands import _open_store, _pct, _settings_with_db, parse_time


def reviewers_stats(
    days: Annotated[float, typer.Option(min=0.001, max=366, help="window: the last DAYS before --until")] = 30.0,
    since: Annotated[str | None, typer.Option(help="window start, ISO 8601 (default: until - days)")] = None,
    until: Annotated[str | None, typer.Option(help="window end, ISO 8601 (default: now)")] = None,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="confidence of the intervals")] = 0.95,
    db: Annotated[
        str | None, typer.Option("--db", "--store", help="decision log database URL (default: TRIAGE_DATABASE_URL)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON of GET /v1/reviewers/stats")] = False,
) -> None:
    """Reviewer quality per reviewer and per team: verdicts, reject rate, handling time, verdicts per active
    hour, agreement on blind second reviews (raw, Cohen's kappa, Gwet's AC1 with intervals) and accuracy on
    gold items (exact interval)."""
    from serving.reviewer_quality import quality_report

    settings = _settings_with_db(db)
    end = parse_time(until, "--until") if until else datetime.now(UTC)
    start = parse_time(since, "--since") if since else end - timedelta(days=days)
    if start >= end:
        raise typer.BadParameter("must be before --until", param_hint="--since")
    with _open_store(settings, read_only=True) as store:
        report = quality_report(store, start, end, confidence)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        for line in quality_table(report):
            typer.echo(line)


def quality_table(report: dict[str, Any]) -> list[str]:
    """The report as aligned text: one line per reviewer, then per team, then the overall agreement."""
    header = (
        f"{'reviewer':<24}{'team':<14}{'verdicts':>9}{'reject':>9}{'median s':>9}{'p90 s':>8}{'per hour':>9}"
        f"  {'agreement [interval]':<24}{'kappa':>7}{'AC1':>7}  {'gold accuracy [interval]':<26}"
        f"  {'amended by others [interval]':<30}"
    )
    window = report["window"]
    lines = [f"verdicts from {window['since']} to {window['until']}", header]
    lines += [_line(row["reviewer"], row.get("team") or "-", row) for row in report["reviewers"]]
    lines += [_line(f"team {row['team']}", f"{row['reviewers']} people", row) for row in report["teams"]]
    overall = report["agreement"]
    lines.append(f"all second reviews: {overall['items']} items, agreement {_interval(overall, 'raw')}")
    lines.append("verdicts: every answer, gold items included; reject: the share of rejects among listing verdicts")
    return [line.rstrip() for line in lines]


def _line(name: str, team: str, row: dict[str, Any]) -> str:
    agreement, gold = row["agreement"], row["gold"]
    return (
        f"{name:<24}{team:<14}{row['verdicts']:>9}{_pct(row['reject_rate']):>9}{_num(row['handling_seconds_median']):>9}"
        f"{_num(row['handling_seconds_p90']):>8}{_num(row['verdicts_per_active_hour']):>9}"
        f"  {_interval(agreement, 'raw'):<24}{_num(agreement['kappa'], 2):>7}{_num(agreement['ac1'], 2):>7}"
        f"  {_gold(gold):<26}  {_amended(row['amended_by_others']):<30}"
    )


def _interval(values: dict[str, Any], name: str) -> str:
    if values[name] is None:
        return "-"
    return f"{_pct(values[name])} [{_pct(values[f'{name}_low'])}, {_pct(values[f'{name}_high'])}]"


def _gold(gold: dict[str, Any]) -> str:
    if not gold["n"]:
        return "-"
    return f"{_pct(gold['accuracy'])} of {gold['n']} [{_pct(gold['low'])}, {_pct(gold['high'])}]"


def _amended(amended: dict[str, Any]) -> str:
    if not amended["n"]:
        return "-"
    return f"{_pct(amended['rate'])} of {amended['n']} [{_pct(amended['low'])}, {_pct(amended['high'])}]"


def _num(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
