"""Reads for the decision audit: one decision with everything the log holds about it, or every decision
of a listing in time order.

A trail gathers, for a decision: its queue entry, the verdict and its corrections in order, the shadow
model's decision, the policy version it was decided under as stored when put in force through the API
(with who changed it and why, and since which version each matched rule was in force), and the audited
model change that put its model in force. `serving.audit_trail` turns a trail into the audit document
and its plain-words `why`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from serving.store import schema
from serving.store.database import Database
from serving.store.decisions import decision_record
from serving.store.model_audit import SERVING_EVENTS, ModelChange
from serving.store.records import Correction, DecisionRecord, Review
from serving.store.shadow import ShadowDecision

d, q, rv, rc = schema.decisions, schema.queue, schema.reviews, schema.review_corrections
pv, pa, ma, sd = schema.policy_versions, schema.policy_audit, schema.model_audit, schema.shadow_decisions

MAX_LISTING_DECISIONS = 500


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """Where a decision stands in the review queue."""

    lane: str
    status: str
    enqueued_at: datetime
    claimed_by: str | None
    lease_expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class RuleInForce:
    """A rule as the policy version of a decision held it, and the earliest version of the unbroken run of
    stored policy versions (of the same bundle) up to it in which the rule already acted alike."""

    name: str
    action: str
    mode: str
    enabled: bool
    version: int
    in_force_since: str


@dataclass(frozen=True, slots=True)
class StoredPolicy:
    """A policy version put in force through the API: the policy, when, by whom and why."""

    version: str
    bundle_version: str
    at: datetime
    policy: dict[str, Any]
    actor: str | None
    reason: str | None
    rules: dict[str, RuleInForce]


@dataclass(frozen=True, slots=True)
class SecondReview:
    """A blind second reviewer's verdict on the same decision (measures reviewer agreement)."""

    reviewer: str
    verdict: str
    violation_reason: str | None
    reviewed_at: datetime
    note: str | None = None


@dataclass(frozen=True, slots=True)
class DecisionTrail:
    """Everything the log holds about one decision (see the module docstring). `policy` is None when the
    decision's policy version was never put in force through the API: the bundle's own policy (or the
    fail-safe one) was in force; `model_change` is None when no audited change put the model in force
    before the decision (the service started on its configured bundle)."""

    record: DecisionRecord
    queue: QueueEntry | None
    review: Review | None
    corrections: list[Correction] = field(default_factory=list)
    second_reviews: list[SecondReview] = field(default_factory=list)
    shadow: ShadowDecision | None = None
    model_change: ModelChange | None = None
    policy: StoredPolicy | None = None
    # the bundle's own policy of that version, read from the models directory when the log names it by
    # version only (`serving.audit_trail.with_bundle_policy`); None when not looked up or not found
    bundle_policy: dict[str, Any] | None = None


class DecisionAuditReads(Database):
    """The decision audit's reads (compliance: every decision, with its listing, verdicts and reviewers)."""

    def decision_trail(self, decision_id: str) -> DecisionTrail | None:
        """The trail of one decision; None if unknown."""
        with self._read_engine.connect() as conn:
            row = conn.execute(select(d).where(d.c.decision_id == decision_id)).first()
            return None if row is None else _trail(conn, decision_record(row))

    def listing_trails(self, listing_id: str, limit: int = MAX_LISTING_DECISIONS) -> tuple[list[DecisionTrail], bool]:
        """The trails of a listing's decisions in the order they were received (the first `limit`), and
        whether there were more."""
        query = (
            select(d)
            .where(d.c.listing_id == listing_id)
            .order_by(d.c.received_at, d.c.decided_at, d.c.decision_id)
            .limit(limit + 1)
        )
        with self._read_engine.connect() as conn:
            records = [decision_record(row) for row in conn.execute(query)]
            return [_trail(conn, record) for record in records[:limit]], len(records) > limit


