"""PostgreSQL fast path for the decision log.

The hot write of the service. Through SQLAlchemy, a group of decisions cost about 400 µs of CPU a row in
the process (statement compilation, per-value type processing, the result rows); here a group goes in as
one multi-row `INSERT ... ON CONFLICT DO NOTHING RETURNING decision_id` on the driver's raw cursor
(PostgreSQL's $n placeholders, so psycopg does not parse the statement), in the caller's transaction: one
round trip for the decisions and one for the queue rows. psycopg binds the
values server-side and prepares a statement once it has run a few times; the statement text for n rows is
cached, so groups of the same size reuse one prepared statement. Values are bound exactly as the schema's
types bind them (UTCDateTime, JSONText), so both paths store the same values; a test compares them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from typing import Any, cast

import psycopg
from sqlalchemy import Connection, Table

from serving.store import schema
from serving.store.records import DecisionRecord
from serving.store.sqlite_decisions import DECISION_ROW_ORDER, QUEUE_ROW_ORDER, decision_values

d, q = schema.decisions, schema.queue

_MAX_PARAMS = 32_767  # well under PostgreSQL's 65,535 bind parameters a statement


class _PostgresInsert:
    """Multi-row INSERT statements into one table, one cached statement text per row count."""

    def __init__(self, table: Table, suffix: str = "") -> None:
        self.columns = tuple(c.name for c in table.columns)
        self._head = f"INSERT INTO {table.name} ({', '.join(self.columns)}) VALUES "
        self._suffix = suffix
        self.rows_per_statement = _MAX_PARAMS // len(self.columns)
        self.statement = lru_cache(maxsize=128)(self._statement)

    def _statement(self, n_rows: int) -> str:
        """The INSERT of n_rows rows with PostgreSQL's own placeholders ($1, $2, ...), for a `RawCursor`:
        psycopg parses a statement's %s placeholders on every run once it is longer than 4,096 bytes (its
        cache's limit), which for a group of decisions cost about as much CPU as the rest of the write."""
        width = len(self.columns)
        rows = (
            "(" + ", ".join(f"${row * width + column + 1}" for column in range(width)) + ")" for row in range(n_rows)
        )
        return self._head + ", ".join(rows) + self._suffix

    def run(self, cursor: psycopg.RawCursor[Any], rows: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Insert rows (tuples in `columns` order); the RETURNING values of the rows that went in."""
        returned: list[Any] = []
        for start in range(0, len(rows), self.rows_per_statement):
            chunk = rows[start : start + self.rows_per_statement]
            cursor.execute(self.statement(len(chunk)), list(chain.from_iterable(chunk)))
            if cursor.description is not None:
                returned += [row[0] for row in cursor.fetchall()]
        return returned


_DECISIONS = _PostgresInsert(d, " ON CONFLICT DO NOTHING RETURNING decision_id")
_QUEUE = _PostgresInsert(q)
if _DECISIONS.columns != DECISION_ROW_ORDER:
    raise RuntimeError("schema.decisions changed: update _decision_row to the new columns")
if _QUEUE.columns != QUEUE_ROW_ORDER:
    raise RuntimeError("schema.queue changed: update the queue rows of postgres_insert_new to the new columns")


def postgres_insert_new(conn: Connection, fresh: list[DecisionRecord], now: datetime) -> set[str]:
    """`DecisionLog._insert_new` for PostgreSQL: the decisions that are new go in (and onto the queue);
    returns their ids. Rows colliding with stored decisions (retries) are left as they are."""
    cursor = psycopg.RawCursor(cast(psycopg.Connection[Any], conn.connection.driver_connection))
    try:
        inserted = set(_DECISIONS.run(cursor, [_decision_row(r) for r in fresh]))
        enqueued_at = _utc(now)
        queued = [
            (r.decision_id, r.priority, enqueued_at, "pending", None, None, bool(r.qa_sample), r.lane, None, None)
            for r in fresh
            if r.queued and r.decision_id in inserted
        ]
        if queued:
            _QUEUE.run(cursor, queued)
    finally:
        cursor.close()
    return inserted


def _decision_row(r: DecisionRecord) -> tuple[Any, ...]:
    return decision_values(r, _utc, bool)


def _utc(value: datetime) -> datetime:
    """`UTCDateTime`'s binding: aware datetimes only, converted to UTC."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
    return value.astimezone(UTC)
