"""`triage rules ...` commands of the service, as plain functions with Typer annotations."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from serving.commands import _bundle_and_policy, _open_store, _pct, _settings_with_db, parse_time


def rules_stats(
    period: Annotated[str, typer.Option(help="figures per day, week or the whole window (all)")] = "day",
    days: Annotated[float, typer.Option(min=0.001, max=366, help="window: the last DAYS before --until")] = 7.0,
    since: Annotated[str | None, typer.Option(help="window start, ISO 8601 (default: until - days)")] = None,
    until: Annotated[str | None, typer.Option(help="window end, ISO 8601 (default: now)")] = None,
    confidence: Annotated[float, typer.Option(min=0.5, max=0.999, help="confidence of the intervals")] = 0.95,
    db: Annotated[
        str | None, typer.Option("--db", "--store", help="decision log database URL (default: TRIAGE_DATABASE_URL)")
    ] = None,
    bundle: Annotated[
        Path | None, typer.Option(help="bundle whose policy in force names the rules' actions (default: TRIAGE_BUNDLE)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the JSON of GET /v1/rules/stats")] = False,
) -> None:
    """Per rule (enforce and shadow) and period: hits, share of traffic, precision among reviewed hits
    with an exact interval, what the model alone would have decided, the workload a rule adds, and the
    rules' co-occurrence, from the decision log and its verdicts."""
    from serving.rule_analytics import RuleStatsRequest, report

    settings = _settings_with_db(db)
    end = parse_time(until, "--until") if until else datetime.now(UTC)
    request = RuleStatsRequest(
        since=parse_time(since, "--since") if since else end - timedelta(days=days),
        until=end,
        period=period,
        confidence=confidence,
    )
    try:
        request.validate()
    except ValueError as exc:
        field = str(exc).partition(":")[0]
        raise typer.BadParameter(str(exc), param_hint=f"--{field}") from exc
    _, policy = _bundle_and_policy(bundle or Path(settings.bundle), settings)
    with _open_store(settings, read_only=True) as store:
        result = report(store, policy, request)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        for line in rule_stats_table(result):
            typer.echo(line)


def rule_stats_table(result: dict[str, Any]) -> list[str]:
    """`triage rules stats`'s table: one line per rule and period, then the co-occurrence matrix."""
    confidence = f"{100 * result['confidence']:g}%"
    lines = [
        f"window {result['window']['since']} .. {result['window']['until']}: {result['decisions']} decisions"
        f"{'; TRUNCATED to the most recent' if result['truncated'] else ''}; precision among reviewed hits with "
        f"{confidence} {result['interval']} interval",
        f"{'period':<11}{'rule':<24}{'mode':<8}{'hits':>7}{'share':>8}{'reviewed':>9}{'rejects':>8}"
        f"{'precision':>10}{'interval':>18}{'weighted':>9}{'m.pass':>7}{'m.review':>9}{'m.block':>8}"
        f"{'+reviews':>9}{'+hours':>8}",
    ]
    for row in result["rules"]:
        interval = (
            "-" if row["precision_low"] is None else f"[{_pct(row['precision_low'])}, {_pct(row['precision_high'])}]"
        )
        added = "-" if row["added_reviews"] is None else str(row["added_reviews"])
        hours = "-" if row["added_reviewer_hours"] is None else f"{row['added_reviewer_hours']:.2f}"
        flag = "" if row["representative"] else " *"
        lines.append(
            f"{row['period']:<11}{row['rule'][:23]:<24}{row['mode']:<8}{row['hits']:>7}{_pct(row['share']):>8}"
            f"{row['reviewed']:>9}{row['rejects']:>8}{_pct(row['precision']):>10}{interval:>18}"
            f"{_pct(row['precision_weighted']):>9}{row['model_pass']:>7}{row['model_review']:>9}"
            f"{row['model_block']:>8}{added:>9}{hours:>8}{flag}"
        )
    if not result["rules"]:
        lines.append("no rule hit a decision in this window")
    notes = [row["note"] for row in result["rules"] if not row["representative"]]
    if notes:
        lines.append(f"* {notes[0]}")
    return lines + co_occurrence_table(result["co_occurrence"])


def co_occurrence_table(matrix: dict[str, Any]) -> list[str]:
    """The co-occurrence matrix with numbered rules: row i, column j = decisions rules i and j both hit."""
    if not matrix["rules"]:
        return []
    width = max(len(name) for name in matrix["rules"]) + 6
    lines = ["co-occurrence (decisions both rules hit; the diagonal: each rule's hits)"]
    lines.append(" " * width + "".join(f"{f'[{j}]':>8}" for j in range(len(matrix["rules"]))))
    for i, (name, counts) in enumerate(zip(matrix["rules"], matrix["counts"], strict=True)):
        lines.append(f"{f'[{i}] {name}':<{width}}" + "".join(f"{c:>8}" for c in counts))
    return lines
