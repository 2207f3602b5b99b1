"""How the pipeline's CLI commands print: one rich console that never wraps a line (a long path or
listing id stays in one piece to copy; a terminal still wraps it on screen) and labelled messages
whose text is printed as given, never read as rich markup (an error naming a column `price[usd]` keeps
its `[usd]`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def labelled(label: str, style: str, message: object, *, stderr: bool = False) -> None:
    """`label` in `style`, then `message` verbatim."""
    (err_console if stderr else console).print(f"[{style}]{label}[/] {escape(str(message))}", highlight=False)


def fail(message: object) -> NoReturn:
    """Print the error and exit with code 2 (a usage or data error)."""
    labelled("error:", "red", message)
    raise typer.Exit(code=2)


def warning(message: object, *, stderr: bool = False) -> None:
    labelled("warning:", "yellow", message, stderr=stderr)


def note(message: object) -> None:
    labelled("note:", "yellow", message)


def number_between(low: float, high: float) -> Callable[[str], float]:
    """A parser for a number option in [low, high] whose refusal says what was wrong: typer's own range
    check refused a 'nan' as "should be less than or equal to 1", which it is not. The help text should
    name the range (`range_help`)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise typer.BadParameter(f"{text!r} is not a number") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise typer.BadParameter(f"{text!r} is not a number from {low:g} to {high:g}")
        return value

    return parse


def range_help(low: float, high: float, help_text: str = "") -> str:
    return f"{help_text} [{low:g}<=x<={high:g}]".strip()


def recall_on_tiers(recall: float, targets: dict[str, float], source: str, per_tier: str) -> str:
    """Why `--recall` is refused on tiered data: each tier's own target is what gets certified, so one
    overall target would be silently ignored. `per_tier` says how to change a tier's target."""
    named = ", ".join(f"{name} {target:g}" for name, target in targets.items())
    return (
        f"--recall {recall:g}: {source} sets a recall target per violation tier ({named}), and those are "
        f"what the policy certifies, so --recall would change nothing. To change a tier's target, {per_tier}; "
        "for one recall target over every violation, add --single-tier"
    )
