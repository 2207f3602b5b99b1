"""A short, human-readable model card written into every bundle."""

from __future__ import annotations

from typing import Any

from decision.policy import Policy


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render_model_card(version: str, metrics: dict[str, Any], policy: Policy, options: Any) -> str:
    test, baseline = metrics["test"], metrics["baseline_test"]
    routing = test.get("routing", {})
    top = list(metrics.get("feature_importance_gain", {}))[:8]
    lines = [
        f"# Listing-risk model {version}",
        "",
        "**Use**: calibrated probability that policy review rejects a new listing; routes listings to",
        "auto-pass, auto-block or the human review queue through the bundle's policy.",
        "",
        f"**Training data**: `{options.data}`, split by creation time "
        f"(train / calibration / test = {metrics['split_sizes']}).",
        "**Model**: LightGBM (native categoricals) on features from `features/`, centred-isotonic calibration "
        "on the calibration split.",
        "",
        "## Test split (newest rows, never seen in training or threshold choice)",
        "",
        "| metric | LightGBM | logistic baseline |",
        "|---|---|---|",
        f"| ROC-AUC | {_fmt(test.get('roc_auc'))} | {_fmt(baseline.get('roc_auc'))} |",
        f"| PR-AUC | {_fmt(test.get('pr_auc'))} | {_fmt(baseline.get('pr_auc'))} |",
        f"| expected calibration error | {_fmt(test.get('ece'))} | |",
        "",
        f"## Policy {policy.version}",
        "",
        f"t_pass = {policy.t_pass:.5f}, t_block = {policy.t_block:.5f}"
        + (f", per-segment by `{policy.segment_by}`" if policy.segment_by else "")
        + (" (**provisional**)" if policy.provisional else ""),
        f"targets: {policy.targets}",
        "",
        "At these thresholds on the test split: " + ", ".join(f"{k} {_fmt(v)}" for k, v in routing.items()),
        "",
        f"Top features by gain: {', '.join(top)}",
        "",
        "## Limits",
        "",
        "Scores the future from the past: performance drifts as violators change spelling and tactics;",
        "retrain on fresh review outcomes (including QA-sampled auto decisions) regularly.",
        "",
    ]
    return "\n".join(lines)
