"""A short, human-readable model card written into every bundle."""

from __future__ import annotations

from typing import Any

from decision.policy import Policy
from decision.tiers import certifiable_text
from training.split import FULLY_LABELLED_ROWS
from training.summary import audit_lines, in_words, targets_in_words


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}" if value == value else "n/a"  # NaN: not defined on these rows
    return str(value)


def render_model_card(version: str, metrics: dict[str, Any], policy: Policy, options: Any) -> str:
    test, baseline = metrics["test"], metrics["baseline_test"]
    routing = test.get("routing", {})
    top = list(metrics.get("feature_importance", {}))[:8]
    selection = metrics.get("selection", {})
    model_name = metrics.get("model", {}).get("name", "lightgbm")
    lines = [
        f"# Listing-risk model {version}",
        "",
        "**Use**: calibrated probability that policy review rejects a new listing; routes listings to",
        "auto-pass, auto-block or the human review queue through the bundle's policy.",
        "",
        f"**Training data**: `{options.data}`, split by creation time ({in_words(metrics['split_sizes'])} rows; "
        "the certification rows below).",
        f"**Model**: `{model_name}`, chosen by model selection (below) on features from `features/`; "
        "centred-isotonic calibration on the calibration split.",
        *_certification_rows(metrics),
        "",
        *_selection_lines(selection),
        "## Test split (the newest held-out rows, never seen in training, calibration or model selection)",
        "",
        f"| metric | {model_name} | logistic baseline |",
        "|---|---|---|",
        f"| ROC-AUC | {_fmt(test.get('roc_auc'))} | {_fmt(baseline.get('roc_auc'))} |",
        f"| PR-AUC | {_fmt(test.get('pr_auc'))} | {_fmt(baseline.get('pr_auc'))} |",
        f"| expected calibration error | {_fmt(test.get('ece'))} | |",
        "",
        f"## Policy {policy.version}",
        "",
        f"t_pass = {policy.t_pass:.5f}, t_block = {policy.t_block:.5f}"
        + (f", per-segment by `{policy.segment_by}`" if policy.segment_by else "")
        + "".join(f", {name} t_pass = {t:.5f}" for name, t in policy.tier_pass.items())
        + (" (**provisional**)" if policy.provisional else ""),
        f"targets: {targets_in_words(policy.targets)}",
        "",
        *_certification_lines(metrics.get("certification")),
        *[f"{line}." for line in audit_lines(metrics)],
        "At the thresholds certified on the calibration split alone, on the test split: "
        + ", ".join(f"{k} {_fmt(v)}" for k, v in routing.items() if k != "tiers")
        + "".join(
            f"; {name} recall {_fmt(t['recall'])} ({t['misses']} of {t['violations']} missed)"
            for name, t in routing.get("tiers", {}).items()
        ),
        "",
        f"Top features ({metrics.get('feature_importance_kind', 'gain')}): {', '.join(top)}",
        "",
        "## Limits",
        "",
        *[f"- **Warning**: {w}" for w in metrics.get("warnings", [])],
        "Scores the future from the past: performance drifts as violators change spelling and tactics;",
        "retrain on fresh review outcomes (including QA-sampled auto decisions) regularly.",
        "",
    ]
    return "\n".join(lines)


def _certification_lines(cert: dict[str, Any] | None) -> list[str]:
    if not cert:
        return []
    state = "**certified**" if cert["feasible"] else "**NOT certified** (nothing is auto-passed)"
    lines = [f"Targets {state} on {cert['certified_on']} ({cert['rows']} rows): {cert['message']}", ""]
    if not cert["feasible"] and cert.get("strongest_certifiable"):
        strongest = ", ".join(f"{k} recall >= {certifiable_text(v)}" for k, v in cert["strongest_certifiable"].items())
        lines += [f"Strongest certifiable targets on this data: {strongest}.", ""]
    return lines


def _selection_lines(selection: dict[str, Any]) -> list[str]:
    if not selection:
        return []
    lines = [
        "## Model selection",
        "",
        f"On the newest part of the training period ({selection['validation_rows']} rows, "
        f"{selection['validation_violations']} violations), never the calibration or test split. "
        f"Criterion: {selection['criterion']}.",
        "",
        "| candidate | review share | sd of difference | PR-AUC | ROC-AUC |",
        "|---|---|---|---|---|",
    ]
    for name, row in selection["candidates"].items():
        lines.append(
            f"| {name} | {_fmt(row['review_share_at_target_recall'])} | {_fmt(row['difference_sd'])} "
            f"| {_fmt(row['pr_auc'])} | {_fmt(row['roc_auc'])} |"
        )
    lines += ["", f"**Chosen**: `{selection['winner']['name']}`: {selection['reason']}.", ""]
    return lines


def _certification_rows(metrics: dict[str, Any]) -> list[str]:
    """Which rows the policy is certified on and when they were created: the newest rows, or the newest
    fully labelled ones when audit-sampled verdicts could not certify (`training.pipeline.
    split_for_certification`)."""
    cert = metrics.get("certification") or {}
    created, rows_from = cert.get("created"), cert.get("rows_from")
    if not created or not rows_from:
        return []
    line = f"**Certification rows**: the {rows_from}, created {created['first'][:10]} to {created['last'][:10]}"
    if rows_from == FULLY_LABELLED_ROWS:
        line += " (the newest rows, audit-sampled verdicts, are too thinly sampled to certify: see the warnings)"
    return [line + "."]
