"""What reviewer quality is computed from: every verdict (reviews, audits, second reviews, gold answers)
with its reviewer, handling time and time; the pairs of first and second verdicts; the gold answers; the
team of each reviewer's key. And the label exported for an item with two verdicts (`with_label_sources`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import (
    Boolean,
    ColumnElement,
    Connection,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    union_all,
)

from decision.reviewer_stats import resolved_labels
from features.config import DataConfig
from serving.store import schema
from serving.store.database import Database

q, rv, sr, ga, g = schema.queue, schema.reviews, schema.second_reviews, schema.gold_assignments, schema.gold_items
rc = schema.review_corrections

VERDICT_COLUMNS = ["reviewer", "kind", "verdict", "review_seconds", "reviewed_at", "correct"]
AMENDED_COLUMNS = ["reviewer", "verdict", "verdict_in_force", "amended_by"]
PAIR_COLUMNS = ["decision_id", "first_reviewer", "first_verdict", "second_reviewer", "second_verdict", "reviewed_at"]
GOLD_COLUMNS = ["gold_id", "reviewer", "verdict", "expected_verdict", "correct", "reviewed_at"]


class ReviewerActivity(Database):
    """Reads of verdicts by reviewer, for reviewer quality statistics and labels from two verdicts."""

    def reviewer_verdicts(self, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
        """One row per verdict in [since, until): kind review, audit, second or gold; `correct` for gold."""
        kind = case((q.c.lane == "audit", literal("audit")), else_=literal("review")).label("kind")
        reviews = select(
            rv.c.reviewer,
            kind,
            rv.c.verdict,
            rv.c.review_seconds,
            rv.c.reviewed_at,
            cast(null(), Boolean).label("correct"),
        ).join_from(rv, q, rv.c.decision_id == q.c.decision_id, isouter=True)
        seconds = select(
            sr.c.reviewer,
            literal("second").label("kind"),
            sr.c.verdict,
            sr.c.review_seconds,
            sr.c.reviewed_at,
            cast(null(), Boolean).label("correct"),
        )
        golds = select(
            ga.c.reviewer,
            literal("gold").label("kind"),
            ga.c.verdict,
            ga.c.review_seconds,
            ga.c.reviewed_at,
            ga.c.correct,
        ).where(ga.c.verdict.is_not(None))
        parts = [
            _window(reviews, rv.c.reviewed_at, since, until),
            _window(seconds, sr.c.reviewed_at, since, until),
            _window(golds, ga.c.reviewed_at, since, until),
        ]
        with self._read_engine.connect() as conn:
            rows = conn.execute(union_all(*parts)).all()
        frame = pd.DataFrame([tuple(row) for row in rows], columns=VERDICT_COLUMNS)
        gold = zip(frame["kind"], frame["correct"], strict=True)
        frame["correct"] = [bool(correct) if kind == "gold" else None for kind, correct in gold]
        return frame.sort_values(["reviewed_at", "reviewer"], kind="stable").reset_index(drop=True)

    def amended_verdicts(self, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
        """First verdicts given in [since, until) that were later amended: the reviewer, their verdict, the
        verdict in force (the latest correction) and who amended it last."""
        latest = select(rc.c.decision_id, func.max(rc.c.id).label("id")).group_by(rc.c.decision_id).subquery()
        query = (
            select(rv.c.reviewer, rv.c.verdict, rc.c.verdict.label("verdict_in_force"), rc.c.corrected_by)
            .join_from(rv, latest, latest.c.decision_id == rv.c.decision_id)
            .join(rc, rc.c.id == latest.c.id)
        )
        with self._read_engine.connect() as conn:
            rows = conn.execute(_window(query, rv.c.reviewed_at, since, until)).all()
        return pd.DataFrame([tuple(row) for row in rows], columns=AMENDED_COLUMNS)

    def second_review_pairs(self, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
        """First and second verdicts of every item second-reviewed in [since, until)."""
        with self._read_engine.connect() as conn:
            return read_pairs(conn, since, until)

    def gold_answers(self, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
        """Answered gold assignments with the expected verdict, in [since, until)."""
        with self._read_engine.connect() as conn:
            return read_gold_answers(conn, since, until)

    def oldest_pending_age_seconds(self, lane: str) -> float | None:
        """Seconds since the oldest item of `lane` waiting to be claimed (pending, or its lease expired) was
        queued; None if none waits."""
        now = self._clock()
        in_lane = or_(q.c.lane == "review", q.c.lane.is_(None)) if lane == "review" else q.c.lane == lane
        waiting = or_(q.c.status == "pending", and_(q.c.status == "claimed", q.c.lease_expires_at <= now))
        query = select(func.min(q.c.enqueued_at)).where(waiting, in_lane)
        with self._read_engine.connect() as conn:
            oldest = conn.execute(query).scalar()
        return None if oldest is None else max(0.0, (now - oldest).total_seconds())

    def reviewer_teams(self) -> dict[str, str]:
        """Key name -> team, for keys that have one."""
        keys = schema.api_keys
        with self._read_engine.connect() as conn:
            rows = conn.execute(select(keys.c.name, keys.c.team).where(keys.c.team.is_not(None))).all()
        return {str(name): str(team) for name, team in rows}


def read_pairs(conn: Connection, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
    query = select(
        sr.c.decision_id,
        rv.c.reviewer.label("first_reviewer"),
        rv.c.verdict.label("first_verdict"),
        sr.c.reviewer.label("second_reviewer"),
        sr.c.verdict.label("second_verdict"),
        sr.c.reviewed_at,
    ).join_from(sr, rv, sr.c.decision_id == rv.c.decision_id)
    rows = conn.execute(_window(query, sr.c.reviewed_at, since, until).order_by(sr.c.reviewed_at)).all()
    return pd.DataFrame([tuple(row) for row in rows], columns=PAIR_COLUMNS)


def read_gold_answers(conn: Connection, since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
    query = (
        select(ga.c.gold_id, ga.c.reviewer, ga.c.verdict, g.c.expected_verdict, ga.c.correct, ga.c.reviewed_at)
        .join_from(ga, g, ga.c.gold_id == g.c.gold_id)
        .where(ga.c.verdict.is_not(None))
    )
    rows = conn.execute(_window(query, ga.c.reviewed_at, since, until).order_by(ga.c.reviewed_at)).all()
    return pd.DataFrame([tuple(row) for row in rows], columns=GOLD_COLUMNS)


def two_verdict_labels(conn: Connection) -> dict[str, tuple[float, bool, str | None]]:
    """(P(violation), agreed, the second reviewer's violation reason) of every second-reviewed decision
    (`decision.reviewer_stats.resolved_labels`)."""
    resolved = resolved_labels(read_pairs(conn), read_gold_answers(conn))
    reasons = dict(conn.execute(select(sr.c.decision_id, sr.c.violation_reason)).tuples().all())
    return {decision_id: (p, agreed, reasons.get(decision_id)) for decision_id, (p, agreed) in resolved.items()}


def with_label_sources(
    frame: pd.DataFrame, resolved: dict[str, tuple[float, bool, str | None]], config: DataConfig
) -> pd.DataFrame:
    """Exported labels with `label_source`: 'first_verdict' (one verdict, the one in force), 'agreed' (a
    blind second review gave the same verdict), 'dawid_skene' (the two verdicts differ: the label is the
    Dawid-Skene posterior rounded, > 1/2 a violation) or 'correction' (a person amended the verdict: the
    correction is the label, whatever the two verdicts were).

    Where the resolution turns the first verdict around, the violation reason follows the label: the
    second reviewer's reason for a violation, none for an approval."""
    if frame.empty:
        return frame.assign(label_source=pd.Series(dtype="object"))
    found = frame["decision_id"].map(resolved)
    corrected = frame["corrected"].astype(bool) if "corrected" in frame else pd.Series(False, index=frame.index)
    second = found.notna() & ~corrected
    posterior = found.map(lambda value: value[0], na_action="ignore")
    agreed = found.map(lambda value: value[1], na_action="ignore").fillna(False).astype(bool)
    source = np.where(second & ~agreed, "dawid_skene", np.where(second, "agreed", "first_verdict"))
    source = np.where(corrected, "correction", source)
    labels = frame[config.label].where(~second, (posterior > 0.5).astype("int64")).astype("int64")
    columns: dict[str, Any] = {config.label: labels, "label_source": source}
    if config.violation_reason and config.violation_reason in frame:
        turned = labels != frame[config.label]
        second_reason = found.map(lambda value: value[2], na_action="ignore")
        reason = frame[config.violation_reason].where(~(turned & (labels == 0)), None)
        columns[config.violation_reason] = reason.where(~(turned & (labels == 1)), second_reason)
    return frame.assign(**columns)


def _window(
    query: Select[Any], column: ColumnElement[datetime], since: datetime | None, until: datetime | None
) -> Select[Any]:
    if since is not None:
        query = query.where(column >= since)
    if until is not None:
        query = query.where(column < until)
    return query
