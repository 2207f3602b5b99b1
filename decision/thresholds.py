"""Choose the routing thresholds (t_pass, t_block) on the calibration split's reference scores.

Modes (all pure and vectorised; statistics in `decision.guarantees`):
* guarantee (default): least queue with recall >= R and block precision >= P, each holding with
  confidence 1 - delta/2 on new data (so both together at 1 - delta);
* capacity: given reviewer-hours per day and a daily volume, the highest recall whose expected queue
  fits, keeping the block-precision guarantee;
* cost: Chow's rule on calibrated risk from the costs of a review, a miss and a wrongful block;
* segments: per-segment thresholds (`decision.segment_thresholds`) used where they beat the global pair.

Infeasible targets never raise: the result has feasible=False, a plain message, a fail-safe pair that
still honours the guarantees (nothing is auto-passed), and the closest achievable point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from decision.alpha_split import AlphaSplit
from decision.guarantees import (
    DEFAULT_REVIEW_SECONDS,
    Certified,
    OperatingPoint,
    RankedScores,
    certify,
    group_starts,
    miss_rate_upper,
    ordered_pair,
    precision_lower,
)
from decision.policy import CODE_BLOCK, CODE_PASS, Policy, route
from decision.rules import Rule
from decision.segment_thresholds import SegmentChoice, choose_segmented
from decision.tiers import (
    TierCertificate,
    best_certifiable_recall,
    certifiable_text,
    certify_tiers,
    overall_miss_rate_upper,
    pass_score,
    risk_column,
    tier_thresholds,
    violations_needed,
)
from decision.weighted import (
    BlockCertificate,
    Strata,
    audit_rate_needed,
    certify_block,
    certify_recall,
    share_lower,
    weighted_share,
)
from features.config import INCLUSION_PROB, DataConfig, Tier
from features.lexicon import PROHIBITED_TERMS, REGULATED_CATEGORIES


@dataclass
class ThresholdResult:
    """Chosen thresholds, what they achieve on the calibration rows, and the guarantee behind them."""

    mode: str  # "guarantee" | "tiered" | "capacity" | "cost" | "segmented"
    feasible: bool
    message: str
    t_pass: float
    t_block: float
    targets: dict[str, Any]
    point: OperatingPoint  # point estimates and bounds at (t_pass, t_block)
    segment_by: str | None = None
    segments: dict[str, tuple[float, float]] = field(default_factory=dict)
    closest: OperatingPoint | None = None  # best achievable point when infeasible
    segment_report: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    tiers: list[TierCertificate] = field(default_factory=list)  # tiered mode: one certificate per tier
    # the highest recall each target could be certified at with these rows, where the certificate knows
    # it (audit-weighted rows: the weighted bound's best lower bound, not the unweighted 0-miss formula)
    best_certifiable: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "feasible": self.feasible,
            "message": self.message,
            "t_pass": self.t_pass,
            "t_block": self.t_block,
            "targets": self.targets,
            "achieved": self.point.to_dict(),
            "bounds": {
                "miss_rate_upper": _none_if_nan(self.point.miss_rate_upper),
                "recall_lower": _none_if_nan(1.0 - self.point.miss_rate_upper),
                "block_precision_lower": _none_if_nan(self.point.block_precision_lower),
                "recall_confidence": self.point.recall_confidence,
                "block_confidence": self.point.block_confidence,
            },
            "n": self.point.n,
            "n_violating": self.point.n_violating,
            "segment_by": self.segment_by,
            "segments": {k: [a, b] for k, (a, b) in self.segments.items()},
            "closest": self.closest.to_dict() if self.closest else None,
            "segment_report": self.segment_report,
            "notes": list(self.notes),
            "tiers": [t.to_dict() for t in self.tiers],
        }

    def guarantee(self) -> dict[str, Any]:
        """What the policy promises, as stored in policy.json."""
        return {
            "mode": self.mode,
            "feasible": self.feasible,
            "recall_lower": _none_if_nan(1.0 - self.point.miss_rate_upper),
            "block_precision_lower": _none_if_nan(self.point.block_precision_lower),
            "recall_confidence": self.point.recall_confidence,
            "block_confidence": self.point.block_confidence,
            "n": self.point.n,
            "n_violating": self.point.n_violating,
            "message": self.message,
            **({"tiers": [t.to_dict() for t in self.tiers]} if self.tiers else {}),
        }

    def to_policy(
        self, rules: list[Rule] | None = None, qa_sample_rate: float = 0.02, version: str | None = None
    ) -> Policy:
        """A policy from these thresholds; provisional when the targets could not be met."""
        version = version or f"policy-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-1"
        return Policy(
            version=version,
            t_pass=self.t_pass,
            t_block=self.t_block,
            segment_by=self.segment_by if self.segments else None,
            segments=dict(self.segments),
            rules=list(rules or []),
            qa_sample_rate=qa_sample_rate,
            tier_pass={t.name: t.t_pass for t in self.tiers},
            targets=dict(self.targets),
            provisional=not self.feasible,
            guarantee=self.guarantee(),
        ).validate()


def _none_if_nan(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def _ranked(reference: pd.DataFrame) -> RankedScores:
    seconds = reference["review_seconds"].to_numpy(dtype=np.float64) if "review_seconds" in reference else None
    return RankedScores.build(reference["risk"].to_numpy(dtype=np.float64), reference["label"].to_numpy(), seconds)


def _check_targets(recall: float, block_precision: float, delta: float) -> None:
    for name, value in (("recall", recall), ("block_precision", block_precision), ("delta", delta)):
        if not 0.0 < value < 1.0:
            raise ValueError(f"{name}: {value!r} must be strictly between 0 and 1")


def choose_thresholds(
    ranked: RankedScores,
    recall: float = 0.99,
    block_precision: float = 0.98,
    delta: float = 0.05,
    split: AlphaSplit | None = None,
) -> ThresholdResult:
    """Guarantee mode on pre-ranked scores (`split`: how delta is shared by the recall and the block
    precision, default half each; see `decision.alpha_split`)."""
    _check_targets(recall, block_precision, delta)
    split = split or AlphaSplit.default(1)
    alpha_pass, alpha_block = split.alphas(delta)
    found = certify(ranked, recall, block_precision, delta, (float(alpha_pass[0]), alpha_block))
    targets = {
        "recall": recall,
        "block_precision": block_precision,
        "confidence": 1 - delta,
        "split": split.describe(delta, ["the violations"]),
        "alpha_split": split.to_dict(),
    }
    return _guarantee_result(ranked, found, targets, "guarantee", float(alpha_pass[0]))


def _guarantee_result(
    ranked: RankedScores, found: Certified, targets: dict[str, Any], mode: str, alpha: float | None = None
) -> ThresholdResult:
    """`alpha`: the recall statement's level (default: half of 1 - confidence)."""
    notes = _notes(ranked, found, AlphaSplit.from_dict(targets.get("alpha_split"), 1))
    if found.pass_certified:
        return ThresholdResult(
            mode,
            True,
            _summary(found.point, targets),
            found.t_pass,
            found.t_block,
            targets,
            found.point,
            notes=notes,
        )
    alpha = alpha if alpha is not None else (1 - targets["confidence"]) / 2
    n1 = ranked.n_violating
    closest = ranked.point(float(ranked.violating_risk[0]), found.t_block, alpha) if n1 else None
    best = best_certifiable_recall(n1, alpha) if n1 else float("nan")
    need = violations_needed(targets["recall"], alpha)
    message = (
        f"Infeasible: recall >= {targets['recall']:g} cannot be certified at {1 - alpha:.2%} "
        f"confidence with {n1} violating listings in the certification rows (needs at least {need}), so no "
        "listing can be auto-passed. Fail-safe thresholds send everything below t_block to human review."
        + (
            f" Closest achievable: recall >= {certifiable_text(best)} certified, passing below {closest.t_pass:.4g}"
            f" ({closest.auto_pass_share:.1%} auto-passed)."
            if closest
            else ""
        )
    )
    return ThresholdResult(
        mode, False, message, found.t_pass, found.t_block, targets, found.point, closest=closest, notes=notes
    )


