"""Reviewed listings read back from the decision log: what product identification adds to a bundle's
index as verdicts arrive (rejects for re-post matching, every verdict for similar past cases).

No table of its own: a verdict is a `reviews` row and its listing is its decision's `listing`, both
written durably before the verdict is acknowledged, so any worker (or a restarted one) reads the same
rejects in review-time order. A corrected verdict is read as amended (its latest correction), at its
first review time: an index built from the log (at start, or for a reloaded bundle) holds the verdict in
force, while a running worker's index keeps the verdict it read until then.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from serving.store import schema
from serving.store.corrections import VERDICT_IN_FORCE, VIOLATION_REASON_IN_FORCE, with_verdict_in_force
from serving.store.database import Database

d, rv = schema.decisions, schema.reviews


@dataclass(frozen=True, slots=True)
class ReviewedListing:
    """A verdict with the listing it was given on."""

    decision_id: str
    listing_id: str
    listing: dict[str, Any]
    verdict: str
    violation_reason: str
    reviewed_at: datetime


class ReviewedListings(Database):
    def reviewed_listings_after(self, after: datetime | None, limit: int = 10_000) -> list[ReviewedListing]:
        """Verdicts reviewed at or after `after` (all if None), oldest first, at most `limit`."""
        query = (
            select(
                d.c.decision_id,
                d.c.listing_id,
                d.c.listing,
                VERDICT_IN_FORCE,
                VIOLATION_REASON_IN_FORCE,
                rv.c.reviewed_at,
            )
            .select_from(with_verdict_in_force(rv.join(d, rv.c.decision_id == d.c.decision_id)))
            .order_by(rv.c.reviewed_at, rv.c.decision_id)
            .limit(limit)
        )
        if after is not None:
            query = query.where(rv.c.reviewed_at >= after)
        with self._read_engine.connect() as conn:
            return [
                ReviewedListing(
                    r.decision_id,
                    r.listing_id,
                    r.listing if isinstance(r.listing, dict) else {},
                    r.verdict,
                    r.violation_reason or "",
                    r.reviewed_at,
                )
                for r in conn.execute(query)
            ]

    def latest_listing(self, listing_id: str) -> dict[str, Any] | None:
        """The listing as last scored under `listing_id` (None: never scored)."""
        query = select(d.c.listing).where(d.c.listing_id == listing_id).order_by(d.c.decided_at.desc()).limit(1)
        with self._read_engine.connect() as conn:
            listing = conn.execute(query).scalar_one_or_none()
        return listing if isinstance(listing, dict) else None
