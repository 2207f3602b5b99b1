"""What-if simulator for PMs: replay the bundle's reference set through the routing policy.

The reference frame holds the calibration split's calibrated risk, review outcome (label),
handling time (review_seconds) and segment columns. Every listing goes through
`decision.policy.route`, the same function the service calls, and the counts are scaled to a daily
volume.

Intervals (default 95%) describe how well the reference set pins down each rate, not day-to-day
noise: Wilson score intervals for every share/rate (auto-pass, queue, misses, wrongful blocks,
recall, block precision), with Kish's effective sample size when rows are reweighted; a normal
interval for reviewer-hours (a mean of handling times). Prevalence shift ("what if violations
double") reweights violating rows by m and the others by (1 - m*pi) / (1 - pi), so the volume stays
the same and the prevalence becomes m*pi; risk per listing is unchanged (a label-shift what-if).

Tiers. A tiered reference also carries `tier` (each violation's tier name, "" for the others) and one
`risk_<tier>` column per tier. With the policy's per-tier thresholds (`tier_pass`), `route` auto-passes
a listing only when every tier's risk is below its threshold, exactly as the service does: tiers are
the reference's `risk_<tier>` columns (the bundle's tiers), a tier the policy does not name gets 0 (it
never passes), and policy tiers the reference does not have are ignored (the service has no risk for
them either). Each tier is reported with its recall target, recall and missed violations per day; tier
violations are violating rows, so the prevalence shift reweights them like every violation.

Audits. Each automated row counts with its inclusion probability under the policy's audit plan
(`decision.audit`: the floor rate far from t_pass, `near_rate` close to it, `block_rate` for blocks), so
the expected audit workload is the sum of those probabilities, scaled to the daily volume (`qa_per_day`,
`qa_hours_per_day`, and per stratum `qa_per_day_by_stratum`); an audit takes a reviewer the listing's
handling time, as a review does.

Headline (what a PM reads first): the share decided automatically (auto-pass + auto-block) and the
reviewer FTE saved against reviewing every listing, net of audits: FTE(every listing's handling time)
minus FTE(this policy's queue) minus FTE(its audits). Beside it, the gross saving (before audits) and the
audit FTE, so that fte_saved = fte_saved_gross - audit_fte. Each row's net saving is its handling time
times (1 - its audit probability) when automated, so the net interval is that of one mean, like the others.

A policy that cannot block (t_block >= 1 everywhere, no block rule, and no reference row at or above it)
blocks nothing by construction: its auto-block share and wrongful blocks are exactly 0, interval [0, 0].
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from decision.audit import STRATA, AuditPlan, audit_strata, inclusion_probabilities, pass_margin
from decision.backtest import DEFAULT_BLOCK_PRECISION
from decision.guarantees import DEFAULT_REVIEW_SECONDS, ordered_pair
from decision.policy import CODE_BLOCK, CODE_PASS, CODE_REVIEW, Policy, route
from decision.rules import Rule, acting_rules, match_rule_masks
from decision.thresholds import ThresholdResult
from decision.tiers import NO_TIER, frame_tier_risk, risk_column
from features.config import INCLUSION_PROB

WHAT_IF_VERSION = "what-if"  # the version of a policy with thresholds a person is trying out
DEFAULT_TARGET_RECALL = 0.99  # target mode's recall when neither the scenario nor the policy in force states one


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float | None]:
        return {k: (None if math.isnan(v) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Headline:
    """What the policy decides on its own, and the reviewer time that saves against reviewing everything."""

    auto_decided_share: Estimate  # auto-pass + auto-block
    fte_saved: Estimate  # net: fte_review_all minus the policy's queue FTE minus its audit FTE
    fte_saved_gross: Estimate  # before audits: the handling time of the automated listings
    audit_fte: Estimate  # the audits of automated decisions (fte_saved_gross - fte_saved)
    fte_review_all: Estimate  # every listing's handling time

    def to_dict(self) -> dict[str, Any]:
        return {key: value.to_dict() for key, value in self.__dict__.items()}


@dataclass(frozen=True)
class TierOutcome:
    """One violation tier under the simulated policy."""

    name: str
    recall_target: float | None  # the policy's target for this tier (None: not known)
    t_pass: float | None  # the policy's auto-pass threshold on this tier's risk (None: routing ignores it)
    n_violations: int  # reference rows of this tier
    recall: Estimate
    missed_violations_per_day: Estimate

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.__dict__)
        out["recall"], out["missed_violations_per_day"] = (
            self.recall.to_dict(),
            self.missed_violations_per_day.to_dict(),
        )
        return out


@dataclass
class SimulationResult:
    t_pass: float | None  # None when thresholds differ per listing (per-segment policy)
    t_block: float | None
    daily_volume: float
    productive_hours_per_fte: float
    prevalence_multiplier: float
    confidence: float
    n_reference: int
    prevalence: float  # after the prevalence shift
    auto_pass_share: Estimate
    queue_share: Estimate
    auto_block_share: Estimate
    queue_per_day: Estimate
    reviewer_hours_per_day: Estimate
    fte: Estimate
    missed_violations_per_day: Estimate
    wrongful_blocks_per_day: Estimate
    recall: Estimate
    block_precision: Estimate
    headline: Headline
    can_block: bool = True  # False: the policy blocks nothing by construction (block figures exactly 0)
    qa_sample_rate: float = 0.0
    qa_per_day: float = 0.0
    qa_hours_per_day: float = 0.0
    qa_per_day_by_stratum: dict[str, float] = field(default_factory=dict)
    segments: list[dict[str, Any]] = field(default_factory=list)
    tiers: list[TierOutcome] = field(default_factory=list)  # empty for an untiered reference
    # rules in force that read a column the reference set does not keep (text, product matches): left out
    rules_not_applied: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, the headline first."""
        out: dict[str, Any] = {"headline": self.headline.to_dict()}
        for key, value in self.__dict__.items():
            if isinstance(value, Estimate):
                out[key] = value.to_dict()
            elif key == "tiers":
                out[key] = [tier.to_dict() for tier in value]
            elif key != "headline":
                out[key] = value
        return out


