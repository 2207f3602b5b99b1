"""Rule analytics of the service: the decision log of a window through `decision.rule_stats`, with the
policy in force naming each rule's action. One report for `GET /v1/rules/stats`, `triage rules stats`
and the /rules page."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from decision.policy import Policy
from decision.rule_stats import PERIODS, rule_stats
from serving.store import Store

DEFAULT_LIMIT = 1_000_000  # most recent decisions read for one report


@dataclass(frozen=True)
class RuleStatsRequest:
    since: datetime
    until: datetime
    period: str = "day"
    confidence: float = 0.95
    limit: int = DEFAULT_LIMIT

    def validate(self) -> RuleStatsRequest:
        """ValueError naming the field for a window or period that cannot be reported."""
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("since: times need a zone (e.g. 2026-12-01T00:00:00+00:00)")
        if self.since >= self.until:
            raise ValueError(f"since: {self.since.isoformat()} is not before until {self.until.isoformat()}")
        if self.period not in PERIODS:
            raise ValueError(f"period: {self.period!r} is not one of {list(PERIODS)}")
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence: {self.confidence!r} is not in [0.5, 1)")
        return self


def report(store: Store, policy: Policy | None, request: RuleStatsRequest) -> dict[str, Any]:
    """Per rule and period figures and the co-occurrence for the window, with each rule as the policy in
    force has it (action, mode, enabled, version; None for a rule it no longer names)."""
    request.validate()
    log, truncated = store.rule_log(request.since, request.until, request.limit)
    rules = {rule.name: rule for rule in policy.rules} if policy is not None else {}
    result = rule_stats(log, request.period, request.confidence, {name: r.action for name, r in rules.items()})
    result["window"] = {"since": request.since.isoformat(), "until": request.until.isoformat()}
    result["truncated"] = truncated
    result["policy_version"] = policy.version if policy is not None else None
    result["policy_rules"] = [
        {"name": r.name, "action": r.action, "mode": r.mode, "enabled": r.enabled, "version": r.version}
        for r in rules.values()
    ]
    return result