def _no_block_note(split: AlphaSplit | None, weighted: bool = False) -> str:
    if split is not None and split.block == 0:
        return (
            "no auto-block: the confidence budget went to the recall targets, as the held-out rows predicted "
            "no certifiable auto-block threshold at the block-precision target (t_block = 1)"
        )
    if weighted:
        return "no auto-block threshold can be certified on these audit-weighted rows"
    return (
        "no auto-block threshold can be certified at the block-precision target: nothing is auto-blocked (t_block = 1)"
    )


def _notes(ranked: RankedScores, found: Certified, split: AlphaSplit | None = None) -> list[str]:
    notes = []
    if not found.block_certified:
        notes.append(_no_block_note(split))
    if ranked.seconds_imputed:
        notes.append(
            "review_seconds missing (for some rows, or all): imputed with the known rows' median, or 60 s if none"
        )
    return notes


def _summary(point: OperatingPoint, targets: dict[str, Any]) -> str:
    blocked = (
        f"block precision {point.block_precision:.4f} (>= {point.block_precision_lower:.4f})"
        if point.auto_blocked
        else "nothing auto-blocked"
    )
    return (
        f"t_pass={point.t_pass:.5g}, t_block={point.t_block:.5g}: queue {point.queue_share:.1%}, "
        f"recall {point.recall:.4f} (>= {1 - point.miss_rate_upper:.4f}), {blocked}, "
        + (
            f"bounds: {targets['split']}"
            if "split" in targets
            else f"recall bound at {point.recall_confidence:.1%} confidence"
            + (f", block precision's at {point.block_confidence:.1%}" if point.block_confidence else "")
        )
    )


