"""Gold items: listings with a known answer, handed out in claims like any review item.

A gold item copies a past decision's listing and decision (the snapshot the reviewer is shown) with the
verdict (and, for a rejection, the reason) it should get. Each time one is handed to a reviewer it gets a
fresh time-ordered id (`gold_assignments.assignment_id`) with a lease, so nothing in the item tells it
from a queue item: the snapshot is shown as a human-review decision received now. Its verdict goes to the
assignment with whether it was right, and nowhere else: not to reviews or decisions, so never to label
exports, merchant history, monitoring or product identification. A reviewer gets each gold item at most
once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Connection, Integer, and_, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from serving.store import schema
from serving.store.database import Database
from serving.store.decisions import decision_record
from serving.store.records import VERDICTS, ConflictError, DecisionRecord, NotFoundError, QueueItem, Verdict, new_ids

d, g, ga = schema.decisions, schema.gold_items, schema.gold_assignments

# What a reviewer is shown of the source decision; ids, times, the decision itself and anything that could
# tell a gold item from a queue item are set afresh on each assignment.
SNAPSHOT_FIELDS = (
    "listing_id",
    "listing",
    "risk",
    "model_version",
    "policy_version",
    "t_pass",
    "t_block",
    "priority",
    "rules_matched",
    "reasons",
    "tier_risk",
    "decision_tier",
    "rules_shadow",
    "model_decision",
)


@dataclass(frozen=True, slots=True)
class GoldItem:
    """A gold item with its answer counts."""

    gold_id: str
    source_decision_id: str
    expected_verdict: Verdict
    expected_reason: str | None
    created_at: datetime
    created_by: str
    retired_at: datetime | None
    assigned: int = 0
    answered: int = 0
    correct: int = 0


@dataclass(frozen=True, slots=True)
class GoldAnswer:
    """A reviewer's verdict on a gold item, scored."""

    assignment_id: str
    gold_id: str
    reviewer: str
    verdict: Verdict
    violation_reason: str | None
    review_seconds: float | None
    reviewed_at: datetime
    correct: bool
    reason_correct: bool | None
    note: str | None = None  # the reviewer's own words, kept with the answer


