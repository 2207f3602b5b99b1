"""PostgreSQL fast path for the decision log.

The hot write of the service. Through SQLAlchemy, a group of decisions cost about 400 µs of CPU a row in
the process (statement compilation, per-value type processing, the result rows); here a group goes in as
one `INSERT ... SELECT * FROM unnest(<one array per column>) ON CONFLICT DO NOTHING RETURNING
decision_id` on the driver's cursor, in the caller's transaction: one round trip for the decisions and
one for the queue rows. The statement text is the same whatever the group's size, so psycopg converts it
once and prepares it once (a multi-row VALUES list was a new text per size, too long for psycopg's query
cache: converting it cost about a sixth of the writer thread's time). The arrays go as text, timestamptz,
boolean and float8 arrays and the INSERT assigns them to the columns' own types, so a value too long for
its column fails as it would one row at a time. Values are bound exactly as the schema's types bind them
(UTCDateTime, JSONText), so both paths store the same values; a test compares them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, cast

import psycopg
from sqlalchemy import Boolean, Connection, DateTime, Float, String, Table

from serving.store import schema
from serving.store.records import DecisionRecord
from serving.store.sqlite_decisions import DECISION_ROW_ORDER, QUEUE_ROW_ORDER, decision_values

d, q = schema.decisions, schema.queue


def _array_type(column: Any) -> tuple[str, Any]:
    """(the array type a column's values are sent as, the Python type each value is made) for a column."""
    kind = getattr(column.type, "impl", column.type)
    if isinstance(kind, Boolean):
        return "boolean[]", bool
    if isinstance(kind, Float):
        return "float8[]", float  # an int in a float column (a priority of 1) must not make an int array
    if isinstance(kind, DateTime):
        return "timestamptz[]", None
    if isinstance(kind, String):  # VARCHAR(n) and TEXT: the INSERT's assignment checks the length
        return "text[]", None
    raise TypeError(f"{column.table.name}.{column.name}: no array type for {kind!r}")


class _PostgresInsert:
    """One INSERT of any number of rows into one table: a column's values as one array parameter."""

    def __init__(self, table: Table, suffix: str = "") -> None:
        self.columns = tuple(c.name for c in table.columns)
        types = [_array_type(c) for c in table.columns]
        self._coerce = [make for _, make in types]
        arrays = ", ".join(f"%s::{array}" for array, _ in types)
        self.statement = f"INSERT INTO {table.name} ({', '.join(self.columns)}) SELECT * FROM unnest({arrays}){suffix}"

    def run(self, cursor: psycopg.Cursor[Any], rows: Sequence[tuple[Any, ...]]) -> list[Any]:
        """Insert rows (tuples in `columns` order); the RETURNING values of the rows that went in."""
        if not rows:
            return []
        arrays = [
            list(values) if make is None else [None if v is None else make(v) for v in values]
            for values, make in zip(zip(*rows, strict=True), self._coerce, strict=True)
        ]
        cursor.execute(self.statement, arrays)
        return [row[0] for row in cursor.fetchall()] if cursor.description is not None else []


_DECISIONS = _PostgresInsert(d, " ON CONFLICT DO NOTHING RETURNING decision_id")
_QUEUE = _PostgresInsert(q)
if _DECISIONS.columns != DECISION_ROW_ORDER:
    raise RuntimeError("schema.decisions changed: update _decision_row to the new columns")
if _QUEUE.columns != QUEUE_ROW_ORDER:
    raise RuntimeError("schema.queue changed: update the queue rows of postgres_insert_new to the new columns")


def postgres_insert_new(conn: Connection, fresh: list[DecisionRecord], now: datetime) -> set[str]:
    """`DecisionLog._insert_new` for PostgreSQL: the decisions that are new go in (and onto the queue);
    returns their ids. Rows colliding with stored decisions (retries) are left as they are."""
    cursor = cast(psycopg.Connection[Any], conn.connection.driver_connection).cursor()
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