def choose_for_capacity(
    ranked: RankedScores,
    capacity_hours: float,
    daily_volume: float,
    recall: float = 0.99,
    block_precision: float = 0.98,
    delta: float = 0.05,
) -> ThresholdResult:
    """Highest recall whose expected reviewer-hours per day fit `capacity_hours` (block guarantee kept).

    The recall bound reported here is pointwise at the chosen t_pass (the threshold is picked from
    handling time, not from the recall target)."""
    _check_targets(recall, block_precision, delta)
    if capacity_hours < 0 or daily_volume <= 0:
        raise ValueError("capacity_hours must be >= 0 and daily_volume > 0")
    found = certify(ranked, recall, block_precision, delta)
    alpha = delta / 2
    i_block = int(ranked.below(found.t_block))
    budget = capacity_hours * 3600.0 * ranked.n / daily_volume  # seconds over the calibration rows
    i_pass = int(np.searchsorted(ranked.cum_seconds, ranked.cum_seconds[i_block] - budget, side="left"))
    t_pass = _pass_threshold_at(ranked, i_pass, i_block, found.t_block)
    t_pass, t_block = ordered_pair(t_pass, found.t_block)
    point = ranked.point(t_pass, t_block, alpha)
    hours_per_day = _hours_per_day(point, daily_volume)
    target_hours = _hours_per_day(found.point, daily_volume)
    targets = {
        "recall": recall,
        "block_precision": block_precision,
        "confidence": 1 - delta,
        "capacity_hours": capacity_hours,
        "daily_volume": daily_volume,
    }
    feasible = 1 - point.miss_rate_upper >= recall
    message = (
        f"{capacity_hours:g} reviewer-hours/day for {daily_volume:,.0f} listings/day: queue "
        f"{point.queue_share:.1%} ({hours_per_day:.1f} h/day), recall {point.recall:.4f} "
        f"(>= {1 - point.miss_rate_upper:.4f} at {point.recall_confidence:.1%})"
    )
    if not feasible:
        message = (
            f"Infeasible: {message}, below the recall target {recall:g}; the target needs about "
            f"{target_hours:.1f} reviewer-hours/day"
            + ("" if found.pass_certified else " and more violating calibration examples")
        )
    closest = None if feasible else (found.point if found.pass_certified else None)
    return ThresholdResult(
        "capacity",
        feasible,
        message,
        t_pass,
        t_block,
        targets,
        point,
        closest=closest,
        notes=_notes(ranked, found),
    )