def wilson(successes: float, n: float, confidence: float) -> tuple[float, float]:
    """Wilson score interval for a proportion (n may be an effective, non-integer size)."""
    if n <= 0:
        return float("nan"), float("nan")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # at p = 0 (p = 1) the bound is exactly 0 (1); rounding left 2.7e-20
    low = 0.0 if p <= 0 else max(0.0, centre - half)
    high = 1.0 if p >= 1 else min(1.0, centre + half)
    return low, high


def prevalence_weights(label: np.ndarray, multiplier: float, base: np.ndarray | None = None) -> np.ndarray:
    """Row weights that multiply the share of violating listings by `multiplier`, volume unchanged (the
    share among rows weighted by `base`, when given)."""
    prevalence = float(np.average(label, weights=base)) if len(label) else 0.0
    if multiplier <= 0 or multiplier * prevalence >= 1:
        raise ValueError(f"prevalence_multiplier: {multiplier} x prevalence {prevalence:.4f} must be in (0, 1)")
    negative = (1 - multiplier * prevalence) / (1 - prevalence) if prevalence < 1 else 0.0
    return np.where(label, multiplier, negative)


def reference_weights(reference: pd.DataFrame, multiplier: float) -> np.ndarray:
    """Each row's weight: 1 / its inclusion probability when the labels were audit-sampled (a retrained
    bundle's reference: an audited row stands for 1 / pi listings; blank is 1), times the prevalence shift."""
    label = reference["label"].to_numpy().astype(bool)
    sampled = np.ones(len(label))
    if INCLUSION_PROB in reference:
        pi = reference[INCLUSION_PROB].to_numpy(dtype=np.float64)
        sampled = np.where(np.isfinite(pi) & (pi > 0), 1.0 / pi, 1.0)
    return sampled * prevalence_weights(label, multiplier, sampled)


def _review_seconds(reference: pd.DataFrame) -> np.ndarray:
    if "review_seconds" not in reference:
        return np.full(len(reference), DEFAULT_REVIEW_SECONDS)
    seconds = reference["review_seconds"].to_numpy(dtype=np.float64)
    known = np.isfinite(seconds)
    if known.all():
        return seconds
    fill = float(np.median(seconds[known])) if known.any() else DEFAULT_REVIEW_SECONDS
    return np.where(known, seconds, fill)


