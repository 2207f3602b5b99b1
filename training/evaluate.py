"""Evaluation on held-out rows: ranking, calibration, routing at the chosen thresholds, per segment."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from decision.policy import CODE_BLOCK, CODE_PASS, CODE_REVIEW, Policy, route
from decision.tiers import frame_tier_risk, tier_recalls
from features.config import INCLUSION_PROB

MIN_SEGMENT_ROWS = 50
REPORTED_RECALLS = (0.9, 0.95, 0.99)


def expected_calibration_error(y: np.ndarray, risk: np.ndarray, bins: int = 15) -> float:
    """Mean |observed rate - mean risk| over equal-width risk bins, weighted by bin size."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(risk, edges[1:-1]), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    observed = np.bincount(which, weights=y, minlength=bins)
    predicted = np.bincount(which, weights=risk, minlength=bins)
    filled = counts > 0
    return float(np.sum(np.abs(observed[filled] - predicted[filled])) / max(len(y), 1))


def ranking_metrics(y: np.ndarray, risk: np.ndarray, weight: np.ndarray | None = None) -> dict[str, float]:
    """Rows, prevalence, ROC-AUC and PR-AUC; with `weight` (inverse inclusion probabilities of audit-
    sampled labels) as traffic would show them rather than the labelled rows."""
    y = np.asarray(y)
    prevalence = float(np.average(y, weights=weight)) if len(y) else float("nan")
    if y.min() == y.max():
        return {"rows": int(len(y)), "prevalence": prevalence}
    return {
        "rows": int(len(y)),
        "prevalence": prevalence,
        "roc_auc": float(roc_auc_score(y, risk, sample_weight=weight)),
        "pr_auc": float(average_precision_score(y, risk, sample_weight=weight)),
    }


def review_share_at_recall(label: np.ndarray, score: np.ndarray, recall: float) -> float:
    """Smallest share of rows that must go to review (score >= t) so that >= `recall` of the violations do.

    Thresholds sit on these very rows with no slack; rows tied with the threshold are reviewed.
    """
    label, score = np.asarray(label).astype(bool), np.asarray(score, dtype=np.float64)
    n_violating = int(label.sum())
    if n_violating == 0 or len(label) == 0:
        return float("nan")
    needed = int(np.ceil(recall * n_violating - 1e-9))
    if needed <= 0:
        return 0.0
    t = np.sort(score[label])[::-1][needed - 1]
    return float(np.mean(score >= t))