def _pass_threshold_at(ranked: RankedScores, i_pass: int, i_block: int, t_block: float) -> float:
    """Lowest threshold passing at least the first i_pass rows (it must sit where the risk value changes)."""
    if i_pass == 0:
        return 0.0
    starts = group_starts(ranked.risk)
    j = int(np.searchsorted(starts, i_pass, side="left"))
    return float(ranked.risk[starts[j]]) if j < len(starts) and starts[j] < i_block else t_block


def _hours_per_day(point: OperatingPoint, daily_volume: float) -> float:
    return point.reviewer_hours / point.n * daily_volume if point.n else 0.0


def choose_by_cost(
    ranked: RankedScores, cost_review: float, cost_miss: float, cost_wrong_block: float, delta: float = 0.05
) -> ThresholdResult:
    """Chow's rule: pass if risk < c_review / c_miss, block if risk > 1 - c_review / c_wrong_block.

    No target is certified; the bounds at the resulting pair are reported."""
    if min(cost_review, cost_miss, cost_wrong_block) <= 0:
        raise ValueError("costs must be positive")
    t_pass = min(cost_review / cost_miss, 1.0)
    t_block = max(1.0 - cost_review / cost_wrong_block, 0.0)
    if t_pass >= t_block:  # review never pays: pass or block, whichever costs less
        t_pass = t_block = cost_wrong_block / (cost_miss + cost_wrong_block)
    t_pass, t_block = ordered_pair(t_pass, t_block)
    point = ranked.point(t_pass, t_block, delta / 2)
    targets = {
        "cost_review": cost_review,
        "cost_miss": cost_miss,
        "cost_wrong_block": cost_wrong_block,
        "confidence": 1 - delta,
    }
    return ThresholdResult(
        "cost",
        True,
        "cost mode (Chow's rule, no target certified): " + _summary(point, targets),
        t_pass,
        t_block,
        targets,
        point,
    )


def choose_policy_thresholds(
    reference: pd.DataFrame,
    recall: float = 0.99,
    block_precision: float = 0.98,
    delta: float = 0.05,
    segment_by: str | None = None,
    *,
    capacity_hours: float | None = None,
    daily_volume: float | None = None,
    cost_review: float | None = None,
    cost_miss: float | None = None,
    cost_wrong_block: float | None = None,
    min_segment_rows: int = 2000,
    min_segment_violations: int = 50,
    min_relative_saving: float = 0.01,
    seed: int = 0,
    tiers: tuple[Tier, ...] | list[Tier] = (),
    alpha_split: AlphaSplit | None = None,
) -> ThresholdResult:
    """Thresholds for a bundle from its reference frame (columns risk, label, review_seconds, segments;
    with `tiers`, also `tier` and `risk_<tier>`: tiered guarantee mode, see `decision.tiers`).

    `alpha_split`: how delta is shared by the statements of the guarantee and tiered modes, planned on
    rows other than these (`decision.alpha_split`); the other modes keep their fixed split."""
    for column in ("risk", "label", *([segment_by] if segment_by else [])):
        if column not in reference:
            raise ValueError(f"reference: missing column {column!r}")
    costs = (cost_review, cost_miss, cost_wrong_block)
    if any(c is not None for c in costs):
        if any(c is None for c in costs):
            raise ValueError("cost mode needs cost_review, cost_miss and cost_wrong_block")
        return choose_by_cost(_ranked(reference), cost_review, cost_miss, cost_wrong_block, delta)  # type: ignore[arg-type]
    if capacity_hours is not None:
        if daily_volume is None:
            raise ValueError("capacity mode needs daily_volume")
        return choose_for_capacity(_ranked(reference), capacity_hours, daily_volume, recall, block_precision, delta)
    strata = Strata.of(reference[INCLUSION_PROB].to_numpy()) if INCLUSION_PROB in reference else None
    if strata is not None and strata.weighted:
        result = choose_weighted(reference, strata, recall, block_precision, delta, tiers, alpha_split)
        if segment_by:
            result.notes.append(f"per-segment thresholds by {segment_by!r} not used: the rows are audit-weighted")
        return result
    if tiers:
        result = choose_tiered(reference, tiers, block_precision, delta, alpha_split)
        if segment_by:
            result.notes.append(f"per-segment thresholds by {segment_by!r} not used: the policy is tiered")
        return result
    if segment_by is None:
        return choose_thresholds(_ranked(reference), recall, block_precision, delta, alpha_split)
    return _choose_with_segments(
        reference,
        recall,
        block_precision,
        delta,
        segment_by,
        min_segment_rows,
        min_segment_violations,
        min_relative_saving,
        seed,
        alpha_split,
    )


