"""Production monitoring: estimates of what the service is doing, from its own decision log.

Reads the decisions of a time window with their verdicts (reviews and audits) and reports, with
intervals, miss rate, recall, block precision, queue share and violation rate (`decision.estimates`),
overall and per day, per violation tier and per segment; beside them the simulator's expectation for
the policy in force on the bundle's reference set; and the drift checks (`decision.drift`): risk and
feature stability against the bundle's reference, routing mix against the expected split (what the
thresholds alone decide, `model_decision`, against what they alone are expected to: rules the
simulator cannot replay would read as drift), recall against its target. `GET /v1/monitor`,
`triage monitor` and the Prometheus gauges all call `report`.

Inclusion probabilities: each decision logs its own (`decisions.inclusion_prob`). A row logged before
that column existed has none: a human review is known to get a verdict (pi = 1); an automated one had
an unknown chance of audit, so it is left out of the estimates and counted (`skipped_automated`).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from bundle.drift_reference import load_drift_reference
from bundle.load import Bundle
from decision.drift import overall_status, recall_check, routing_drift, variable_drift
from decision.estimates import Estimate, grouped_estimates, production_estimates
from decision.policy import Policy
from decision.simulate import SimulationResult, policy_tier_targets
from decision.tiers import reason_tiers
from serving.store import Store

log = logging.getLogger(__name__)

GROUPINGS = ("day", "tier", "segment")
DECISION_CODES = {"auto_pass": 0, "human_review": 1, "auto_block": 2}
DEFAULT_WINDOW = timedelta(hours=24)
DEFAULT_LIMIT = 100_000
FIRST_REFRESH_SECONDS = 10.0


class MonitorError(ValueError):
    """A monitoring request that cannot be answered; `field` names the parameter at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class MonitorRequest:
    since: datetime
    until: datetime
    group_by: tuple[str, ...] = ()
    segment: str | None = None  # the listing field `group_by=segment` splits by (default: first segment)
    confidence: float = 0.95
    limit: int = DEFAULT_LIMIT

    @classmethod
    def last(cls, window: timedelta = DEFAULT_WINDOW, now: datetime | None = None, **options: Any) -> MonitorRequest:
        until = now or datetime.now(UTC)
        return cls(since=until - window, until=until, **options)

    def validate(self) -> MonitorRequest:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise MonitorError("since" if self.since.tzinfo is None else "until", "give a time zone (e.g. ...Z)")
        if not self.since < self.until:
            raise MonitorError("since", f"{self.since.isoformat()} is not before until ({self.until.isoformat()})")
        unknown = sorted(set(self.group_by) - set(GROUPINGS))
        if unknown:
            raise MonitorError("group_by", f"{unknown} are not among {list(GROUPINGS)}")
        if not 0.5 <= self.confidence < 1:
            raise MonitorError("confidence", f"{self.confidence!r} is not in [0.5, 1)")
        if self.limit < 1:
            raise MonitorError("limit", f"{self.limit!r} is not a positive number of decisions")
        return self


@dataclass
class WindowLog:
    """A window's decisions as arrays: decision codes, inclusion probabilities, labels (NaN: no verdict)."""

    codes: np.ndarray
    pi: np.ndarray
    label: np.ndarray
    day: np.ndarray
    risk: np.ndarray
    models: np.ndarray  # the model version behind each decision (None: the fail-safe)
    listings: list[dict[str, Any]]
    reasons: list[str | None]
    n_decisions: int  # every decision in the window, including the skipped ones
    routing: dict[str, int]  # decisions per type, every decision in the window
    # per model version, what its thresholds alone decided, per type, every decision in the window
    # (`model_decision`: rules left out; a listing the model could not score counts as the review it went to)
    thresholds_routing: dict[str | None, dict[str, int]]
    skipped_automated: int
    pending_review: int
    pending_audit: int
    truncated: bool = False

    def labels_summary(self) -> dict[str, int]:
        return {
            "decisions": self.n_decisions,
            "in_estimates": len(self.codes),
            "with_verdict": int(np.count_nonzero(~np.isnan(self.label))),
            "pending_review": self.pending_review,
            "pending_audit": self.pending_audit,
            "skipped_automated": self.skipped_automated,
        }


