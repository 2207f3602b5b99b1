"""`triage rules suggest`: rule suggestions mined from verdicts, as a plain Typer-annotated function
registered under `triage rules` by triage.cli.

The history is the bundle's `history.parquet` (held-out labelled rows, already scored), or `--data`, a
labelled export scored here by the bundle. Suggestions are printed, never put in force.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from rich.markup import escape
from rich.table import Table

from bundle.load import Bundle
from bundle.manifest import BundleError
from decision.rule_mining import SORTS, Suggestion, SuggestionReport, suggest_rules
from decision.tiers import risk_column
from features.validate import DataValidationError, load_table, validate_history
from training.cli_output import console, note
from training.cli_output import fail as _fail
from training.export import history_frame
from training.split import FULLY_LABELLED_ROWS


def suggest(
    bundle: Annotated[Path, typer.Option(help="bundle directory or the models/latest pointer")] = Path("models/latest"),
    data: Annotated[
        Path | None,
        typer.Option(help="labelled outcomes to mine (.parquet/.csv), scored by the bundle (default: its history)"),
    ] = None,
    top: Annotated[int, typer.Option(min=1, max=500, help="how many suggestions to show")] = 20,
    min_precision: Annotated[float, typer.Option(min=0.0, max=1.0, help="least certified precision")] = 0.0,
    sort: Annotated[str, typer.Option(help="precision | workload (certified block rules by hours removed)")] = (
        "precision"
    ),
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Mine candidate rules from verdicts (terms, a term set, brand + price band, merchants, categories,
    shallow-tree paths) on the older half of the labelled history, certify them on the newer half
    (Clopper-Pearson at alpha/K: all bounds hold together), and rank them with the workload each would
    change (a block rule removes queued work; a review rule adds the auto-passes it matches). Nothing is
    enabled: add one with PUT /v1/policy/rules/{name} and a reason."""
    if sort not in SORTS:
        _fail(f"--sort: {sort!r} is not one of {list(SORTS)}")
    try:
        loaded = Bundle.load(bundle)
        history = _scored_history(loaded, data) if data is not None else loaded.history()
        if history is None:
            _fail(f"bundle {loaded.version} ships no labelled history (history.parquet): pass --data or retrain")
        with console.status("mining rule suggestions", spinner="dots"):
            report = suggest_rules(
                history, loaded.policy, loaded.config, limit=top, min_precision=min_precision, sort=sort
            )
    except (BundleError, DataValidationError, FileNotFoundError, ValueError) as exc:
        _fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2, default=_plain))
        return
    console.print(_table(report))
    console.print(f"* certified at the block-precision target {report.block_precision_target:g}")
    console.print(
        "queue change: a block rule takes its queued hits out of the queue (-); a review rule adds the auto-passes "
        "it matches (+); extra caught: violations among the auto-passes it matches (blocked, or sent to review)",
        highlight=False,
    )
    for line in _conditions(report):
        console.print(line, highlight=False)
    for text in report.notes:
        note(text)
    console.print("none enabled: review one, backtest it, then PUT /v1/policy/rules/{name} with a reason")


def _scored_history(bundle: Bundle, data: Path) -> pd.DataFrame:
    """A labelled export as history.parquet holds it: the bundle's risk and tier risks beside each row."""
    config = bundle.config
    table = validate_history(load_table(data, config), config).reset_index(drop=True)
    risk, tier_risk = bundle.scores(table, history=table)
    scored = pd.DataFrame({"risk": risk})
    if tier_risk is not None:
        for k, name in enumerate(bundle.tier_names):
            scored[risk_column(name)] = tier_risk[:, k]  # history_frame names them tier_risk_<tier>
    history = history_frame(table, scored, config, "data")
    own = bundle.history()
    if own is not None and config.timestamp and config.timestamp in own and config.timestamp in history:
        created = history[config.timestamp]
        early = int((created < pd.Timestamp(own[config.timestamp].min())).sum())
        if early:
            note(
                f"{early:,} rows of {data} predate the bundle's held-out rows: the model was "
                "fitted on them, so its risk there is optimistic and the workload figures with it"
            )
        if (bundle.metrics.get("certification") or {}).get("rows_from") == FULLY_LABELLED_ROWS:
            late = int((created > pd.Timestamp(own[config.timestamp].max())).sum())
            if late:
                note(
                    f"{late:,} rows of {data} are newer than the bundle's held-out rows, which are the newest "
                    "fully labelled ones: the model was fitted on the verdicts since, so its risk there is "
                    "optimistic and the workload figures with it"
                )
    return history


def _table(report: SuggestionReport) -> Table:
    queue = report.queue
    table = Table(
        title=(
            f"rule suggestions: mined on {report.mining_rows:,} rows, certified on {report.holdout_rows:,} newer rows "
            f"(K={report.candidates_certified}, all bounds together at {1 - report.alpha:.1%}); queue there: "
            f"{queue['queue_items']:,} items, {queue['reviewer_hours']:.1f} reviewer-hours"
        )
    )
    for column in ("#", "action", "hits", "precision", "certified >=", "queue change", "hours change", "extra caught"):
        table.add_column(column, justify="right" if column != "action" else "left")
    for i, s in enumerate(report.suggestions, 1):
        c = s.certificate
        table.add_row(
            str(i),
            s.rule.action + (" *" if c["certified"] else ""),
            f"{c['hits']:,}",
            f"{c['precision']:.3f}",
            f"{c['lower']:.3f}",
            *_workload(s),
            f"{s.as_review['extra_violations_caught']:,}",
        )
    return table


def _workload(suggestion: Suggestion) -> tuple[str, str]:
    """The queue items and reviewer-hours the rule changes, signed, as its action acts: a block rule takes
    its hits out of the queue (-); a review rule removes nothing, it sends to the queue the auto-passes it
    matches (+). The figures of the other action would mislead: a review rule's hits already queued stay
    queued."""
    if suggestion.rule.action == "block":
        block = suggestion.as_block
        return f"-{block['hits_in_queue']:,}", f"-{block['reviewer_hours_removed']:.1f}"
    review = suggestion.as_review
    return f"+{review['workload_added_items']:,}", f"+{review['reviewer_hours_added']:.1f}"


def _conditions(report: SuggestionReport) -> list[str]:
    """Each suggestion in words, escaped for the console (a mined category value may hold brackets)."""
    return [escape(f"{i}. {s.rule.name} ({s.family}): {s.description}") for i, s in enumerate(report.suggestions, 1)]


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
