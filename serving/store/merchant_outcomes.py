"""Merchant outcomes: each verdict's outcome for its merchant, logged in the verdict's own transaction
and read back by the service's live merchant history (`serving.merchant_history`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Insert, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from features.builder import cell_text
from features.config import DataConfig
from serving.store import schema
from serving.store.database import Database
from serving.store.records import Review

log = logging.getLogger(__name__)

mo, d, rv = schema.merchant_outcomes, schema.decisions, schema.reviews


@dataclass(frozen=True, slots=True)
class MerchantOutcome:
    """One verdict as merchant history counts it: whose listing, when reviewed, rejected or not."""

    decision_id: str
    merchant_id: str
    reviewed_at: datetime
    rejected: bool


MerchantListener = Callable[[MerchantOutcome], None]


class MerchantOutcomeLog(Database):
    """Writes a merchant outcome with every verdict; reads them back in review-time order.

    `merchant_column` is the listing field holding the merchant (the served bundle's data config sets
    it); `merchant_listener`, if set, receives each outcome this process commits, right after commit.
    """

    merchant_column: str = DataConfig().merchant or "merchant_id"
    merchant_listener: MerchantListener | None = None

    def merchant_outcomes_after(self, after: datetime | None) -> list[MerchantOutcome]:
        """Outcomes reviewed strictly after `after` (all if None), oldest first."""
        query = select(mo).order_by(mo.c.reviewed_at, mo.c.decision_id)
        if after is not None:
            query = query.where(mo.c.reviewed_at > after)
        with self._read_engine.connect() as conn:
            return [MerchantOutcome(**row._mapping) for row in conn.execute(query)]

    def backfill_merchant_outcomes(self, after: datetime | None) -> int:
        """Log the outcomes of verdicts reviewed after `after` (all if None) that have none: verdicts
        recorded before this table existed. Safe to run from several processes at once; returns how many
        it added."""
        query = (
            select(rv.c.decision_id, rv.c.reviewed_at, rv.c.verdict, d.c.listing)
            .join_from(rv, d, rv.c.decision_id == d.c.decision_id)
            .outerjoin(mo, mo.c.decision_id == rv.c.decision_id)
            .where(mo.c.decision_id.is_(None))
        )
        if after is not None:
            query = query.where(rv.c.reviewed_at > after)
        with self._read_engine.connect() as conn:
            rows = [
                self._outcome_values(r.decision_id, r.listing, r.reviewed_at, r.verdict) for r in conn.execute(query)
            ]
        missing = [row for row in rows if row is not None]
        if missing:
            self._write(lambda conn: conn.execute(self._insert_new_outcomes(), missing))
            log.info("merchant outcomes: %d verdicts recorded before the table existed backfilled", len(missing))
        return len(missing)

    def _log_merchant_outcome(self, conn: Connection, review: Review) -> None:
        """Inside the verdict's transaction: its outcome for the listing's merchant (none without one)."""
        listing = conn.execute(select(d.c.listing).where(d.c.decision_id == review.decision_id)).scalar_one()
        values = self._outcome_values(review.decision_id, listing, review.reviewed_at, review.verdict)
        if values is not None:
            conn.execute(insert(mo).values(values))

    def _outcome_values(
        self, decision_id: str, listing: Any, reviewed_at: datetime, verdict: str
    ) -> dict[str, Any] | None:
        """The merchant_outcomes row of a verdict; None when the listing names no merchant."""
        merchant = cell_text(listing.get(self.merchant_column)) if isinstance(listing, dict) else ""
        if not merchant:
            return None
        return {
            "decision_id": decision_id,
            "merchant_id": merchant,
            "reviewed_at": reviewed_at,
            "rejected": verdict == "reject",
        }

    def _insert_new_outcomes(self) -> Insert:
        """INSERT that skips rows whose verdict already has its outcome (another process backfilled it)."""
        dialect = postgresql if self.dialect == "postgresql" else sqlite
        return dialect.insert(mo).on_conflict_do_nothing(index_elements=[mo.c.decision_id])

    def _merchant_outcome_committed(self, decision_id: str) -> None:
        """After a verdict committed: hand its outcome to the listener. A failure here is logged, never
        raised (the verdict is stored; the next refresh of merchant history reads the outcome)."""
        listener = self.merchant_listener
        if listener is None:
            return
        try:
            with self._read_engine.connect() as conn:
                row = conn.execute(select(mo).where(mo.c.decision_id == decision_id)).first()
            if row is not None:
                listener(MerchantOutcome(**row._mapping))
        except Exception:
            log.exception("merchant outcome of decision %s not applied in memory; the next refresh will", decision_id)