@dataclass(frozen=True)
class _Rows:
    """Per-row inputs of one simulation, weighted."""

    codes: np.ndarray
    label: np.ndarray
    seconds: np.ndarray
    weight: np.ndarray


# Cells of (decision, label): index = 2 * decision code + label.
_PASS_OK, _PASS_BAD, _QUEUE_OK, _QUEUE_BAD, _BLOCK_OK, _BLOCK_BAD = range(6)


def _rate(
    w: np.ndarray, w2: np.ndarray, cells: list[int], within: list[int] | None, scale: float, confidence: float
) -> Estimate:
    """Weighted share of `cells` among `within` (all cells if None), times `scale`, Wilson interval."""
    within = list(range(6)) if within is None else within
    total, total_sq = float(w[within].sum()), float(w2[within].sum())
    if total == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    share = float(w[cells].sum()) / total
    n_eff = total * total / total_sq  # Kish; equals the row count when unweighted
    low, high = wilson(share * n_eff, n_eff, confidence)
    return Estimate(share * scale, low * scale, high * scale)


_NONE = Estimate(0.0, 0.0, 0.0)  # a figure that is zero by construction, not an estimate


def _summarise(
    rows: _Rows, daily_volume: float, fte_hours: float, confidence: float, can_block: bool = True
) -> dict[str, Estimate]:
    cell = rows.codes.astype(np.int64) * 2 + rows.label
    w = np.bincount(cell, weights=rows.weight, minlength=6)
    w2 = np.bincount(cell, weights=rows.weight * rows.weight, minlength=6)
    hours = _hours_per_day(rows, rows.codes == CODE_REVIEW, daily_volume, confidence)
    pos, blocked = [_PASS_BAD, _QUEUE_BAD, _BLOCK_BAD], [_BLOCK_OK, _BLOCK_BAD]
    miss_share = _rate(w, w2, [_PASS_BAD], pos, 1.0, confidence)
    return {
        "auto_pass_share": _rate(w, w2, [_PASS_OK, _PASS_BAD], None, 1.0, confidence),
        "queue_share": _rate(w, w2, [_QUEUE_OK, _QUEUE_BAD], None, 1.0, confidence),
        "auto_block_share": _rate(w, w2, blocked, None, 1.0, confidence) if can_block else _NONE,
        "queue_per_day": _rate(w, w2, [_QUEUE_OK, _QUEUE_BAD], None, daily_volume, confidence),
        "reviewer_hours_per_day": hours,
        "fte": _per_fte(hours, fte_hours),
        "missed_violations_per_day": _rate(w, w2, [_PASS_BAD], None, daily_volume, confidence),
        "wrongful_blocks_per_day": _rate(w, w2, [_BLOCK_OK], None, daily_volume, confidence) if can_block else _NONE,
        "recall": Estimate(1 - miss_share.value, 1 - miss_share.high, 1 - miss_share.low),
        "block_precision": _rate(w, w2, [_BLOCK_BAD], blocked, 1.0, confidence),
    }


def _per_fte(hours: Estimate, fte_hours: float) -> Estimate:
    return Estimate(hours.value / fte_hours, hours.low / fte_hours, hours.high / fte_hours)


def _hours_per_day(rows: _Rows, counted: np.ndarray, daily_volume: float, confidence: float) -> Estimate:
    """Mean handling time per listing of the `counted` part of each row (a mask, e.g. the queue's rows, or
    a fraction per row, e.g. its audit probability; zero for the rest) times volume; normal interval."""
    total = float(rows.weight.sum())
    x = rows.seconds / 3600.0 * np.asarray(counted, dtype=np.float64)
    mean = float((rows.weight * x).sum()) / total
    spread = float((rows.weight * rows.weight * (x - mean) ** 2).sum())
    half = float(stats.norm.ppf(0.5 + confidence / 2)) * math.sqrt(spread) / total
    return Estimate(mean * daily_volume, max(0.0, mean - half) * daily_volume, (mean + half) * daily_volume)