def window_log(rows: Sequence[dict[str, Any]], truncated: bool = False) -> WindowLog:
    """The arrays behind the estimates from stored rows (`Store.decisions_with_verdicts`)."""
    codes, pi, label, day, risk, models, listings, reasons = [], [], [], [], [], [], [], []
    routing = dict.fromkeys(DECISION_CODES, 0)
    thresholds_routing: dict[str | None, dict[str, int]] = {}
    skipped = pending_review = pending_audit = 0
    for row in rows:
        routing[row["decision"]] += 1
        by_model = thresholds_routing.setdefault(row.get("model_version"), dict.fromkeys(DECISION_CODES, 0))
        by_model[row.get("model_decision") or row["decision"]] += 1
        probability = row["inclusion_prob"]
        if probability is None:
            if row["automated"]:
                skipped += 1
                continue
            probability = 1.0
        verdict = row["verdict"]
        if verdict is None:
            if row["decision"] == "human_review":
                pending_review += 1
            elif row["qa_sample"]:
                pending_audit += 1
        codes.append(DECISION_CODES[row["decision"]])
        pi.append(float(probability))
        label.append(math.nan if verdict is None else 1.0 if verdict == "reject" else 0.0)
        day.append(row["decided_at"].astimezone(UTC).date().isoformat())
        risk.append(math.nan if row["risk"] is None else float(row["risk"]))
        models.append(row.get("model_version"))
        listings.append(row["listing"] or {})
        reasons.append(row["violation_reason"])
    return WindowLog(
        codes=np.asarray(codes, dtype=np.int8),
        pi=np.asarray(pi, dtype=np.float64),
        label=np.asarray(label, dtype=np.float64),
        day=np.asarray(day, dtype=object),
        risk=np.asarray(risk, dtype=np.float64),
        models=np.asarray(models, dtype=object),
        listings=listings,
        reasons=reasons,
        n_decisions=len(rows),
        routing=routing,
        thresholds_routing=thresholds_routing,
        skipped_automated=skipped,
        pending_review=pending_review,
        pending_audit=pending_audit,
        truncated=truncated,
    )


def report(store: Store, bundle: Bundle | None, policy: Policy | None, request: MonitorRequest) -> dict[str, Any]:
    """Production estimates, the simulated expectation and the drift checks for one window."""
    request = request.validate()
    segment = _segment_column(bundle, request)
    rows = store.decisions_with_verdicts(request.since, request.until, request.limit + 1)
    logged = window_log(rows[: request.limit], truncated=len(rows) > request.limit)
    estimates = production_estimates(logged.codes, logged.pi, logged.label, request.confidence)
    by_tier = {  # always: each tier's recall is checked against its target
        name: _as_dict(production_estimates(logged.codes, logged.pi, tier_label, request.confidence))
        for name, tier_label in tier_labels(logged, bundle).items()
    }
    groups = _groups(logged, request, segment)
    if "tier" in request.group_by:
        groups["tier"] = by_tier
    out: dict[str, Any] = {
        "window": {"since": request.since.isoformat(), "until": request.until.isoformat()},
        "confidence": request.confidence,
        "truncated": logged.truncated,
        "labels": logged.labels_summary(),
        "estimates": _as_dict(estimates),
        "groups": groups,
        "expected": expected_outcomes(bundle, policy),
    }
    out["drift"] = drift_checks(logged, bundle, policy, estimates, by_tier, out["expected"])
    out["status"] = out["drift"]["status"]
    return out


def _segment_column(bundle: Bundle | None, request: MonitorRequest) -> str | None:
    if "segment" not in request.group_by:
        return None
    if request.segment is not None:
        if bundle is not None:  # a field whose values are categories: a text or an id is one group per listing
            fields = list(dict.fromkeys([*bundle.config.segments, *bundle.config.categorical]))
            if request.segment not in fields:
                roles = bundle.config.column_roles().get(request.segment)
                kind = f"a {roles[0]} field (one group per value)" if roles else "not a listing field"
                raise MonitorError("segment", f"{request.segment!r} is {kind}: split by one of {fields}")
        return request.segment
    if bundle is None or not bundle.config.segments:
        raise MonitorError("segment", "name the listing field to split by (the bundle declares no segments)")
    return bundle.config.segments[0]


def _groups(logged: WindowLog, request: MonitorRequest, segment: str | None) -> dict[str, Any]:
    """Estimates per day and per segment value, as requested (per tier: see `report`)."""
    groups: dict[str, Any] = {}
    args = (logged.codes, logged.pi, logged.label)
    if "day" in request.group_by:
        groups["day"] = _as_groups(grouped_estimates(*args, logged.day, request.confidence))
    if segment is not None:
        values = np.array([listing.get(segment) for listing in logged.listings], dtype=object)
        groups["segment"] = {
            "column": segment,
            "values": _as_groups(grouped_estimates(*args, values, request.confidence)),
        }
    return groups


