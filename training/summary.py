"""What `triage train` prints after a run: the chosen model, why, every candidate, and the test figures."""

from __future__ import annotations

from typing import Any

from rich.table import Table


def selection_table(selection: dict[str, Any]) -> Table:
    table = Table(title=f"model selection: {selection['criterion']}", title_justify="left")
    for column in ("candidate", "review share", "sd of diff.", "PR-AUC", "ROC-AUC"):
        table.add_column(column, justify="left" if column == "candidate" else "right")
    winner = selection["winner"]["name"]
    for name, row in selection["candidates"].items():
        style = "bold green" if name == winner else None
        table.add_row(
            name + (" (chosen)" if name == winner else ""),
            f"{row['review_share_at_target_recall']:.4f}",
            f"{row['difference_sd']:.4f}",
            f"{row['pr_auc']:.4f}",
            f"{row['roc_auc']:.4f}",
            style=style,
        )
    return table


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "n/a"


def summary_lines(metrics: dict[str, Any]) -> list[Any]:
    """Rich renderables: the selection table, the choice and its reason, test figures, warnings."""
    selection, test, baseline = metrics["selection"], metrics["test"], metrics["baseline_test"]
    shares = test.get("review_share_at_recall", {})
    lines: list[Any] = [
        selection_table(selection),
        f"chosen: [bold]{selection['winner']['name']}[/] ({selection['reason']})",
        f"test split: ROC-AUC {_num(test.get('roc_auc'))} | baseline {_num(baseline.get('roc_auc'))} | "
        f"PR-AUC {_num(test.get('pr_auc'))} | ECE {_num(test.get('ece'))} | review share needed at recall "
        + ", ".join(f"{r}: {_num(v)}" for r, v in shares.items()),
    ]
    lines += [f"[yellow]warning:[/] {w}" for w in metrics.get("warnings", [])]
    return lines