def _can_block(codes: np.ndarray, t_block: float | np.ndarray, rule_block: np.ndarray | None) -> bool:
    """Whether the policy can auto-block at all: a t_block below 1 somewhere, a block rule, or a reference
    row that reached t_block. Calibrated risk stays below 1, so t_block >= 1 without a block rule blocks
    nothing by construction: an interval around that zero would describe no uncertainty."""
    return bool(np.any(np.asarray(t_block) < 1.0)) or rule_block is not None or bool(np.any(codes == CODE_BLOCK))


def reference_tiers(reference: pd.DataFrame, scored_only: bool = False) -> list[str]:
    """The tiers of a tiered reference frame (it has a `tier` column): those with a `risk_<tier>` column
    (the ones routing reads), in column order, then, unless `scored_only`, tiers named in `tier` without
    one (reported, never routed on); [] if untiered."""
    if "tier" not in reference:
        return []
    prefix = risk_column("")
    scored = [str(c)[len(prefix) :] for c in reference.columns if str(c).startswith(prefix) and str(c) != prefix]
    if scored_only:
        return scored
    named = reference["tier"].dropna().astype(str).unique()
    return scored + sorted(set(named) - set(scored) - {NO_TIER})


def parse_tier_threshold(item: str, what: str = "threshold") -> tuple[str, float]:
    """A per-tier value written 'tier:<what>' (the API's and the CLI's `tier_pass`; `what` names the value in
    messages: a threshold, or a recall target)."""
    name, sep, text = item.partition(":")
    if not sep or not name or len(name) > 64 or not (name.isascii() and name.replace("_", "").isalnum()):
        raise ValueError(f"{item[:80]!r} is not 'tier:{what}' (tier: letters, digits, underscores)")
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{item[:80]!r}: {what} {text[:20]!r} is not a number") from None
    if not 0.0 <= value < 1.0:  # also refuses NaN
        raise ValueError(f"{item[:80]!r}: {what} must be in [0, 1)")
    return name, value


def parse_tier_values(items: Sequence[str], what: str = "threshold") -> dict[str, float]:
    """'tier:value' items as a mapping; ValueError for a tier named twice (which one wins would be a guess)."""
    values: dict[str, float] = {}
    for item in items:
        name, value = parse_tier_threshold(item, what)
        if name in values:
            raise ValueError(f"tier {name!r} is named twice ({values[name]:g} and {value:g}): give each tier once")
        values[name] = value
    return values


def with_thresholds(
    current: Policy,
    tiers: list[str],
    t_pass: float | None = None,
    t_block: float | None = None,
    tier_pass: Mapping[str, float] | None = None,
    version: str = WHAT_IF_VERSION,
) -> Policy:
    """`current` with thresholds a person tries (None: as in force); ValueError naming the field.

    t_pass / t_block replace the overall pair (per-segment pairs are dropped: the pair applies to every
    listing). In a tiered policy the tier thresholds stay in force, `tier_pass` replaces those of the
    tiers it names (which must be among `tiers`, the reference's scored tiers), and the overall t_pass,
    which only backs the tiers up, follows a lower t_block down (`ordered_pair`: fewer passes, every
    tier's recall guarantee kept). A tier left with no threshold gets 0 in routing: nothing passes on it.
    """
    raw = {**current.to_dict(), "version": version}
    if t_pass is not None or t_block is not None:
        pair = (current.t_pass if t_pass is None else t_pass, current.t_block if t_block is None else t_block)
        if t_pass is None and current.tier_pass:
            pair = ordered_pair(*pair)
        if not pair[0] < pair[1]:
            field = "t_pass" if t_pass is not None and t_block is None else "t_block"
            raise ValueError(f"{field}: t_pass {pair[0]:g} must be below t_block {pair[1]:g}")
        raw.update({"segment_by": None, "segments": {}, "t_pass": pair[0], "t_block": pair[1]})
    if tier_pass:
        unknown = sorted(set(tier_pass) - set(tiers))
        if unknown:
            known = tiers or "none: this bundle is not tiered"
            raise ValueError(f"tier_pass: unknown tiers {unknown}; the bundle's tiers are {known}")
        raw["tier_pass"] = {**current.tier_pass, **tier_pass}
    return Policy.from_dict(raw)