def _choose_with_segments(
    reference: pd.DataFrame,
    recall: float,
    block_precision: float,
    delta: float,
    segment_by: str,
    min_rows: int,
    min_violations: int,
    min_saving: float,
    seed: int,
    alpha_split: AlphaSplit | None = None,
) -> ThresholdResult:
    """Per-segment thresholds against one global pair, each at delta / 2 (their fixed split); when no
    segment can have its own, the global pair on all of delta, split as without segments (`alpha_split`)."""
    _check_targets(recall, block_precision, delta)
    # Two certified candidates, the better one kept: each gets half the error budget (Bonferroni).
    ranked = _ranked(reference)
    global_half = choose_thresholds(ranked, recall, block_precision, delta / 2)
    choice = choose_segmented(
        reference,
        segment_by,
        recall,
        block_precision,
        delta / 2,
        (global_half.t_pass, global_half.t_block),
        min_segment_rows=min_rows,
        min_segment_violations=min_violations,
        seed=seed,
    )
    if choice is None:
        result = choose_thresholds(ranked, recall, block_precision, delta, alpha_split)
        result.notes.append(
            f"per-segment thresholds by {segment_by!r} not used: no segment has "
            f">= {min_rows} rows and >= {min_violations} violations in half the calibration data"
        )
        return result
    report = _segment_report(choice, segment_by, min_saving)
    wins = choice.certified.pass_certified and choice.relative_saving >= min_saving
    if not wins:
        global_half.targets["confidence"] = 1 - delta  # the candidate's own bounds are at 1 - delta/4 each
        global_half.segment_report = report
        global_half.notes.append(
            f"per-segment thresholds by {segment_by!r} not used: saving "
            f"{choice.relative_saving:.1%} of the queue < {min_saving:.1%}"
        )
        return global_half
    targets = {"recall": recall, "block_precision": block_precision, "confidence": 1 - delta}
    found = choice.certified
    message = (
        f"per-segment thresholds by {segment_by!r} ({len(choice.segments)} re-calibrated segments) "
        f"save {choice.relative_saving:.1%} of the queue against one global pair; certified on "
        f"{found.point.n} held-out rows: " + _summary(found.point, targets)
    )
    return ThresholdResult(
        "segmented",
        True,
        message,
        choice.t_pass,
        choice.t_block,
        targets,
        found.point,
        segment_by=segment_by,
        segments=choice.segments,
        segment_report=report,
        notes=_notes(ranked, found),
    )


def _segment_report(choice: SegmentChoice, segment_by: str, min_saving: float) -> dict[str, Any]:
    return {
        "segment_by": segment_by,
        "rows_certified": choice.n_b,
        "queue_segmented": choice.queue_segmented_b,
        "queue_global": choice.queue_global_b,
        "relative_saving": choice.relative_saving,
        "min_relative_saving": min_saving,
        "common_pair": [choice.t_pass, choice.t_block],
        "segments": choice.rows,
    }


