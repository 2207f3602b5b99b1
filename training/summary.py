"""What `triage train` prints after a run: the chosen model, why, every candidate, and the test figures."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.table import Table

from decision.tiers import certifiable_text


def selection_table(selection: dict[str, Any]) -> Table:
    table = Table(title=f"model selection: {selection['criterion']}", title_justify="left")
    table.add_column("candidate", overflow="fold")  # a long name folds onto the next line, never cut short
    for column in ("review share", "sd of diff.", "PR-AUC", "ROC-AUC"):
        table.add_column(column, justify="right")
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


def in_words(values: dict[str, Any]) -> str:
    """A mapping as a reader would write it: {'severe': 437, 'minor': 42} -> 'severe 437, minor 42'."""
    return ", ".join(f"{key} {_plain(value)}" for key, value in values.items())


def _plain(value: Any) -> str:
    if isinstance(value, dict):
        return f"({in_words(value)})"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def targets_in_words(targets: dict[str, Any]) -> str:
    """A policy's targets in words ('recall severe 0.99, minor 0.9; block precision 0.98; ...'), without
    the machine-readable split (`alpha_split`), which `split` says in words."""
    return "; ".join(
        f"{key.replace('_', ' ')}{': ' if isinstance(value, str) else ' '}"
        + (in_words(value) if isinstance(value, dict) else _plain(value))
        for key, value in targets.items()
        if key != "alpha_split"
    )


def _num(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) and value == value else "n/a"  # NaN: n/a


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
    lines += policy_lines(metrics)
    lines += rules_lines(metrics)
    lines += [f"[yellow]warning:[/] {escape(str(w))}" for w in metrics.get("warnings", [])]
    return lines


def policy_lines(metrics: dict[str, Any]) -> list[str]:
    """The shipped policy in plain words: certified or not (and the strongest targets that are), what it
    did on the test split (thresholds certified on the calibration split alone), per tier."""
    lines: list[str] = []
    routing = metrics["test"].get("routing")
    if routing:
        lines.append(
            f"test split routing: auto-pass {routing['auto_pass_share']:.1%}, human review "
            f"{routing['queue_share']:.1%}, auto-block {routing['auto_block_share']:.1%} "
            f"(auto-decided {routing['auto_decided_share']:.1%}); recall {_num(routing['recall'])}"
            + "".join(
                f"; {name} recall {t['recall']:.4f} ({t['misses']} of {t['violations']} missed)"
                for name, t in routing.get("tiers", {}).items()
                if t["recall"] is not None
            )
        )
    sources = metrics.get("tier_models") or []
    if sources:
        lines.append(
            "tier risks: "
            + "; ".join(
                f"{t['tier']} from {'its own model' if t['own_model'] else 'the overall model'}"
                + (
                    f" (validation review share {t['review_share_own_model']:.3f} own vs "
                    f"{t['review_share_overall_model']:.3f} overall)"
                    if t.get("review_share_own_model") is not None
                    else ""
                )
                for t in sources
            )
        )
    cert = metrics.get("certification")
    if not cert:
        return lines
    where = cert["certified_on"].replace("+", " + ")
    if cert["feasible"]:
        achieved = metrics["thresholds"]["achieved"]
        lines.append(
            f"[green]policy certified[/] on {where} ({cert['rows']:,} rows) at {cert['confidence']:.0%} confidence: "
            f"auto-pass {achieved['auto_pass_share']:.1%}, human review {achieved['queue_share']:.1%}, "
            f"auto-block {achieved['auto_block_share']:.1%}"
        )
        evaluated = metrics.get("thresholds_evaluated") or {}
        if cert["certified_on"] != "calibration" and evaluated.get("feasible") is False:
            lines.append(
                "the test split routing above uses thresholds certified on the calibration split alone, which "
                "cannot carry the targets at this size (so it auto-passes nothing); the shipped policy is "
                f"certified on {where}, with the test rows too, once they had been evaluated"
            )
        lines += split_lines(metrics)
        lines += audit_lines(metrics)
    else:
        strongest = ", ".join(
            f"{k}: recall >= {certifiable_text(v)}" for k, v in (cert.get("strongest_certifiable") or {}).items()
        )
        how = (
            "lower the tier's recall in the data config's `tiers`, or add labelled data"
            if cert["tiers"]
            else "retrain with a lower --recall, or add labelled data"
        )
        lines.append(
            f"[red]targets NOT certified[/] on {where} ({cert['rows']:,} rows): nothing is auto-passed. "
            f"Strongest certifiable targets on this data: {strongest or 'none'} ({how})"
        )
        lines += split_lines(metrics)
    return lines


def split_lines(metrics: dict[str, Any]) -> list[str]:
    """How the confidence budget was shared among the statements, when training planned it
    (`decision.alpha_split`)."""
    plan = metrics.get("alpha_split")
    split = (metrics.get("thresholds") or {}).get("targets", {}).get("split")
    if not plan or not plan["planned"] or not split:
        return []
    return [
        f"confidence split planned on {plan['pilot_rows']:,} validation rows: {split}; predicted auto-decided "
        f"{plan['predicted_auto_pass'] + plan['predicted_auto_block']:.1%} against "
        f"{plan['default_predicted_auto_pass'] + plan['default_predicted_auto_block']:.1%} with the default split "
        "(half to block precision)"
    ]


def audit_lines(metrics: dict[str, Any]) -> list[str]:
    """The audit rates the policy ships with and why (`decision.audit_sizing`)."""
    sizing = metrics.get("audit_sizing")
    if not sizing:
        return []
    chosen, default = sizing["chosen"], sizing["policy_rates"]
    line = (
        f"audit rates: {chosen['qa_sample_rate']:.1%} of auto-passes far from t_pass, {chosen['near_rate']:.1%} near "
        f"it; expected at the next retrain on audited labels: auto-pass {chosen['next_pass_share']:.1%}, audits "
        f"{chosen['audit_share']:.1%} of listings"
    )
    if sizing["changed"]:
        line += (
            f" (raised from {default['qa_sample_rate']:.0%} / {default['near_rate']:.0%}, which would leave "
            f"auto-pass {default['next_pass_share']:.1%} at {sizing['traffic']:,} listings per certification)"
        )
    elif chosen["next_pass_share"] < 0.5 * sizing["pass_share"]:
        line += (
            f" (no audit rate pays for itself at {sizing['traffic']:,} listings per certification: a retrain on "
            "audited labels alone will not keep this auto-pass share; --audit-volume plans for the production "
            "traffic between retrains)"
        )
    return [line]


def rules_lines(metrics: dict[str, Any]) -> list[str]:
    """Each shipped rule measured on the held-out rows: its action, certified precision and the workload
    it adds under the certified thresholds (`rules_report.json` holds the details)."""
    report = metrics.get("rules")
    if not report:
        return []
    lines = []
    for rule in report["rules"]:
        cert, adds, precision = rule["certificate"], rule["adds"], rule["precision"]
        demoted = rule["action_requested"] != rule["action_shipped"]
        action = (
            f"[red]{rule['action_shipped']} (asked: {rule['action_requested']}, not certified)[/]"
            if demoted
            else rule["action_shipped"]
        )
        lines.append(
            f"rule {escape(str(rule['name']))}: {action}; {cert['hits']} hits on {report['rows']:,} held-out rows, "
            "precision "
            f"{_num(precision['value'])} (>= {_num(cert['lower'])} vs block target {cert['target']:g}); adds "
            f"{adds['queue_share']:+.2%} of traffic to review, {adds['auto_block_share']:+.2%} to auto-block, "
            f"{adds['reviewer_hours']:+.1f} reviewer-hours, catches {adds['violations_caught']} violations the "
            "thresholds would pass"
        )
    return lines
