"""Blind second review: a share of first verdicts on review-lane items goes back to the queue, in lane
'second', for another reviewer.

The draw is one Bernoulli(second_review_rate) per first verdict, made in the verdict's transaction; the
rate is kept on the queue item (`second_review_rate`), and an item drawn keeps its first reviewer
(`first_reviewer`), who is never handed it again. The first verdict stays in force: it already counted
for the merchant, the statement of reasons and product identification, and the second verdict touches
none of them; it goes to `second_reviews` with whether it agrees. Blind: the queue item the second
reviewer receives carries nothing of the first verdict, and the answer to the second verdict does not say
whether it agreed.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any, cast

from sqlalchemy import ColumnElement, Connection, Row, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from serving.store import schema
from serving.store.database import Database
from serving.store.records import VERDICTS, ConflictError, NotFoundError, Verdict

logger = logging.getLogger(__name__)

q, rv, sr = schema.queue, schema.reviews, schema.second_reviews
_draws = random.SystemRandom()


@dataclass(frozen=True, slots=True)
class SecondReview:
    """A second reviewer's verdict on an item whose first verdict is in force."""

    decision_id: str
    reviewer: str
    verdict: Verdict
    violation_reason: str | None
    review_seconds: float | None
    reviewed_at: datetime
    agrees: bool
    note: str | None = None  # the second reviewer's own words, kept for the decision's audit


def not_first_reviewer(reviewer: str) -> ColumnElement[bool]:
    """Queue items `reviewer` may claim: any but a second review of their own first verdict."""
    return or_(q.c.first_reviewer.is_(None), q.c.first_reviewer != reviewer)


def after_first_verdict(lane: str | None, reviewer: str, now: datetime, second_review_rate: float) -> dict[str, Any]:
    """The queue item's new values once its first verdict is recorded: done, or (review lane only, with
    probability `second_review_rate`) pending again in lane 'second' with its first reviewer kept."""
    done: dict[str, Any] = {"status": "done", "claimed_by": reviewer, "lease_expires_at": None}
    if lane not in (None, "review"):
        return done
    if _draws.random() >= second_review_rate:
        return {**done, "second_review_rate": second_review_rate}
    logger.info("first verdict by %s drawn for a blind second review (rate %s)", reviewer, second_review_rate)
    return {
        "status": "pending",
        "lane": "second",
        "claimed_by": None,
        "lease_expires_at": None,
        "enqueued_at": now,
        "first_reviewer": reviewer,
        "second_review_rate": second_review_rate,
    }


class SecondReviews(Database):
    """Recording and reading blind second reviews."""

    def record_second_review(
        self,
        decision_id: str,
        reviewer: str,
        verdict: str,
        violation_reason: str | None = None,
        review_seconds: float | None = None,
        note: str | None = None,
    ) -> SecondReview:
        """Store a second verdict and close the item. Raises NotFoundError for an unknown item,
        ConflictError if it awaits no second review, is already reviewed, is leased to someone else, or
        `reviewer` gave its first verdict."""
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {sorted(VERDICTS)}, got {verdict!r}")
        if not reviewer:
            raise ValueError("reviewer must not be empty")
        if review_seconds is not None and not 0 <= review_seconds < float("inf"):
            raise ValueError("review_seconds must be a finite number >= 0")
        review = SecondReview(
            decision_id,
            reviewer,
            cast(Verdict, verdict),
            violation_reason,
            review_seconds,
            self._clock(),
            agrees=False,
            note=note,
        )
        try:
            return self._write(lambda conn: self._second_review(conn, review))
        except IntegrityError as exc:  # a concurrent second verdict won the race
            raise ConflictError(f"decision {decision_id} is already reviewed") from exc

    def awaits_second_review(self, decision_id: str) -> bool:
        """Whether the item is in lane 'second' (pending, claimed or done)."""
        with self._read_engine.connect() as conn:
            lane = conn.execute(select(q.c.lane).where(q.c.decision_id == decision_id)).scalar()
        return lane == "second"

    def get_second_review(self, decision_id: str) -> SecondReview | None:
        with self._read_engine.connect() as conn:
            row = conn.execute(select(sr).where(sr.c.decision_id == decision_id)).first()
        return None if row is None else SecondReview(**row._mapping)

    def _second_review(self, conn: Connection, review: SecondReview) -> SecondReview:
        item = self._locked_item(conn, review.decision_id)
        if item.lane != "second":
            raise ConflictError(f"decision {review.decision_id} awaits no second review")
        if item.status == "done":
            raise ConflictError(f"decision {review.decision_id} is already reviewed")
        if item.first_reviewer == review.reviewer:
            raise ConflictError(f"decision {review.decision_id}: the first reviewer cannot give its second review")
        if (
            item.status == "claimed"
            and item.lease_expires_at > review.reviewed_at
            and item.claimed_by != review.reviewer
        ):
            raise ConflictError(f"decision {review.decision_id} is leased to another reviewer")
        first = conn.execute(select(rv.c.verdict).where(rv.c.decision_id == review.decision_id)).scalar_one()
        recorded = SecondReview(**{**_fields(review), "agrees": first == review.verdict})
        conn.execute(insert(sr).values(_fields(recorded)))
        done = {"status": "done", "claimed_by": review.reviewer, "lease_expires_at": None}
        conn.execute(update(q).where(q.c.decision_id == review.decision_id).values(done))
        return recorded

    def _locked_item(self, conn: Connection, decision_id: str) -> Row[Any]:
        query = select(q).where(q.c.decision_id == decision_id)
        if self.dialect == "postgresql":
            query = query.with_for_update()
        item = conn.execute(query).first()
        if item is None:
            raise NotFoundError(f"unknown queue item {decision_id}")
        return item


def _fields(review: SecondReview) -> dict[str, Any]:
    return {f.name: getattr(review, f.name) for f in fields(review)}
