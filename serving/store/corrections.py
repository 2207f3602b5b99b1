"""Corrections of verdicts: a reviewer amends their own verdict, a review lead anyone's.

A correction never changes the `reviews` row: it is a new `review_corrections` row with the verdict it
replaces, so the audit trail keeps every verdict in order and the latest one is in force. In the
correction's own transaction the verdict's merchant outcome follows the new verdict (the row keeps its
review time; see `serving.merchant_history` for what running workers see). Labels for retraining read
the verdict in force (`ReviewQueue.export_labels`), as do production monitoring, rule analytics,
backtests on the log and product identification's reviewed listings (`with_verdict_in_force`).
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Connection, FromClause, Row, case, func, insert, select, update

from serving.store import schema
from serving.store.database import Database
from serving.store.records import (
    VERDICTS,
    ConflictError,
    Correction,
    NotFoundError,
    Verdict,
    VerdictInForce,
    overturns,
)

d, q, rv, rc, mo = schema.decisions, schema.queue, schema.reviews, schema.review_corrections, schema.merchant_outcomes

# The verdict in force in reads that join `reviews`: the latest correction's verdict and violation reason
# where there is one, else the review's (`with_verdict_in_force` adds the joins these columns need).
_latest = select(rc.c.decision_id, func.max(rc.c.id).label("id")).group_by(rc.c.decision_id).subquery("latest")
_amended = _latest.c.id.is_not(None)
VERDICT_IN_FORCE = case((_amended, rc.c.verdict), else_=rv.c.verdict).label("verdict")
VIOLATION_REASON_IN_FORCE = case((_amended, rc.c.violation_reason), else_=rv.c.violation_reason).label(
    "violation_reason"
)
CORRECTED = _amended.label("corrected")


def with_verdict_in_force(joined: FromClause) -> FromClause:
    """`joined` (a join that includes `reviews`) outer-joined with each verdict's latest correction."""
    return joined.outerjoin(_latest, _latest.c.decision_id == rv.c.decision_id).outerjoin(rc, rc.c.id == _latest.c.id)


class VerdictCorrections(Database):
    """Amending verdicts (the audit reads show them in order: `decision_audit`)."""

    def verdict_in_force(self, decision_id: str) -> VerdictInForce | None:
        """The decision's verdict as it stands (its latest correction, else the review); None without a
        verdict. NotFoundError for an unknown decision."""
        with self._read_engine.connect() as conn:
            return _verdict_in_force(conn, decision_id)

    def record_correction(
        self,
        previous: VerdictInForce,
        corrected_by: str,
        verdict: str,
        violation_reason: str | None,
        reason: str,
        note: str | None = None,
        statement_of_reasons: dict[str, Any] | None = None,
    ) -> Correction:
        """Amend the verdict `previous` (as read by `verdict_in_force`) and make the merchant outcome follow.

        ConflictError if the verdict in force changed since `previous` was read (a concurrent correction),
        or if the amendment changes nothing (same verdict and violation reason).
        """
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {sorted(VERDICTS)}, got {verdict!r}")
        if not corrected_by or not reason.strip():
            raise ValueError("a correction needs who made it and a reason")
        if (verdict, violation_reason) == (previous.verdict, previous.violation_reason):
            raise ConflictError(
                f"decision {previous.decision_id}: the verdict in force is already {verdict}"
                + (f" ({violation_reason})" if violation_reason else "")
                + ": nothing to amend"
            )
        values = {
            "decision_id": previous.decision_id,
            "corrected_by": corrected_by,
            "corrected_at": self._clock(),
            "previous_verdict": previous.verdict,
            "previous_violation_reason": previous.violation_reason,
            "verdict": verdict,
            "violation_reason": violation_reason,
            "reason": reason,
            "note": note,
            "statement_of_reasons": statement_of_reasons,
        }
        return self._write(lambda conn: self._correct(conn, previous, values))

    def _correct(self, conn: Connection, previous: VerdictInForce, values: dict[str, Any]) -> Correction:
        decision_id = previous.decision_id
        if self.dialect == "postgresql":  # serialise corrections of one verdict
            conn.execute(select(rv.c.decision_id).where(rv.c.decision_id == decision_id).with_for_update())
        current = _verdict_in_force(conn, decision_id)
        if current is None or current.correction_id != previous.correction_id:
            raise ConflictError(f"decision {decision_id}: the verdict was amended meanwhile; read it again")
        lane = conn.execute(select(q.c.lane).where(q.c.decision_id == decision_id)).scalar_one_or_none()
        if lane == "audit":
            decision = conn.execute(select(d.c.decision).where(d.c.decision_id == decision_id)).scalar_one()
            values = {**values, "overturn": overturns(decision, values["verdict"])}
        correction_id = int(conn.execute(insert(rc).values(values).returning(rc.c.id)).scalar_one())
        rejected = values["verdict"] == "reject"
        conn.execute(update(mo).where(mo.c.decision_id == decision_id).values(rejected=rejected))
        return Correction(id=correction_id, **values)


def _verdict_in_force(conn: Connection, decision_id: str) -> VerdictInForce | None:
    review = conn.execute(select(rv).where(rv.c.decision_id == decision_id)).first()
    if review is None:
        if conn.execute(select(d.c.decision_id).where(d.c.decision_id == decision_id)).first() is None:
            raise NotFoundError(f"unknown decision {decision_id}")
        return None
    latest = conn.execute(select(rc).where(rc.c.decision_id == decision_id).order_by(rc.c.id.desc()).limit(1)).first()
    source: Row[Any] = latest if latest is not None else review
    return VerdictInForce(
        decision_id=decision_id,
        reviewer=review.reviewer,
        verdict=cast(Verdict, source.verdict),
        violation_reason=source.violation_reason,
        statement_of_reasons=source.statement_of_reasons,
        correction_id=None if latest is None else int(latest.id),
    )
