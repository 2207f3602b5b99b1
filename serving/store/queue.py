"""The review queue: leases on the highest-priority items, verdicts, and verdicts as labelled outcomes.

Three lanes: 'review' (decisions that wait for a person), 'audit' (automated decisions in force, drawn
for audit) and 'second' (first verdicts drawn for a blind second review, `serving.store.second_review`).
Items are claimed by priority, except that an audit older than the audit age limit goes before
everything else, oldest first: under a backlog of reviews, audits wait at most that long (plus
the time to clear the audits due before them) instead of starving.
"""

from __future__ import annotations

from dataclasses import fields, replace
from datetime import datetime, timedelta
from typing import Any, cast

import pandas as pd
from sqlalchemy import ColumnElement, Connection, Row, Select, and_, case, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from decision.audit import AuditPlan
from features.config import DataConfig
from serving.store import schema
from serving.store.corrections import CORRECTED, VERDICT_IN_FORCE, VIOLATION_REASON_IN_FORCE, with_verdict_in_force
from serving.store.decisions import decision_record
from serving.store.labels import labelled_outcome, labels_frame
from serving.store.merchant_outcomes import MerchantOutcomeLog
from serving.store.records import (
    VERDICTS,
    ConflictError,
    DecisionRecord,
    NotFoundError,
    QueueItem,
    Review,
    Verdict,
    overturns,
)
from serving.store.reviewer_activity import two_verdict_labels, with_label_sources
from serving.store.second_review import after_first_verdict, not_first_reviewer

d, q, rv = schema.decisions, schema.queue, schema.reviews

DEFAULT_AUDIT_MAX_AGE = timedelta(hours=AuditPlan().max_age_hours)