def tier_labels(logged: WindowLog, bundle: Bundle | None) -> dict[str, np.ndarray]:
    """Per violation tier of a tiered bundle, the labels that count only that tier's violations: a
    rejection whose reason belongs to the tier is 1, any other verdict 0, no verdict NaN. Each tier's
    recall target is about its own violations, so its estimates are too."""
    if bundle is None or not bundle.config.tiered:
        return {}
    tiers = reason_tiers(logged.reasons, bundle.config)
    return {
        name: np.where(np.isnan(logged.label), np.nan, np.where(tiers == name, logged.label, 0.0))
        for name in bundle.config.tier_names
    }


def expected_outcomes(bundle: Bundle | None, policy: Policy | None) -> dict[str, Any] | None:
    """What the simulator expects of the policy in force on the bundle's reference set: routing shares,
    recall, block precision and miss rate (None without a bundle or a reference set)."""
    if bundle is None or policy is None:
        return None
    from serving.simulation import bundle_reference, run

    try:
        reference = bundle_reference(bundle)
    except FileNotFoundError:
        return None

    def simulated(policy: Policy) -> SimulationResult:
        return run(reference, policy, daily_volume=1.0, productive_hours_per_fte=6.5, prevalence_multiplier=1.0)

    result = simulated(policy)
    alone = simulated(replace(policy, rules=[])) if policy.rules else result
    passed = result.auto_pass_share.value
    return {
        "policy": policy.version,
        "n_reference": result.n_reference,
        "routing": _routing_shares(result),
        "thresholds_routing": _routing_shares(alone),
        "rules_not_applied": result.rules_not_applied,
        "recall": result.recall.to_dict(),
        "block_precision": result.block_precision.to_dict(),
        "miss_rate": result.missed_violations_per_day.value / passed if passed > 0 else None,
        "queue_share": result.queue_share.to_dict(),
        "recall_target": recall_target(policy),
    }


def _routing_shares(result: SimulationResult) -> dict[str, float]:
    return {
        "auto_pass": result.auto_pass_share.value,
        "human_review": result.queue_share.value,
        "auto_block": result.auto_block_share.value,
    }


def recall_target(policy: Policy | None) -> float | None:
    """The policy's overall recall target (None when it has none, or only per-tier ones)."""
    target = policy.targets.get("recall") if policy is not None else None
    return float(target) if isinstance(target, (int, float)) and not isinstance(target, bool) else None


def drift_checks(
    logged: WindowLog,
    bundle: Bundle | None,
    policy: Policy | None,
    estimates: dict[str, Estimate],
    tier_estimates: dict[str, Any] | None,
    expected: dict[str, Any] | None,
) -> dict[str, Any]:
    """Risk and feature PSI, routing mix and recall against target, each with a status, and the worst."""
    checks: dict[str, Any] = {}
    reference = load_drift_reference(bundle.path) if bundle is not None else None
    if bundle is None or reference is None:
        checks["reference"] = "no reference" if bundle is not None else "no bundle loaded"
    else:
        checks["reference"] = "test split"
        # risks are the bundle's own: another model's (before a promotion) would read as drift
        own = logged.models == bundle.version
        checks["risk"] = variable_drift(reference.risk, logged.risk[np.isfinite(logged.risk) & own])
        checks["risk"]["model"] = bundle.version
        checks["risk"]["other_models_left_out"] = int(np.count_nonzero(~own & np.isfinite(logged.risk)))
        checks["features"] = {
            name: variable_drift(bins, [listing.get(name) for listing in logged.listings])
            for name, bins in reference.features.items()
        }
    if expected is not None:
        # the thresholds' own decisions against the simulator's expectation of the thresholds alone: rules
        # the simulator cannot replay on its reference set (text and product-match rules) would otherwise
        # read as drift (a re-post rule turning blocks into reviews); what rules do is in rules stats
        # and only the bundle in force's own decisions: another model's mix (before a promotion) is not drift
        version = bundle.version if bundle is not None else None
        own = logged.thresholds_routing.get(version, dict.fromkeys(DECISION_CODES, 0))
        others = sum(sum(c.values()) for v, c in logged.thresholds_routing.items() if v != version)
        checks["routing"] = {
            **routing_drift(expected["thresholds_routing"], own),
            "basis": "thresholds alone (rules left out on both sides; see rules stats)",
            "model": version,
            "other_models_left_out": others,
        }
    recall = estimates["recall"]
    tier_targets = policy_tier_targets(policy) if policy is not None else {}
    if recall_target(policy) is not None or not tier_targets:  # a tiered policy's targets are its tiers'
        checks["recall"] = recall_check(recall.estimate, recall.low, recall.high, recall_target(policy))
    if tier_targets:
        checks["tier_recall"] = {
            name: recall_check(*_recall_of(tier_estimates, name), tier_targets.get(name)) for name in tier_targets
        }
    checks["status"] = overall_status(list(_statuses(checks)))
    return checks