def _tier_routing(
    reference: pd.DataFrame, tiers: list[str], tier_pass: Mapping[str, float] | None
) -> tuple[np.ndarray | None, dict[str, float]]:
    """(tier_risk (n, K), the K thresholds by tier) of the scored tiers, for `route`; (None, {}) when the
    policy or the reference has no tiers. A tier the policy does not name gets 0, as in
    `Policy.tier_pass_vector`: nothing passes on it."""
    scored = [name for name in tiers if risk_column(name) in reference]
    if not tier_pass or not scored:
        return None, {}
    return frame_tier_risk(reference, scored), {name: float(tier_pass.get(name, 0.0)) for name in scored}


def simulate(
    reference: pd.DataFrame,
    t_pass: float | np.ndarray,
    t_block: float | np.ndarray,
    daily_volume: float = 100_000,
    productive_hours_per_fte: float = 6.5,
    prevalence_multiplier: float = 1.0,
    *,
    confidence: float = 0.95,
    qa_sample_rate: float = 0.0,
    audit: AuditPlan | None = None,
    rule_block: np.ndarray | None = None,
    rule_review: np.ndarray | None = None,
    breakdown_by: str | None = None,
    tier_pass: Mapping[str, float] | None = None,
    tier_targets: Mapping[str, float] | None = None,
) -> SimulationResult:
    """Replay `reference` through `route` at (t_pass, t_block) and scale to `daily_volume` per day.

    `tier_pass` (tier -> auto-pass threshold on that tier's risk) routes a tiered reference as the
    service does; `tier_targets` (tier -> recall target) is only reported beside each tier's recall.
    Audit workload: with `audit`, the stratified plan with `qa_sample_rate` as its floor (as the service
    samples); without, `qa_sample_rate` for every automated decision (0: no audits counted). The
    headline's FTE saved is net of that audit workload. `rule_block` None: no block rule in force."""
    if daily_volume <= 0 or productive_hours_per_fte <= 0:
        raise ValueError("daily_volume and productive_hours_per_fte must be positive")
    label = reference["label"].to_numpy().astype(bool)
    weight = reference_weights(reference, prevalence_multiplier)
    tiers = reference_tiers(reference)
    tier_risk, thresholds = _tier_routing(reference, tiers, tier_pass)
    tier_vector = np.array(list(thresholds.values())) if thresholds else None
    risk = reference["risk"].to_numpy(dtype=np.float64)
    codes = route(risk, t_pass, t_block, rule_block, rule_review, tier_risk, tier_vector)
    rows = _Rows(codes, label, _review_seconds(reference), weight)
    can_block = _can_block(codes, t_block, rule_block)
    summary: dict[str, Any] = _summarise(rows, daily_volume, productive_hours_per_fte, confidence, can_block)
    audit_prob, strata = _audit_probabilities(codes, risk, t_pass, tier_risk, tier_vector, qa_sample_rate, audit)
    qa_per_day, qa_hours_per_day, qa_by_stratum = _audit_workload(rows, audit_prob, strata, daily_volume)
    headline = _headline(rows, summary, audit_prob, daily_volume, productive_hours_per_fte, confidence)
    return SimulationResult(
        t_pass=float(t_pass) if np.ndim(t_pass) == 0 else None,
        t_block=float(t_block) if np.ndim(t_block) == 0 else None,
        daily_volume=daily_volume,
        productive_hours_per_fte=productive_hours_per_fte,
        prevalence_multiplier=prevalence_multiplier,
        confidence=confidence,
        n_reference=len(reference),
        prevalence=float((weight * label).sum() / weight.sum()),
        **summary,
        headline=headline,
        can_block=can_block,
        qa_sample_rate=qa_sample_rate,
        qa_per_day=qa_per_day,
        qa_hours_per_day=qa_hours_per_day,
        qa_per_day_by_stratum=qa_by_stratum,
        segments=_breakdown(
            reference, rows, breakdown_by, daily_volume, productive_hours_per_fte, confidence, can_block
        ),
        tiers=_tier_outcomes(reference, rows, tiers, thresholds, tier_targets, daily_volume, confidence),
    )