def choose_tiered(
    reference: pd.DataFrame,
    tiers: tuple[Tier, ...] | list[Tier],
    block_precision: float,
    delta: float,
    split: AlphaSplit | None = None,
) -> ThresholdResult:
    """Tiered guarantee mode: each tier's recall and the block precision, all at once with 1 - delta
    (`split`: how delta is shared among them, default `decision.tiers.tier_alpha`)."""
    for tier in tiers:
        _check_targets(tier.recall, block_precision, delta)
    split = split or AlphaSplit.default(len(tiers))
    choice = certify_tiers(reference, tiers, block_precision, delta, split)
    tier_alphas, alpha_block = split.alphas(delta)
    label = reference["label"].to_numpy().astype(bool)
    seconds = reference["review_seconds"].to_numpy(dtype=np.float64) if "review_seconds" in reference else None
    point = _point_from_codes(
        choice.codes, label, seconds, choice.t_pass, choice.t_block, float(tier_alphas.sum()), alpha_block
    )
    # the overall recall bound comes from the tiers' certificates (see decision.tiers), not from the count
    point = replace(point, miss_rate_upper=overall_miss_rate_upper(choice.tiers))
    targets = {
        "recall": {t.name: t.recall for t in tiers},
        "block_precision": block_precision,
        "confidence": 1 - delta,
        "split": split.describe(delta, [t.name for t in tiers]),
        "alpha_split": split.to_dict(),
    }
    tier_text = ", ".join(
        f"{t.name} recall {t.recall:.4f} (>= {t.recall_lower:.4f}, target {t.recall_target:g}, t_pass {t.t_pass:.4g})"
        if t.certified
        else f"{t.name} NOT certified"
        for t in choice.tiers
    )
    blocked = (
        f"block precision {point.block_precision:.4f} (>= {point.block_precision_lower:.4f}) "
        f"at t_block {choice.t_block:.4g}"
        if point.auto_blocked
        else "nothing auto-blocked"
    )
    summary = (
        f"auto-pass {point.auto_pass_share:.1%}, queue {point.queue_share:.1%}, auto-block "
        f"{point.auto_block_share:.1%}; {tier_text}; {blocked}; all together at {1 - delta:.0%} confidence"
    )
    notes = [] if choice.block_certified else [_no_block_note(split)]
    if choice.feasible:
        return ThresholdResult(
            "tiered", True, summary, choice.t_pass, choice.t_block, targets, point, notes=notes, tiers=choice.tiers
        )
    failing = [t for t in choice.tiers if not t.certified]
    message = (
        "Infeasible: "
        + "; ".join(
            f"tier {t.name!r}: recall >= {t.recall_target:g} cannot be certified at {1 - t.alpha:.2%} confidence "
            f"with {t.n_violating} violations in the certification data (needs at least {t.violations_needed}); "
            f"the strongest certifiable target for it is recall >= {certifiable_text(t.best_certifiable_recall)}"
            for t in failing
        )
        + ". So no listing can be auto-passed (fail safe: everything below t_block goes to human review). "
        + "Lower that tier's recall target, merge it into another tier, or add labelled data. "
        + summary
    )
    return ThresholdResult(
        "tiered", False, message, choice.t_pass, choice.t_block, targets, point, notes=notes, tiers=choice.tiers
    )


