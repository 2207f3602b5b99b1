"""Merchant outcomes: each verdict's outcome for its merchant, logged in the verdict's own transaction
and read back by the service's live merchant history (`serving.merchant_history`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, insert, select

from features.builder import cell_text
from features.config import DataConfig
from serving.store import schema
from serving.store.database import Database
from serving.store.records import Review

log = logging.getLogger(__name__)

mo, d = schema.merchant_outcomes, schema.decisions


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

    def _log_merchant_outcome(self, conn: Connection, review: Review) -> None:
        """Inside the verdict's transaction: its outcome for the listing's merchant (none without one)."""
        listing = conn.execute(select(d.c.listing).where(d.c.decision_id == review.decision_id)).scalar_one()
        merchant = cell_text(listing.get(self.merchant_column)) if isinstance(listing, dict) else ""
        if merchant:
            values = {
                "decision_id": review.decision_id,
                "merchant_id": merchant,
                "reviewed_at": review.reviewed_at,
                "rejected": review.verdict == "reject",
            }
            conn.execute(insert(mo).values(values))

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