def _recall_of(tier_estimates: dict[str, Any] | None, name: str) -> tuple[float, float, float]:
    """A tier's recall estimate and bounds from the per-tier groups (NaN where there are none)."""
    recall = (tier_estimates or {}).get(name, {}).get("recall") or {}
    low, estimate, high = (math.nan if recall.get(k) is None else float(recall[k]) for k in ("low", "estimate", "high"))
    return estimate, low, high


def _statuses(checks: dict[str, Any]) -> Sequence[str]:
    found = []
    for key in ("risk", "routing", "recall"):
        if key in checks:
            found.append(checks[key]["status"])
    for key in ("features", "tier_recall"):
        found += [check["status"] for check in checks.get(key, {}).values()]
    return found


def check_statuses(drift: dict[str, Any]) -> dict[str, str]:
    """Every check's status by name (`risk`, `feature:price`, `routing`, `recall`, `tier_recall:severe`)."""
    statuses: dict[str, str] = {k: drift[k]["status"] for k in ("risk", "routing", "recall") if k in drift}
    statuses |= {f"feature:{name}": check["status"] for name, check in drift.get("features", {}).items()}
    statuses |= {f"tier_recall:{name}": check["status"] for name, check in drift.get("tier_recall", {}).items()}
    return statuses


class ThresholdLog:
    """Logs a warning when a check crosses into warn or alarm (once per crossing, not once per report)."""

    def __init__(self, logger: Callable[..., None] | None = None) -> None:
        self._last: dict[str, str] = {}
        self._warn = logger or log.warning

    def observe(self, drift: dict[str, Any]) -> list[str]:
        crossed = []
        for name, status in check_statuses(drift).items():
            if status in ("warn", "alarm") and self._last.get(name) != status:
                crossed.append(name)
                self._warn("monitor: %s is %s (%s)", name, status, _detail(name, drift))
            self._last[name] = status
        return crossed


def _detail(name: str, drift: dict[str, Any]) -> str:
    kind, _, key = name.partition(":")
    group = {"feature": "features", "tier_recall": "tier_recall"}.get(kind)
    check = drift[group][key] if group else drift[kind]
    if "psi" in check:
        return f"PSI {check['psi'] or 0.0:.3f} on {check['n']} decisions"
    return f"recall {check['estimate']} [{check['low']}, {check['high']}] against target {check['target']}"


def _as_dict(estimates: dict[str, Estimate]) -> dict[str, Any]:
    return {key: estimate.to_dict() for key, estimate in estimates.items()}


def _as_groups(grouped: dict[str, dict[str, Estimate]]) -> dict[str, Any]:
    return {key: _as_dict(estimates) for key, estimates in grouped.items()}


class GaugeRefresher:
    """Recomputes the monitor report over the last `window` every `interval` seconds, off the event loop,
    and hands it to the Prometheus gauges and the threshold log. A failed refresh is logged and retried
    at the next interval; requests never wait for it.

    A refresh holds the serving bundle while it runs. With `lock` (the service's admin lock) it runs under
    it, so a reload never swaps and re-freezes the engines (`serving.models.refreeze_after_swap`) while a
    refresh still holds the bundle being replaced: that bundle's reference cycles would be frozen with the
    live objects and kept until the next reload. A reload waits for a running refresh instead."""

    def __init__(
        self,
        store: Store,
        current: Callable[[], tuple[Bundle | None, Policy | None]],
        metrics: Any,
        interval: float,
        window: timedelta,
        lock: asyncio.Lock | None = None,
    ) -> None:
        self.store, self.current, self.metrics = store, current, metrics
        self.interval, self.window = interval, window
        self.thresholds = ThresholdLog()
        self.lock = lock

    def refresh(self) -> dict[str, Any]:
        bundle, policy = self.current()
        result = report(self.store, bundle, policy, MonitorRequest.last(self.window))
        self.metrics.observe_monitor(result, check_statuses(result["drift"]))
        self.thresholds.observe(result["drift"])
        return result

    async def run(self) -> None:
        # the first refresh a little after start-up (not during it), then every interval
        await asyncio.sleep(min(self.interval, FIRST_REFRESH_SECONDS))
        while True:
            try:
                async with self.lock or nullcontext():
                    await asyncio.to_thread(self.refresh)
            except Exception:  # the service keeps serving; the gauges keep their last values
                log.exception("monitor: refreshing the production estimates failed")
            await asyncio.sleep(self.interval)
