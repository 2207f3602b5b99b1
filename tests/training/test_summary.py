"""What `triage train` prints about the shipped policy's audit rates and confidence split (training.summary)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from decision.alpha_split import AlphaSplit
from training.evaluate import routing_metrics
from training.summary import audit_lines, in_words, policy_lines, split_lines, targets_in_words


def _outlook(floor: float, near: float, next_pass: float, audits: float) -> dict[str, float]:
    return {
        "qa_sample_rate": floor,
        "near_rate": near,
        "next_pass_share": next_pass,
        "audit_share": audits,
        "net_share": next_pass - audits,
    }


def test_the_summary_says_what_raised_audit_rates_buy() -> None:
    sizing = {
        "chosen": _outlook(0.2, 0.2, 0.179, 0.05),
        "policy_rates": _outlook(0.02, 0.1, 0.0, 0.023),
        "traffic": 80_000,
        "pass_share": 0.248,
        "changed": True,
    }
    (line,) = audit_lines({"audit_sizing": sizing})
    assert "20.0% of auto-passes far from t_pass, 20.0% near it" in line
    assert "auto-pass 17.9%, audits 5.0% of listings" in line
    assert "raised from 2% / 10%, which would leave auto-pass 0.0% at 80,000 listings per certification" in line


def test_the_summary_warns_when_no_audit_rate_keeps_the_share() -> None:
    kept = _outlook(0.02, 0.1, 0.0, 0.014)
    sizing = {"chosen": kept, "policy_rates": kept, "traffic": 3_345, "pass_share": 0.14, "changed": False}
    (line,) = audit_lines({"audit_sizing": sizing})
    assert "raised" not in line and "no audit rate pays for itself at 3,345 listings per certification" in line
    enough = {**sizing, "chosen": _outlook(0.02, 0.1, 0.13, 0.014), "policy_rates": _outlook(0.02, 0.1, 0.13, 0.014)}
    assert "pays for itself" not in audit_lines({"audit_sizing": enough})[0]
    assert audit_lines({}) == []


def test_the_summary_says_how_a_planned_split_shares_the_confidence_budget() -> None:
    plan = {
        "planned": True,
        "split": {"block": 0.0, "tiers": [1.0]},
        "pilot_rows": 2_400,
        "predicted_auto_pass": 0.21,
        "predicted_auto_block": 0.0,
        "default_predicted_auto_pass": 0.0,
        "default_predicted_auto_block": 0.0,
    }
    targets = {"split": AlphaSplit(0.0, (1.0,)).describe(0.05, ["the violations"])}
    (line,) = split_lines({"alpha_split": plan, "thresholds": {"targets": targets}})
    assert "planned on 2,400 validation rows: recall of the violations at 95% confidence, no block-precision" in line
    assert "predicted auto-decided 21.0% against 0.0% with the default split" in line
    assert split_lines({"alpha_split": {**plan, "planned": False}, "thresholds": {"targets": targets}}) == []
    assert split_lines({}) == []


def test_a_test_split_without_violations_has_no_recall() -> None:
    # Rows without a single violation say nothing about recall: n/a, never a perfect 1.0000.
    y = np.zeros(200, dtype=np.int8)
    risk = np.linspace(0.0, 0.5, 200)
    routing = routing_metrics(y, risk, t_pass=0.0, t_block=1.0)
    assert math.isnan(routing["recall"])
    metrics = {"test": {"routing": routing}, "certification": None}
    (line,) = policy_lines(metrics)
    assert "recall n/a" in line and "recall 1.0000" not in line
    with_violations = routing_metrics(np.r_[y[:-1], 1], risk, t_pass=0.0, t_block=1.0)
    assert with_violations["recall"] == 1.0


def test_the_summary_says_why_the_test_split_passes_nothing_when_the_shipped_policy_does() -> None:
    # Calibration alone cannot carry the targets (0% on the test split); calibration + test can (12.2%).
    routing = {"auto_pass_share": 0.0, "queue_share": 1.0, "auto_block_share": 0.0, "auto_decided_share": 0.0}
    certified = {"certified_on": "calibration+test", "rows": 12_000, "feasible": True, "confidence": 0.95, "tiers": []}
    achieved = {"auto_pass_share": 0.122, "queue_share": 0.878, "auto_block_share": 0.0}
    metrics: dict[str, Any] = {
        "test": {"routing": {**routing, "recall": 1.0}},
        "certification": certified,
        "thresholds": {"achieved": achieved},
        "thresholds_evaluated": {"feasible": False},
    }
    said = " ".join(policy_lines(metrics))
    assert "certified on the calibration split alone, which cannot carry the targets" in said
    assert "auto-pass 12.2%" in said
    metrics["thresholds_evaluated"] = {"feasible": True}  # both feasible: nothing to explain
    assert "cannot carry the targets" not in " ".join(policy_lines(metrics))


def test_a_split_of_the_confidence_budget_reads_as_confidence_not_as_recall_targets() -> None:
    """ "recall of severe at 0.97, recall of minor at 0.98" read like recall targets (0.99 / 0.9 are)."""
    split = AlphaSplit(0.0, (0.6, 0.4)).describe(0.05, ["severe", "minor"])
    assert split == (
        "recall of severe at 97% confidence, recall of minor at 98% confidence, no block-precision statement "
        "(Bonferroni)"
    )
    assert "block precision at 98.75% confidence" in AlphaSplit(0.25, (0.375, 0.375)).describe(0.05, ["a", "b"])


def test_counts_and_targets_are_printed_in_words_not_as_python_dicts() -> None:
    assert in_words({"severe": 437, "minor": 4_200}) == "severe 437, minor 4,200"
    targets = {
        "recall": {"severe": 0.99, "minor": 0.9},
        "block_precision": 0.98,
        "confidence": 0.95,
        "split": "recall of severe at 97% confidence",
        "alpha_split": {"block": 0.0, "tiers": [0.6, 0.4]},
    }
    text = targets_in_words(targets)
    assert text == (
        "recall severe 0.99, minor 0.9; block precision 0.98; confidence 0.95; "
        "split: recall of severe at 97% confidence"
    )
    assert "{" not in text and "alpha" not in text