def _audit_probabilities(
    codes: np.ndarray,
    risk: np.ndarray,
    t_pass: float | np.ndarray,
    tier_risk: np.ndarray | None,
    tier_pass: np.ndarray | None,
    qa_sample_rate: float,
    audit: AuditPlan | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's chance of an audit (0 for a review, else the service's inclusion probability under
    `audit`, or one rate, `qa_sample_rate`, without a plan) and its audit stratum (`decision.audit`)."""
    automated = codes != CODE_REVIEW
    margin = pass_margin(risk, t_pass, tier_risk, tier_pass)
    strata = audit_strata(codes, margin, audit or AuditPlan())
    if audit is None:
        return np.where(automated, qa_sample_rate, 0.0), strata
    return np.where(automated, inclusion_probabilities(codes, margin, qa_sample_rate, audit), 0.0), strata


def _audit_workload(
    rows: _Rows, prob: np.ndarray, strata: np.ndarray, daily_volume: float
) -> tuple[float, float, dict[str, float]]:
    """Expected audits and audit reviewer-hours per day (the weighted sum of inclusion probabilities),
    and expected audits per day by stratum."""
    per_row = rows.weight / rows.weight.sum() * prob * daily_volume
    by_stratum = {name: float(per_row[strata == k].sum()) for k, name in enumerate(STRATA) if k}
    return float(per_row.sum()), float((per_row * rows.seconds).sum() / 3600.0), by_stratum


def _headline(
    rows: _Rows,
    summary: dict[str, Estimate],
    audit_prob: np.ndarray,
    daily_volume: float,
    fte_hours: float,
    confidence: float,
) -> Headline:
    """`audit_prob`: each row's chance of an audit (0 for the queue's rows)."""
    queue = summary["queue_share"]
    automated = (rows.codes != CODE_REVIEW).astype(np.float64)

    def fte(counted: np.ndarray) -> Estimate:
        return _per_fte(_hours_per_day(rows, counted, daily_volume, confidence), fte_hours)

    # reviewing everything minus the queue's hours = the handling time of what is decided automatically;
    # an audited automated decision is reviewed all the same, so its row saves (1 - its audit chance)
    return Headline(
        auto_decided_share=Estimate(1 - queue.value, 1 - queue.high, 1 - queue.low),
        fte_saved=fte(automated * (1.0 - audit_prob)),
        fte_saved_gross=fte(automated),
        audit_fte=fte(automated * audit_prob),
        fte_review_all=fte(np.ones(len(rows.codes))),
    )


def _weighted_share(
    weight: np.ndarray, hit: np.ndarray, within: np.ndarray, scale: float, confidence: float
) -> Estimate:
    """Weighted share of `hit` rows among `within` rows, times `scale`, Wilson interval (Kish n)."""
    total, total_sq = float(weight[within].sum()), float((weight[within] ** 2).sum())
    if total == 0:
        return Estimate(float("nan"), float("nan"), float("nan"))
    share = float(weight[hit & within].sum()) / total
    n_eff = total * total / total_sq
    low, high = wilson(share * n_eff, n_eff, confidence)
    return Estimate(share * scale, low * scale, high * scale)


def _tier_outcomes(
    reference: pd.DataFrame,
    rows: _Rows,
    tiers: list[str],
    thresholds: dict[str, float],
    tier_targets: Mapping[str, float] | None,
    daily_volume: float,
    confidence: float,
) -> list[TierOutcome]:
    """Recall and missed violations per day of each tier (a miss: a violation of the tier auto-passed)."""
    if not tiers:
        return []
    tier_of_row = reference["tier"].fillna(NO_TIER).astype(str).to_numpy()
    passed = rows.codes == CODE_PASS
    everyone = np.ones(len(passed), dtype=bool)
    out = []
    for name in tiers:
        violating = rows.label & (tier_of_row == name)
        miss_share = _weighted_share(rows.weight, passed, violating, 1.0, confidence)
        out.append(
            TierOutcome(
                name=name,
                recall_target=None if not tier_targets or name not in tier_targets else float(tier_targets[name]),
                t_pass=thresholds.get(name),
                n_violations=int(violating.sum()),
                recall=Estimate(1 - miss_share.value, 1 - miss_share.high, 1 - miss_share.low),
                missed_violations_per_day=_weighted_share(
                    rows.weight, passed & violating, everyone, daily_volume, confidence
                ),
            )
        )
    return out


def policy_tier_targets(policy: Policy) -> dict[str, float]:
    """The policy's recall target per tier (a tiered policy's `targets["recall"]` is tier -> target)."""
    recall = policy.targets.get("recall")
    return {str(k): float(v) for k, v in recall.items()} if isinstance(recall, dict) else {}


def simulate_policy(reference: pd.DataFrame, policy: Policy, **kwargs: Any) -> SimulationResult:
    """`simulate` with a policy's (per-segment) thresholds, its per-tier thresholds and targets, its rules
    where the reference has the columns they read (e.g. category rules), and its audit plan."""
    t_pass: float | np.ndarray
    t_block: float | np.ndarray
    if policy.segment_by and policy.segment_by in reference:
        t_pass, t_block = policy.thresholds_for(reference[policy.segment_by].astype(str).to_numpy())
    else:
        t_pass, t_block = policy.t_pass, policy.t_block
    block_mask, rule_review = match_rule_masks(reference, policy.rules)
    kwargs.setdefault("qa_sample_rate", policy.qa_sample_rate)
    kwargs.setdefault("audit", policy.audit)
    kwargs.setdefault("tier_pass", policy.tier_pass)
    kwargs.setdefault("tier_targets", policy_tier_targets(policy))
    rule_block = block_mask if has_block_rule(policy.rules) else None
    result = simulate(reference, t_pass, t_block, rule_block=rule_block, rule_review=rule_review, **kwargs)
    return replace(result, rules_not_applied=rules_not_applied(reference, policy.rules))


def sweep_policy(reference: pd.DataFrame, policy: Policy, **kwargs: Any) -> pd.DataFrame:
    """`sweep` at the policy's (global) t_block with its rules, where the reference has the columns they
    read, as `simulate_policy` applies them. For a policy without tier or segment thresholds each point is
    `simulate_policy` at that t_pass; those thresholds are not swept."""
    rule_block, rule_review = match_rule_masks(reference, policy.rules)
    return sweep(reference, policy.t_block, rule_block=rule_block, rule_review=rule_review, **kwargs)


def has_block_rule(rules: Sequence[Rule | dict[str, Any]]) -> bool:
    """Whether a rule in force blocks. Without one, `simulate` takes `rule_block=None`, so that it can tell
    a policy with t_block >= 1 blocks nothing at all (not merely nothing among the reference rows)."""
    return any(rule.action == "block" for rule in acting_rules(rules))


def target_mode_targets(
    current: Policy | None, recall: float | None, block_precision: float | None
) -> tuple[float, float, str | None]:
    """(recall, block precision) for a target-mode scenario that gives one or both: the one not given is the
    policy in force's (its single recall target; its block precision), else the default. The note says when
    a default stands in for per-tier recall targets (target mode takes one target over every violation)."""
    targets = current.targets if current is not None else {}
    note = None
    if recall is None:
        stated = targets.get("recall")
        recall = float(stated) if isinstance(stated, (int, float)) else DEFAULT_TARGET_RECALL
        if isinstance(stated, dict):
            note = (
                f"no recall target given: the policy's are per tier ({stated}); target mode takes one over every "
                f"violation: {recall:g}"
            )
    if block_precision is None:
        stated = targets.get("block_precision")
        block_precision = float(stated) if isinstance(stated, (int, float)) else DEFAULT_BLOCK_PRECISION
    return recall, block_precision, note


def target_mode_policy(chosen: ThresholdResult, current: Policy | None) -> Policy:
    """The what-if policy of target mode: the thresholds chosen for the targets, with the rules and the
    audit plan (floor and strata rates) of the policy in force, so that the audit workload it shows is
    the one that policy would give (the 2% floor alone showed about a twentieth of it)."""
    if current is None:
        return chosen.to_policy(rules=[], version=WHAT_IF_VERSION)
    policy = chosen.to_policy(rules=current.rules, qa_sample_rate=current.qa_sample_rate, version=WHAT_IF_VERSION)
    return replace(policy, audit=current.audit)


def rules_not_applied(reference: pd.DataFrame, rules: Sequence[Rule | dict[str, Any]]) -> list[str]:
    """The acting rules that read a column the reference set does not keep (text, product matches): the
    replay cannot apply them, and says so."""
    return [rule.name for rule in acting_rules(rules) if any(c not in reference for c in rule.columns)]


def _breakdown(
    reference: pd.DataFrame,
    rows: _Rows,
    column: str | None,
    daily_volume: float,
    fte_hours: float,
    confidence: float,
    can_block: bool = True,
) -> list[dict[str, Any]]:
    if column is None:
        return []
    if column not in reference:
        raise ValueError(f"breakdown_by: reference has no column {column!r}")
    codes, names = pd.factorize(reference[column].astype(str), sort=True)
    total = float(rows.weight.sum())
    out = []
    for j, name in enumerate(names):
        mask = codes == j
        part = _Rows(rows.codes[mask], rows.label[mask], rows.seconds[mask], rows.weight[mask])
        volume = daily_volume * float(part.weight.sum()) / total
        summary = _summarise(part, volume, fte_hours, confidence, can_block)
        out.append(
            {
                column: name,
                "rows": int(mask.sum()),
                "daily_volume": volume,
                **{k: v.to_dict() for k, v in summary.items()},
            }
        )
    return out


def sweep(
    reference: pd.DataFrame,
    t_block: float = 1.0,
    daily_volume: float = 100_000,
    productive_hours_per_fte: float = 6.5,
    prevalence_multiplier: float = 1.0,
    n_points: int = 400,
    rule_block: np.ndarray | None = None,
    rule_review: np.ndarray | None = None,
) -> pd.DataFrame:
    """The workload-recall curve: every t_pass from 0 up to t_block (at quantiles of risk), at a fixed
    t_block. One sort and weighted cumulative sums; global thresholds, no tier thresholds.

    With rule masks (`match_rule_masks` of the policy's rules on `reference`), a listing a rule decides
    is decided as `route` decides it whatever t_pass is: a block rule blocks, a review rule queues; so is
    a listing whose risk is not finite (queued). Only the other listings move with t_pass, so each point
    equals `simulate` at that t_pass with the same rules."""
    risk = reference["risk"].to_numpy(dtype=np.float64)
    label = reference["label"].to_numpy().astype(bool)
    weight = reference_weights(reference, prevalence_multiplier)
    seconds = _review_seconds(reference)
    finite = np.isfinite(risk)
    no_rule = np.zeros(len(risk), dtype=bool)
    blocked = finite & (no_rule if rule_block is None else np.asarray(rule_block, dtype=bool))
    ruled = ~finite | blocked | (no_rule if rule_review is None else np.asarray(rule_review, dtype=bool))
    total, positives = float(weight.sum()), float((weight * label).sum())
    blocked_w = float(weight[blocked].sum())
    queued = ruled & ~blocked  # what the rules queue, at any t_pass
    queued_w, queued_sec = float(weight[queued].sum()), float((weight * seconds)[queued].sum())
    free = ~ruled
    order = np.argsort(risk[free], kind="stable")
    risk, label, weight, seconds = risk[free][order], label[free][order], weight[free][order], seconds[free][order]
    cum_w = np.r_[0.0, np.cumsum(weight)]
    cum_pos = np.r_[0.0, np.cumsum(weight * label)]
    cum_sec = np.r_[0.0, np.cumsum(weight * seconds)]
    below = risk[risk < t_block]
    grid = np.unique(np.r_[0.0, np.quantile(below, np.linspace(0, 1, n_points)) if len(below) else [], t_block])
    i_pass = np.searchsorted(risk, grid, side="left")
    i_block = np.searchsorted(risk, t_block, side="left")
    auto_block = (cum_w[-1] - cum_w[i_block] + blocked_w) / total
    queue_share = (cum_w[i_block] - cum_w[i_pass] + queued_w) / total
    hours = (cum_sec[i_block] - cum_sec[i_pass] + queued_sec) / total * daily_volume / 3600.0
    return pd.DataFrame(
        {
            "t_pass": grid,
            "t_block": t_block,
            "auto_pass_share": cum_w[i_pass] / total,
            "queue_share": queue_share,
            "auto_block_share": auto_block,
            "recall": 1.0 - cum_pos[i_pass] / positives if positives else np.nan,
            "missed_violations_per_day": cum_pos[i_pass] / total * daily_volume,
            "queue_per_day": queue_share * daily_volume,
            "reviewer_hours_per_day": hours,
            "fte": hours / productive_hours_per_fte,
        }
    )
