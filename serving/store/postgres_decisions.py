"""PostgreSQL fast path for the decision log.

The hot write of the service. Through SQLAlchemy, a group of decisions cost about 400 µs of CPU a row in
the process (statement compilation, per-value type processing, the result rows); here a group goes in as
one statement on the driver's raw cursor (PostgreSQL's $n placeholders, so psycopg does not parse it), in
the caller's transaction: a multi-row `INSERT ... ON CONFLICT DO NOTHING RETURNING` into the decisions
whose returned rows, the decisions that went in, are queued by a second INSERT in the same statement (a
data-modifying WITH), so a group costs one round trip. psycopg binds the values server-side and prepares a
statement once it has run a few times; the statement text for n rows is cached, so groups of the same
size reuse one prepared statement. Values are bound exactly as the schema's types bind them (UTCDateTime,
JSONText), so both paths store the same values; a test compares them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from typing import Any, cast

import psycopg
from sqlalchemy import Connection

from serving.store import schema
from serving.store.records import DecisionRecord
from serving.store.sqlite_decisions import DECISION_ROW_ORDER, QUEUE_ROW_ORDER, decision_values

d, q = schema.decisions, schema.queue

_MAX_PARAMS = 32_767  # well under PostgreSQL's 65,535 bind parameters a statement

# A queue row of an inserted decision, column by column, over the INSERT's returned row `inserted`: the SQL of
# `DecisionRecord.queued` and `.lane` (a test checks them against the properties for every decision and
# qa_sample); $1 is the time the group is enqueued.
_QUEUED = "inserted.decision = 'human_review' OR inserted.qa_sample"
_QUEUE_ROW = {
    "decision_id": "inserted.decision_id",
    "priority": "inserted.priority",
    "enqueued_at": "$1::timestamptz",
    "status": "'pending'",
    "claimed_by": "NULL",
    "lease_expires_at": "NULL",
    "qa_sample": "inserted.qa_sample",
    "lane": "CASE WHEN inserted.qa_sample AND inserted.decision <> 'human_review' THEN 'audit' ELSE 'review' END",
    "first_reviewer": "NULL",
    "second_review_rate": "NULL",
}
if tuple(_QUEUE_ROW) != QUEUE_ROW_ORDER:
    raise RuntimeError("schema.queue changed: update _QUEUE_ROW to the new columns")


class _DecisionInsert:
    """The statement that inserts n decisions and queues those that went in; one cached text per n."""

    def __init__(self) -> None:
        self.rows_per_statement = (_MAX_PARAMS - 1) // len(DECISION_ROW_ORDER)
        self.statement = lru_cache(maxsize=128)(self._statement)

    @staticmethod
    def _statement(n_rows: int) -> str:
        """PostgreSQL's own placeholders ($1, $2, ...), for a `RawCursor`: psycopg parses a statement's %s
        placeholders on every run once it is longer than 4,096 bytes (its cache's limit), which for a group
        of decisions cost about as much CPU as the rest of the write."""
        width = len(DECISION_ROW_ORDER)
        rows = ", ".join(
            "(" + ", ".join(f"${2 + row * width + column}" for column in range(width)) + ")" for row in range(n_rows)
        )
        return (
            f"WITH inserted AS (INSERT INTO {d.name} ({', '.join(DECISION_ROW_ORDER)}) VALUES {rows}"
            " ON CONFLICT DO NOTHING RETURNING decision_id, priority, qa_sample, decision),"
            f" queued AS (INSERT INTO {q.name} ({', '.join(_QUEUE_ROW)})"
            f" SELECT {', '.join(_QUEUE_ROW.values())} FROM inserted WHERE {_QUEUED})"
            " SELECT decision_id FROM inserted"
        )

    def run(self, cursor: psycopg.RawCursor[Any], rows: Sequence[tuple[Any, ...]], enqueued_at: datetime) -> set[str]:
        """Insert rows (tuples in `DECISION_ROW_ORDER`), queue those inserted; the ids of the rows inserted."""
        inserted: set[str] = set()
        for start in range(0, len(rows), self.rows_per_statement):
            chunk = rows[start : start + self.rows_per_statement]
            cursor.execute(self.statement(len(chunk)), [enqueued_at, *chain.from_iterable(chunk)])
            inserted.update(row[0] for row in cursor.fetchall())
        return inserted


_DECISIONS = _DecisionInsert()


def postgres_insert_new(conn: Connection, fresh: list[DecisionRecord], now: datetime) -> set[str]:
    """`DecisionLog._insert_new` for PostgreSQL: the decisions that are new go in (and onto the queue);
    returns their ids. Rows colliding with stored decisions (retries) are left as they are."""
    cursor = psycopg.RawCursor(cast(psycopg.Connection[Any], conn.connection.driver_connection))
    try:
        return _DECISIONS.run(cursor, [_decision_row(r) for r in fresh], _utc(now))
    finally:
        cursor.close()


def _decision_row(r: DecisionRecord) -> tuple[Any, ...]:
    return decision_values(r, _utc, bool)


def _utc(value: datetime) -> datetime:
    """`UTCDateTime`'s binding: aware datetimes only, converted to UTC."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
    return value.astimezone(UTC)