class ReviewQueue(MerchantOutcomeLog):
    """Claiming queued decisions and recording reviewers' verdicts."""

    def claim(
        self,
        reviewer: str,
        n: int = 1,
        lease_seconds: int = 300,
        audit_max_age: timedelta = DEFAULT_AUDIT_MAX_AGE,
    ) -> list[QueueItem]:
        """Lease up to n items that are pending or whose lease expired: audits older than `audit_max_age`
        first (oldest first), then by priority.

        Atomic: two concurrent claimers never receive the same item.
        """
        if not reviewer:
            raise ValueError("reviewer must not be empty")
        if not 1 <= n <= 1000 or lease_seconds < 0:
            raise ValueError("claim: n must be in [1, 1000] and lease_seconds >= 0")
        if audit_max_age <= timedelta(0):
            raise ValueError("claim: audit_max_age must be positive")
        return self._write(lambda conn: self._claim(conn, reviewer, n, lease_seconds, audit_max_age))

    def record_review(
        self,
        decision_id: str,
        reviewer: str,
        verdict: str,
        violation_reason: str | None = None,
        review_seconds: float | None = None,
        statement_of_reasons: dict[str, Any] | None = None,
        note: str | None = None,
        second_review_rate: float = 0.0,
    ) -> Review:
        """Store a verdict (with the DSA statement of reasons of a rejection, and the reviewer's note) and
        close the queue item, or, on a review-lane item with probability `second_review_rate`, send it for
        a blind second review.

        On an audit, the review records whether the verdict overturns the automated decision in force
        (`records.overturns`). Raises NotFoundError for an unknown decision, ConflictError if it is not queued, already
        reviewed, or leased to another reviewer.
        """
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {sorted(VERDICTS)}, got {verdict!r}")
        if not reviewer:
            raise ValueError("reviewer must not be empty")
        if review_seconds is not None and not 0 <= review_seconds < float("inf"):
            raise ValueError("review_seconds must be a finite number >= 0")
        if not 0.0 <= second_review_rate <= 1.0:
            raise ValueError("second_review_rate must be in [0, 1]")
        now = self._clock()
        review = Review(
            decision_id,
            reviewer,
            cast(Verdict, verdict),
            violation_reason,
            review_seconds,
            now,
            statement_of_reasons,
            note=note,
        )
        try:
            recorded = self._write(lambda conn: self._review(conn, review, second_review_rate))
        except IntegrityError as exc:  # a concurrent verdict won the race
            raise ConflictError(f"decision {decision_id} is already reviewed") from exc
        self._merchant_outcome_committed(decision_id)
        return recorded

    def release(self, decision_id: str, reviewer: str) -> None:
        """Give back a lease `reviewer` holds (live or expired, not yet taken by anyone else): the item is
        pending again, for whoever claims next.

        Raises NotFoundError for an unknown decision or one not in the queue, ConflictError if the item
        is reviewed already or not leased to `reviewer`.
        """
        self._write(lambda conn: self._release(conn, decision_id, reviewer))

    def get_queue_item(self, decision_id: str) -> QueueItem | None:
        """The queue entry of a decision, with the decision; None if it was never queued."""
        with self._read_engine.connect() as conn:
            row = conn.execute(select(q).where(q.c.decision_id == decision_id)).first()
            decision = conn.execute(select(d).where(d.c.decision_id == decision_id)).first()
        return None if row is None or decision is None else _queue_item(row, decision_record(decision))

    def _release(self, conn: Connection, decision_id: str, reviewer: str) -> None:
        query = select(q.c.status, q.c.claimed_by).where(q.c.decision_id == decision_id)
        item = conn.execute(query.with_for_update() if self.dialect == "postgresql" else query).first()
        if item is None:
            raise NotFoundError(f"decision {decision_id} is not in the review queue")
        if item.status == "done":
            raise ConflictError(f"decision {decision_id} is already reviewed")
        if item.status != "claimed" or item.claimed_by != reviewer:
            raise ConflictError(f"decision {decision_id} is not leased to {reviewer}")
        pending = {"status": "pending", "claimed_by": None, "lease_expires_at": None}
        conn.execute(update(q).where(q.c.decision_id == decision_id).values(pending))

    def get_review(self, decision_id: str) -> Review | None:
        with self._read_engine.connect() as conn:
            row = conn.execute(select(rv).where(rv.c.decision_id == decision_id)).first()
        return None if row is None else Review(**row._mapping)

    def queue_counts(self, lane: str | None = None) -> dict[str, int]:
        """Queue items by status (pending, claimed, done), of one lane or all. An item whose lease has
        expired counts as pending: any reviewer can claim it, and a supervisor must see it waiting."""
        now = self._clock()
        expired = and_(q.c.status == "claimed", q.c.lease_expires_at <= now)
        status = case((expired, "pending"), else_=q.c.status).label("status")
        query = select(status, func.count()).group_by(status)
        if lane == "review":
            query = query.where(or_(q.c.lane == "review", q.c.lane.is_(None)))
        elif lane is not None:
            query = query.where(q.c.lane == lane)
        with self._read_engine.connect() as conn:
            counts = {str(status): int(count) for status, count in conn.execute(query)}
        return {status: counts.get(status, 0) for status in ("pending", "claimed", "done")}

    def export_labels(self, config: DataConfig | None = None, since: datetime | None = None) -> pd.DataFrame:
        """`export_labels_and_fields` without the fields."""
        return self.export_labels_and_fields(config, since)[0]

    def export_labels_and_fields(
        self, config: DataConfig | None = None, since: datetime | None = None
    ) -> tuple[pd.DataFrame, set[str]]:
        """Reviewed decisions as labelled outcomes in the data contract (listing fields + outcome), each
        with its inclusion probability, audit flag and the decision that was in force (`labels`), and how
        the label was decided (`label_source`: the first verdict, or a blind second review's resolution).

        The outcome is the verdict in force: a corrected verdict's latest correction (verdict and
        violation reason), flagged `corrected`, overrides any resolution; `reviewed_at` stays the first
        verdict's time. Beside the frame, every field the exported listings were logged with (what a data
        config's columns must be among: the listing id is filled in from the log whatever its name)."""
        config = config or DataConfig()
        logged = (d.c.decision, d.c.inclusion_prob, d.c.qa_sample)
        verdict = (VERDICT_IN_FORCE, VIOLATION_REASON_IN_FORCE, CORRECTED, rv.c.review_seconds, rv.c.reviewed_at)
        query: Select[Any] = (
            select(d.c.decision_id, d.c.listing_id, d.c.listing, d.c.received_at, *logged, *verdict)
            .select_from(with_verdict_in_force(rv.join(d, rv.c.decision_id == d.c.decision_id)))
            .order_by(rv.c.reviewed_at, rv.c.decision_id)
        )
        if since is not None:
            query = query.where(rv.c.reviewed_at >= since)
        fields: set[str] = set()
        with self._read_engine.connect() as conn:
            rows = []
            for row in conn.execute(query):
                fields.update(map(str, row.listing or {}))
                rows.append(labelled_outcome(row, config))
            resolved = two_verdict_labels(conn)
        return with_label_sources(labels_frame(rows, config), resolved, config), fields

    def _claim(
        self, conn: Connection, reviewer: str, n: int, lease_seconds: int, audit_max_age: timedelta
    ) -> list[QueueItem]:
        now = self._clock()
        claimable = and_(_claimable(now), not_first_reviewer(reviewer))
        overdue = (
            select(q.c.decision_id)
            .where(claimable, q.c.lane == "audit", q.c.enqueued_at <= now - audit_max_age)
            .order_by(q.c.enqueued_at, q.c.decision_id)
            .limit(n)
        )
        ids = list(conn.execute(self._locking(overdue)).scalars())
        if len(ids) < n:
            by_priority = (
                select(q.c.decision_id)
                .where(claimable, q.c.decision_id.not_in(ids))
                .order_by(q.c.priority.desc(), q.c.enqueued_at, q.c.decision_id)
                .limit(n - len(ids))
            )
            ids += conn.execute(self._locking(by_priority)).scalars()
        if not ids:
            return []
        expires = now + timedelta(seconds=lease_seconds)
        lease = {"status": "claimed", "claimed_by": reviewer, "lease_expires_at": expires}
        claim = update(q).where(q.c.decision_id.in_(ids), claimable).values(lease).returning(q)
        claimed = conn.execute(claim).all()
        records = {
            row.decision_id: decision_record(row)
            for row in conn.execute(select(d).where(d.c.decision_id.in_([c.decision_id for c in claimed])))
        }
        order = {decision_id: i for i, decision_id in enumerate(ids)}
        items = [_queue_item(row, records[row.decision_id]) for row in claimed]
        return sorted(items, key=lambda item: order[item.decision_id])

    def _locking(self, candidates: Select[Any]) -> Select[Any]:
        """On PostgreSQL, lock the candidate rows, skipping those another claim holds."""
        return candidates.with_for_update(skip_locked=True) if self.dialect == "postgresql" else candidates

    def _review(self, conn: Connection, review: Review, second_review_rate: float) -> Review:
        query = select(q).where(q.c.decision_id == review.decision_id)
        if self.dialect == "postgresql":
            query = query.with_for_update()
        item = conn.execute(query).first()
        if item is None:
            known = conn.execute(select(d.c.decision_id).where(d.c.decision_id == review.decision_id)).first()
            if known is None:
                raise NotFoundError(f"unknown decision {review.decision_id}")
            raise ConflictError(f"decision {review.decision_id} is not in the review queue")
        if item.status == "done" or item.lane == "second":
            raise ConflictError(f"decision {review.decision_id} is already reviewed")
        leased = item.status == "claimed" and item.lease_expires_at > review.reviewed_at
        if leased and item.claimed_by != review.reviewer:
            raise ConflictError(f"decision {review.decision_id} is leased to another reviewer")
        if item.lane == "audit":
            decision = conn.execute(select(d.c.decision).where(d.c.decision_id == review.decision_id)).scalar_one()
            review = replace(review, overturn=overturns(decision, review.verdict))
        conn.execute(insert(rv).values(_review_params(review)))
        self._log_merchant_outcome(conn, review)  # merchant history counts the verdict from its commit
        closed = after_first_verdict(item.lane, review.reviewer, review.reviewed_at, second_review_rate)
        conn.execute(update(q).where(q.c.decision_id == review.decision_id).values(closed))
        return review


def _queue_item(row: Row[Any], record: DecisionRecord) -> QueueItem:
    fields_ = dict(row._mapping)
    fields_["lane"] = fields_.get("lane") or "review"  # items queued before lanes
    return QueueItem(**fields_, decision=record)


def _claimable(now: datetime) -> ColumnElement[bool]:
    expired = and_(q.c.status == "claimed", q.c.lease_expires_at <= now)
    return or_(q.c.status == "pending", expired)


def _review_params(review: Review) -> dict[str, Any]:
    return {f.name: getattr(review, f.name) for f in fields(review)}