class GoldItems(Database):
    """Adding, listing, retiring, handing out and answering gold items."""

    def add_gold(
        self, source_decision_id: str, expected_verdict: str, expected_reason: str | None, actor: str
    ) -> GoldItem:
        """A gold item from a logged decision. Raises NotFoundError for an unknown decision, ConflictError when
        a live gold item already copies it (two copies of one listing could reach one reviewer together)."""
        if expected_verdict not in VERDICTS:
            raise ValueError(f"expected_verdict must be one of {sorted(VERDICTS)}, got {expected_verdict!r}")
        if expected_reason is not None and expected_verdict != "reject":
            raise ValueError("expected_reason: only a rejection has a reason")
        with self._read_engine.connect() as conn:
            row = conn.execute(select(d).where(d.c.decision_id == source_decision_id)).first()
        if row is None:
            raise NotFoundError(f"unknown decision {source_decision_id}")
        record = decision_record(row)
        item = GoldItem(
            gold_id=new_ids(1)[0],
            source_decision_id=source_decision_id,
            expected_verdict=cast(Verdict, expected_verdict),
            expected_reason=expected_reason,
            created_at=self._clock(),
            created_by=actor,
            retired_at=None,
        )
        values = {
            "gold_id": item.gold_id,
            "source_decision_id": source_decision_id,
            "decision": {name: getattr(record, name) for name in SNAPSHOT_FIELDS},
            "expected_verdict": expected_verdict,
            "expected_reason": expected_reason,
            "created_at": item.created_at,
            "created_by": actor,
        }

        def write(conn: Connection) -> None:
            live = g.c.source_decision_id == source_decision_id, g.c.retired_at.is_(None)
            taken = conn.execute(select(g.c.gold_id).where(*live)).first()
            if taken is not None:
                raise ConflictError(
                    f"decision {source_decision_id} is already the live gold item {taken.gold_id}: retire it first"
                )
            conn.execute(insert(g).values(values))

        self._write(write)
        return item

    def list_gold(self, include_retired: bool = False) -> list[GoldItem]:
        """Gold items, oldest first, with how often each was handed out, answered and answered right."""
        counts = (
            select(
                ga.c.gold_id,
                func.count().label("assigned"),
                func.count(ga.c.verdict).label("answered"),
                func.coalesce(func.sum(ga.c.correct.cast(Integer)), 0).label("correct"),
            )
            .group_by(ga.c.gold_id)
            .subquery()
        )
        query = (
            select(g, counts.c.assigned, counts.c.answered, counts.c.correct)
            .join_from(g, counts, g.c.gold_id == counts.c.gold_id, isouter=True)
            .order_by(g.c.created_at, g.c.gold_id)
        )
        if not include_retired:
            query = query.where(g.c.retired_at.is_(None))
        with self._read_engine.connect() as conn:
            return [_gold_item(row) for row in conn.execute(query)]

    def retire_gold(self, gold_id: str) -> GoldItem:
        """Stop handing a gold item out (answers kept). Raises NotFoundError for an unknown or retired one."""
        statement = update(g).where(g.c.gold_id == gold_id, g.c.retired_at.is_(None)).values(retired_at=self._clock())
        if not self._write(lambda conn: conn.execute(statement).rowcount):
            raise NotFoundError(f"no live gold item {gold_id}")
        return next(item for item in self.list_gold(include_retired=True) if item.gold_id == gold_id)

    def claim_gold(self, reviewer: str, n: int, lease_seconds: int) -> list[QueueItem]:
        """Hand up to n live gold items this reviewer has not had, in random order, as queue items."""
        if n <= 0:
            return []
        try:
            return self._write(lambda conn: self._claim_gold(conn, reviewer, n, lease_seconds))
        except IntegrityError:  # a concurrent claim of the same reviewer took one of them: hand out none
            return []

    def is_gold_assignment(self, assignment_id: str) -> bool:
        with self._read_engine.connect() as conn:
            found = conn.execute(select(ga.c.assignment_id).where(ga.c.assignment_id == assignment_id)).first()
        return found is not None

    def get_gold_item(self, assignment_id: str) -> QueueItem | None:
        """A gold item as handed out (the reviewer's view of it: an ordinary queue item), 'done' once
        answered; None if no such assignment."""
        query = (
            select(ga, g.c.decision)
            .join_from(ga, g, ga.c.gold_id == g.c.gold_id)
            .where(ga.c.assignment_id == assignment_id)
        )
        with self._read_engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        item = _as_queue_item(assignment_id, row.decision, row.reviewer, row.assigned_at, row.lease_expires_at)
        return replace(item, status="done") if row.verdict is not None else item

    def release_gold(self, assignment_id: str, reviewer: str) -> None:
        """Give back an unanswered gold item, as a queue item's lease is given back: the assignment is
        dropped, so the item may be handed to this reviewer again later. Raises NotFoundError for an
        unknown assignment, ConflictError if it is another reviewer's or answered."""

        def release(conn: Connection) -> None:
            row = conn.execute(select(ga.c.reviewer, ga.c.verdict).where(ga.c.assignment_id == assignment_id)).first()
            if row is None:
                raise NotFoundError(f"decision {assignment_id} is not in the review queue")
            if row.verdict is not None:
                raise ConflictError(f"decision {assignment_id} is already reviewed")
            if row.reviewer != reviewer:
                raise ConflictError(f"decision {assignment_id} is not leased to {reviewer}")
            conn.execute(delete(ga).where(ga.c.assignment_id == assignment_id, ga.c.verdict.is_(None)))

        self._write(release)

    def answer_gold(
        self,
        assignment_id: str,
        reviewer: str,
        verdict: str,
        violation_reason: str | None = None,
        review_seconds: float | None = None,
        note: str | None = None,
    ) -> GoldAnswer:
        """Score a verdict on a gold item handed to `reviewer`. Raises NotFoundError for an unknown
        assignment, ConflictError if it was handed to someone else or is already answered."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {sorted(VERDICTS)}, got {verdict!r}")
        if review_seconds is not None and not 0 <= review_seconds < float("inf"):
            raise ValueError("review_seconds must be a finite number >= 0")
        return self._write(
            lambda conn: self._answer(conn, assignment_id, reviewer, verdict, violation_reason, review_seconds, note)
        )

    def _claim_gold(self, conn: Connection, reviewer: str, n: int, lease_seconds: int) -> list[QueueItem]:
        had = select(ga.c.gold_id).where(ga.c.reviewer == reviewer)
        query = (
            select(g.c.gold_id, g.c.decision)
            .where(g.c.retired_at.is_(None), g.c.gold_id.not_in(had))
            .order_by(func.random())
            .limit(n)
        )
        golds = conn.execute(query).all()
        now = self._clock()
        expires = now + timedelta(seconds=lease_seconds)
        items = []
        for (gold_id, snapshot), assignment_id in zip(golds, new_ids(len(golds)), strict=True):
            values = {
                "assignment_id": assignment_id,
                "gold_id": gold_id,
                "reviewer": reviewer,
                "assigned_at": now,
                "lease_expires_at": expires,
            }
            conn.execute(insert(ga).values(values))
            items.append(_as_queue_item(assignment_id, snapshot, reviewer, now, expires))
        return items

    def _answer(
        self,
        conn: Connection,
        assignment_id: str,
        reviewer: str,
        verdict: str,
        violation_reason: str | None,
        review_seconds: float | None,
        note: str | None = None,
    ) -> GoldAnswer:
        query = (
            select(ga, g.c.expected_verdict, g.c.expected_reason)
            .join_from(ga, g, ga.c.gold_id == g.c.gold_id)
            .where(ga.c.assignment_id == assignment_id)
        )
        if self.dialect == "postgresql":
            query = query.with_for_update(of=ga)
        row = conn.execute(query).first()
        if row is None:
            raise NotFoundError(f"unknown decision {assignment_id}")
        if row.reviewer != reviewer:
            raise ConflictError(f"decision {assignment_id} is leased to another reviewer")
        if row.verdict is not None:
            raise ConflictError(f"decision {assignment_id} is already reviewed")
        reason_correct = None
        if verdict == "reject" and row.expected_verdict == "reject" and row.expected_reason is not None:
            reason_correct = violation_reason == row.expected_reason
        answer = GoldAnswer(
            assignment_id=assignment_id,
            gold_id=row.gold_id,
            reviewer=reviewer,
            verdict=cast(Verdict, verdict),
            violation_reason=violation_reason,
            review_seconds=review_seconds,
            reviewed_at=self._clock(),
            correct=verdict == row.expected_verdict,
            reason_correct=reason_correct,
            note=note,
        )
        unanswered = and_(ga.c.assignment_id == assignment_id, ga.c.verdict.is_(None))
        conn.execute(
            update(ga)
            .where(unanswered)
            .values(
                verdict=verdict,
                violation_reason=violation_reason,
                review_seconds=review_seconds,
                reviewed_at=answer.reviewed_at,
                correct=answer.correct,
                reason_correct=reason_correct,
                note=note,
            )
        )
        return answer


def _as_queue_item(
    assignment_id: str, snapshot: dict[str, Any], reviewer: str, now: datetime, expires: datetime
) -> QueueItem:
    """The gold item as an ordinary review-lane item: a human-review decision received now."""
    record = DecisionRecord(
        **snapshot,
        decision="human_review",
        automated=False,
        decision_id=assignment_id,
        received_at=now,
        decided_at=now,
        inclusion_prob=1.0,
    )
    return QueueItem(
        decision_id=assignment_id,
        priority=record.priority,
        enqueued_at=now,
        status="claimed",
        claimed_by=reviewer,
        lease_expires_at=expires,
        qa_sample=False,
        decision=record,
    )


def _gold_item(row: Any) -> GoldItem:
    return GoldItem(
        gold_id=row.gold_id,
        source_decision_id=row.source_decision_id,
        expected_verdict=row.expected_verdict,
        expected_reason=row.expected_reason,
        created_at=row.created_at,
        created_by=row.created_by,
        retired_at=row.retired_at,
        assigned=int(row.assigned or 0),
        answered=int(row.answered or 0),
        correct=int(row.correct or 0),
    )