def choose_weighted(
    reference: pd.DataFrame,
    strata: Strata,
    recall: float,
    block_precision: float,
    delta: float,
    tiers: tuple[Tier, ...] | list[Tier] = (),
    split: AlphaSplit | None = None,
) -> ThresholdResult:
    """Guarantee (or tiered) mode on audit-weighted rows (`decision.weighted`): every bound counts each
    row for 1 / inclusion_prob listings and is taken per sampling stratum. The split of delta is the
    unweighted modes' (`split`, planned on other rows; default each tier's recall at delta / (2K), or
    delta / 2 with one target, and blocks at delta / 2)."""
    for target in [recall] if not tiers else [t.recall for t in tiers]:
        _check_targets(target, block_precision, delta)
    label = reference["label"].to_numpy().astype(bool)
    risk = reference["risk"].to_numpy(dtype=np.float64)
    split = split or AlphaSplit.default(max(len(tiers), 1))
    tier_alphas, alpha_block = split.alphas(delta)
    block = (
        certify_block(risk, strata, label, block_precision, alpha_block)
        if alpha_block > 0
        else BlockCertificate.none()  # the split makes no block statement
    )
    if tiers:
        tier_risk = np.column_stack([reference[risk_column(t.name)].to_numpy(dtype=np.float64) for t in tiers])
        recalls = np.array([t.recall for t in tiers])
        score = pass_score(tier_risk, recalls)
        tier_col = reference["tier"].to_numpy(dtype=object)
        groups = [(t.name, t.recall, tier_col == t.name) for t in tiers]
    else:
        tier_risk, recalls, score = None, np.array([recall]), risk
        groups = [("all", recall, label)]
    found = [
        certify_recall(score, strata, mask, target, float(a))
        for (_, target, mask), a in zip(groups, tier_alphas, strict=True)
    ]
    feasible = all(c.certified for c in found)
    u = min(c.threshold for c in found) if feasible else 0.0
    t_block = block.t_block
    tier_pass = tier_thresholds(u, recalls) if tiers else None
    t_pass, t_block = ordered_pair(t_block if tiers else u, t_block)  # tiered: the tiers limit passes
    codes = route(risk, t_pass, t_block, tier_risk=tier_risk, tier_pass=tier_pass)
    weights = 1.0 / strata.pi[strata.index]
    seconds = reference["review_seconds"].to_numpy(dtype=np.float64) if "review_seconds" in reference else None
    point = _point_from_codes(codes, label, seconds, t_pass, t_block, float(tier_alphas.sum()), alpha_block)
    certificates = []
    for (name, target, mask), cert, alpha_tier in zip(groups, found, tier_alphas.tolist(), strict=True):
        passed = mask & (codes == CODE_PASS)
        kept, lost = strata.counts(mask & ~passed), strata.counts(passed)
        n_k = int(mask.sum())
        certificates.append(
            TierCertificate(
                name=name,
                recall_target=target,
                t_pass=float(u * (1.0 - target)) if tiers else float(t_pass),
                certified=cert.certified,
                n_violating=n_k,
                alpha=alpha_tier,
                recall=weighted_share(kept, lost, strata.pi),
                recall_lower=float(share_lower(kept, lost, strata.pi, alpha_tier)[0]) if n_k else float("nan"),
                misses=int(passed.sum()),
                best_certifiable_recall=cert.best_lower,
                violations_needed=violations_needed(target, alpha_tier),
            )
        )
    passed, blocked = codes == CODE_PASS, codes == CODE_BLOCK
    total = float(weights.sum())
    point = replace(
        point,
        recall=min(c.recall for c in certificates),
        block_precision=block.precision if block.certified else float("nan"),
        auto_pass_share=float(weights[passed].sum() / total),
        auto_block_share=float(weights[blocked].sum() / total),
        queue_share=float(weights[~passed & ~blocked].sum() / total),
        miss_rate_upper=overall_miss_rate_upper(certificates),
        block_precision_lower=block.precision_lower if block.certified else float("nan"),
    )
    targets: dict[str, Any] = {
        "recall": {t.name: t.recall for t in tiers} if tiers else recall,
        "block_precision": block_precision,
        "confidence": 1 - delta,
        "weighted": True,
        "split": split.describe(delta, [c.name for c in certificates]),
        "alpha_split": split.to_dict(),
        "strata": {f"{p:.6g}": int(c) for p, c in zip(strata.pi, np.bincount(strata.index), strict=True)},
    }
    weighting = (
        f"audit-weighted rows ({len(strata.pi)} inclusion-probability strata, "
        f"{int((strata.pi[strata.index] < 1).sum())} audited rows)"
    )
    summary = (
        f"auto-pass {point.auto_pass_share:.1%}, queue {point.queue_share:.1%}, auto-block "
        f"{point.auto_block_share:.1%} of traffic (weighted); "
        + ", ".join(
            f"{c.name} recall {c.recall:.4f} (>= {c.recall_lower:.4f}, target {c.recall_target:g})"
            if c.certified
            else f"{c.name} NOT certified"
            for c in certificates
        )
        + f"; {weighting}; all together at {1 - delta:.0%} confidence"
    )
    notes = [] if block.certified else [_no_block_note(split, weighted=True)]
    mode = "tiered" if tiers else "guarantee"
    if feasible:
        return ThresholdResult(
            mode, True, summary, float(t_pass), float(t_block), targets, point, notes=notes,
            tiers=certificates if tiers else [],
        )  # fmt: skip
    failing = [c for c in certificates if not c.certified]
    message = (
        "Infeasible on audit-weighted rows: "
        + "; ".join(
            f"{c.name}: recall >= {c.recall_target:g} cannot be certified at {1 - c.alpha:.2%} confidence; "
            f"the strongest certifiable with these rows is {certifiable_text(c.best_certifiable_recall)}; "
            f"an audit rate of about {audit_rate_needed(c.n_violating, c.recall_target, c.alpha):.1%} of automated "
            "decisions would let a stratum with no observed miss pass it"
            for c in failing
        )
        + ". Nothing is auto-passed (fail safe). "
        + summary
    )
    return ThresholdResult(
        mode, False, message, float(t_pass), float(t_block), targets, point, notes=notes,
        tiers=certificates if tiers else [],
        best_certifiable={c.name: c.best_certifiable_recall for c in certificates},
    )  # fmt: skip