def json_safe(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by None, so `json.dumps` writes strict JSON."""
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, float | np.floating) and not np.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return value.item()
    return value


def calibration_metrics(y: np.ndarray, risk: np.ndarray) -> dict[str, float]:
    return {
        "ece": expected_calibration_error(y, risk),
        "brier": float(brier_score_loss(y, np.clip(risk, 0.0, 1.0))),
        "mean_risk": float(np.mean(risk)),
    }


def routing_metrics(
    y: np.ndarray,
    risk: np.ndarray,
    t_pass: np.ndarray | float,
    t_block: np.ndarray | float,
    review_seconds: np.ndarray | None = None,
    rule_block: np.ndarray | None = None,
    rule_review: np.ndarray | None = None,
    tier_risk: np.ndarray | None = None,
    tier_pass: np.ndarray | None = None,
    tiers: tuple[np.ndarray, list[str]] | None = None,
    weight: np.ndarray | None = None,
) -> dict[str, Any]:
    """Routing split and the quantities the thresholds promise, counted on these rows (per tier too,
    with `tiers` = (each row's tier, tier names)). With `weight` (inverse inclusion probabilities), shares,
    recall and block precision are Horvitz-Thompson estimates for traffic; counts stay counts of rows."""
    decision = route(risk, t_pass, t_block, rule_block, rule_review, tier_risk, tier_pass)
    passed, blocked, queued = decision == CODE_PASS, decision == CODE_BLOCK, decision == CODE_REVIEW
    w = np.ones(len(y)) if weight is None else np.asarray(weight, dtype=np.float64)
    total, yw = max(float(w.sum()), 1e-300), y * w
    positives = max(float(yw.sum()), 1e-300)
    out: dict[str, Any] = {
        "auto_pass_share": float(w[passed].sum() / total),
        "auto_block_share": float(w[blocked].sum() / total),
        "queue_share": float(w[queued].sum() / total),
        "recall": float(1.0 - yw[passed].sum() / positives) if y.sum() else float("nan"),  # no violation: n/a
        "block_precision": float(yw[blocked].sum() / w[blocked].sum()) if blocked.any() else float("nan"),
        "missed_violations": int(y[passed].sum()),
        "wrongful_blocks": int((1 - y[blocked]).sum()),
    }
    out["auto_decided_share"] = out["auto_pass_share"] + out["auto_block_share"]
    if review_seconds is not None:
        out["queue_reviewer_hours"] = float(np.sum(review_seconds[queued]) / 3600.0)
        out["all_reviewer_hours"] = float(np.sum(review_seconds) / 3600.0)
    if tiers is not None:
        out["tiers"] = tier_recalls(decision, *tiers)
    return out


def segment_metrics(frame: pd.DataFrame, column: str) -> dict[str, dict[str, float]]:
    """ROC-AUC and prevalence per value of a segment column (segments with too few rows are skipped)."""
    out: dict[str, dict[str, float]] = {}
    for value, part in frame.groupby(column, observed=True, sort=True):
        if len(part) >= MIN_SEGMENT_ROWS:
            out[str(value)] = ranking_metrics(part["label"].to_numpy(), part["risk"].to_numpy())
    return out


def audit_weights(frame: pd.DataFrame) -> np.ndarray | None:
    """1 / inclusion_prob of audit-sampled rows (None when every row was labelled)."""
    if INCLUSION_PROB not in frame or bool((frame[INCLUSION_PROB] >= 1.0).all()):
        return None
    return 1.0 / frame[INCLUSION_PROB].to_numpy(dtype=np.float64)


def evaluate_scores(
    frame: pd.DataFrame,
    policy: Policy | None = None,
    segments: tuple[str, ...] = (),
    rule_masks: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, Any]:
    """All metrics for a frame with columns label, risk (calibrated), optional review_seconds and segments.

    With a policy, routing metrics use the same `route` as the service: the policy's rules (pass their
    block / review masks for these rows) and then its thresholds, per segment where it has them.
    """
    y, risk = frame["label"].to_numpy(), frame["risk"].to_numpy()
    weight = audit_weights(frame)
    metrics: dict[str, Any] = {**ranking_metrics(y, risk, weight), **calibration_metrics(y, risk)}
    if weight is not None:
        metrics["weighted"] = True  # audit-sampled labels: shares and rates are estimates for traffic
    metrics["review_share_at_recall"] = {f"{r:g}": review_share_at_recall(y, risk, r) for r in REPORTED_RECALLS}
    if policy is not None:
        seg_values = frame[policy.segment_by].astype(str).to_numpy() if policy.segment_by else None
        t_pass, t_block = (
            policy.thresholds_for(seg_values) if seg_values is not None else (policy.t_pass, policy.t_block)
        )
        seconds = frame["review_seconds"].to_numpy() if "review_seconds" in frame else None
        rule_block, rule_review = rule_masks if rule_masks is not None else (None, None)
        names = list(policy.tier_pass)  # a frame without a tier's risk passes nothing (route is fail safe)
        tier_risk, tier_pass = frame_tier_risk(frame, names), policy.tier_pass_vector(names)
        tiers = (frame["tier"].to_numpy(dtype=object), names) if names and "tier" in frame else None
        metrics["routing"] = routing_metrics(
            y, risk, t_pass, t_block, seconds, rule_block, rule_review, tier_risk, tier_pass, tiers, weight
        )
        if rule_masks is not None:
            metrics["routing_thresholds_only"] = routing_metrics(
                y, risk, t_pass, t_block, seconds, tier_risk=tier_risk, tier_pass=tier_pass, tiers=tiers, weight=weight
            )
    metrics["segments"] = {col: segment_metrics(frame, col) for col in segments if col in frame}
    return metrics


def save_plots(frame: pd.DataFrame, out_dir: str | Path, segment: str | None = None) -> list[Path]:
    """ROC, precision-recall, reliability and per-segment score-distribution plots as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    y, risk = frame["label"].to_numpy(), frame["risk"].to_numpy()
    paths = []

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    fpr, tpr, _ = roc_curve(y, risk)
    axes[0].plot(fpr, tpr)
    axes[0].plot([0, 1], [0, 1], "--", color="grey")
    axes[0].set(title=f"ROC (AUC {roc_auc_score(y, risk):.3f})", xlabel="false positive rate", ylabel="recall")
    precision, recall, _ = precision_recall_curve(y, risk)
    axes[1].plot(recall, precision)
    axes[1].set(
        title=f"Precision-recall (AP {average_precision_score(y, risk):.3f})",
        xlabel="recall",
        ylabel="precision",
    )
    bins = np.quantile(risk, np.linspace(0, 1, 16))
    which = np.clip(np.searchsorted(bins[1:-1], risk, side="right"), 0, 14)
    mean_risk = np.bincount(which, weights=risk, minlength=15) / np.maximum(np.bincount(which, minlength=15), 1)
    observed = np.bincount(which, weights=y, minlength=15) / np.maximum(np.bincount(which, minlength=15), 1)
    axes[2].plot([0, 1], [0, 1], "--", color="grey")
    axes[2].plot(mean_risk, observed, "o-")
    axes[2].set(
        title=f"Reliability (ECE {expected_calibration_error(y, risk):.4f})",
        xlabel="calibrated risk",
        ylabel="observed rejection rate",
    )
    fig.tight_layout()
    paths.append(out_dir / "test_curves.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    if segment and segment in frame:
        fig, ax = plt.subplots(figsize=(10, 5))
        groups = [(str(k), g["risk"].to_numpy()) for k, g in frame.groupby(segment, observed=True)]
        ax.boxplot([g for _, g in groups], tick_labels=[k for k, _ in groups], showfliers=False)
        ax.set(title=f"Calibrated risk by {segment}", ylabel="risk", yscale="log")
        ax.tick_params(axis="x", rotation=60)
        fig.tight_layout()
        paths.append(out_dir / f"risk_by_{segment}.png")
        fig.savefig(paths[-1], dpi=90)
        plt.close(fig)
    return paths