def _trail(conn: Connection, record: DecisionRecord) -> DecisionTrail:
    decision_id = record.decision_id
    queued = conn.execute(select(q).where(q.c.decision_id == decision_id)).first()
    review = conn.execute(select(rv).where(rv.c.decision_id == decision_id)).first()
    corrections = conn.execute(select(rc).where(rc.c.decision_id == decision_id).order_by(rc.c.id))
    shadow = conn.execute(select(sd).where(sd.c.decision_id == decision_id)).first()
    return DecisionTrail(
        record=record,
        queue=None if queued is None else _queue_entry(queued._mapping),
        review=None if review is None else Review(**review._mapping),
        corrections=[Correction(**row._mapping) for row in corrections],
        second_reviews=_second_reviews(conn, decision_id),
        shadow=None if shadow is None else ShadowDecision(**shadow._mapping),
        model_change=_model_change(conn, record),
        policy=_stored_policy(conn, record),
    )


def _queue_entry(row: Any) -> QueueEntry:
    return QueueEntry(
        lane=row["lane"] or "review",  # items queued before lanes
        status=row["status"],
        enqueued_at=row["enqueued_at"],
        claimed_by=row["claimed_by"],
        lease_expires_at=row["lease_expires_at"],
    )


def _second_reviews(conn: Connection, decision_id: str) -> list[SecondReview]:
    """Blind second reviews of the decision, oldest first (at most one today; a list keeps room for more)."""
    table = schema.second_reviews
    query = select(table).where(table.c.decision_id == decision_id).order_by(table.c.reviewed_at)
    return [
        SecondReview(row.reviewer, row.verdict, row.violation_reason, row.reviewed_at, row.note)
        for row in conn.execute(query)
    ]


def _model_change(conn: Connection, record: DecisionRecord) -> ModelChange | None:
    """The latest audited promotion or reload that put the decision's model in force before it decided."""
    if record.model_version is None:
        return None
    query = (
        select(ma)
        .where(ma.c.event.in_(SERVING_EVENTS), ma.c.new_model == record.model_version, ma.c.at <= record.decided_at)
        .order_by(ma.c.id.desc())
        .limit(1)
    )
    row = conn.execute(query).first()
    return None if row is None else ModelChange(**row._mapping)


def _stored_policy(conn: Connection, record: DecisionRecord) -> StoredPolicy | None:
    row = conn.execute(select(pv).where(pv.c.version == record.policy_version)).first()
    if row is None:
        return None
    audit = conn.execute(
        select(pa.c.actor, pa.c.reason).where(pa.c.new_version == row.version).order_by(pa.c.id.desc()).limit(1)
    ).first()
    earlier = conn.execute(
        select(pv.c.version, pv.c.policy)
        .where(pv.c.bundle_version == row.bundle_version, pv.c.id < row.id)
        .order_by(pv.c.id.desc())
    ).all()
    named = {*record.rules_matched, *record.rules_shadow}
    rules = {
        name: _rule_in_force(rule, row.version, [(e.version, e.policy) for e in earlier])
        for name, rule in _rules_by_name(row.policy).items()
        if name in named
    }
    return StoredPolicy(
        version=row.version,
        bundle_version=row.bundle_version,
        at=row.at,
        policy=dict(row.policy),
        actor=None if audit is None else audit.actor,
        reason=None if audit is None else audit.reason,
        rules=rules,
    )


def _rules_by_name(policy: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {str(rule.get("name")): rule for rule in policy.get("rules") or [] if isinstance(rule, dict)}


def _acting(rule: dict[str, Any]) -> tuple[str, str, bool]:
    """What decides how a rule acts: its action, mode and whether it is enabled."""
    return str(rule.get("action")), str(rule.get("mode", "enforce")), bool(rule.get("enabled", True))


def _rule_in_force(rule: dict[str, Any], version: str, earlier: list[tuple[str, dict[str, Any]]]) -> RuleInForce:
    """`rule` of policy `version`, with the earliest version of the unbroken run before it (newest first in
    `earlier`) that held the rule acting alike (same action, mode, enabled)."""
    since = version
    for earlier_version, policy in earlier:
        before = _rules_by_name(policy).get(str(rule.get("name")))
        if before is None or _acting(before) != _acting(rule):
            break
        since = earlier_version
    action, mode, enabled = _acting(rule)
    return RuleInForce(str(rule.get("name")), action, mode, enabled, int(rule.get("version", 1)), since)