def _point_from_codes(
    codes: np.ndarray,
    label: np.ndarray,
    seconds: np.ndarray | None,
    t_pass: float,
    t_block: float,
    alpha: float,
    alpha_block: float,
) -> OperatingPoint:
    """An OperatingPoint counted from routed rows (tiered routing is no single threshold pair): the recall
    bound at level `alpha` (tiered: the tiers' levels summed, as the overall bound holds when all of
    theirs do), the block precision's at `alpha_block` (0: no block statement)."""
    n, n1 = len(codes), int(label.sum())
    passed, blocked = codes == CODE_PASS, codes == CODE_BLOCK
    queue = ~passed & ~blocked
    misses = int((passed & label).sum())
    n_blocked = int(blocked.sum())
    wrong = int((blocked & ~label).sum())
    queue_seconds = np.nansum(seconds[queue]) if seconds is not None else queue.sum() * DEFAULT_REVIEW_SECONDS
    return OperatingPoint(
        t_pass=float(t_pass),
        t_block=float(t_block),
        n=n,
        n_violating=n1,
        recall=1.0 - misses / n1 if n1 else float("nan"),
        block_precision=1.0 - wrong / n_blocked if n_blocked else float("nan"),
        auto_pass_share=float(passed.mean()) if n else 0.0,
        queue_share=float(queue.mean()) if n else 0.0,
        auto_block_share=float(blocked.mean()) if n else 0.0,
        queue_items=int(queue.sum()),
        auto_blocked=n_blocked,
        misses=misses,
        wrongful_blocks=wrong,
        reviewer_hours=float(queue_seconds) / 3600.0,
        miss_rate_upper=miss_rate_upper(misses, n1, alpha),
        block_precision_lower=precision_lower(n_blocked - wrong, n_blocked, alpha_block),
        recall_confidence=1.0 - alpha,
        block_confidence=1.0 - alpha_block if alpha_block > 0 else None,
    )


def default_rules(config: DataConfig) -> list[Rule]:
    """Starting rules for a new bundle: review prohibited terms, re-posts of rejected listings and
    known prohibited products (product identification, `features.identify`), always review regulated
    categories.

    Prohibited terms route to review rather than block: the plain term lists also hit harmless
    listings ("ivory color", a book on switchblades), and a wrongful block hurts a good merchant.
    Review-only rules can only raise recall, so the thresholds' guarantees still hold. A team with an
    unambiguous list adds a block rule through the policy admin.

    Each rule names the columns it reads, and exists only when the config has them in the expected
    role: the term rule reads the configured text columns (none: no term rule), the category rule a
    categorical column named `category` (none: no category rule, never some other column).
    """
    rules = []
    if config.text:
        rules.append(
            Rule(
                name="prohibited_term",
                action="review",
                kind="term",
                terms=list(PROHIBITED_TERMS),
                fields=list(config.text),
            )
        )
    if config.text:  # product identification reads the text columns; review until a block rule is certified
        rules.append(Rule(name="repost_of_rejected", action="review", kind="match", values=["repost"]))
        rules.append(Rule(name="catalogue_prohibited", action="review", kind="match", values=["catalogue"]))
    if "category" in config.categorical:
        rules.append(
            Rule(
                name="regulated_category",
                action="review",
                kind="category",
                column="category",
                values=list(REGULATED_CATEGORIES),
            )
        )
    return rules
