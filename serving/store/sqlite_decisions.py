"""SQLite fast path for the decision log.

The hot write of the service. SQLAlchemy's multi-row INSERT ... RETURNING with per-value type
processing cost ~80 us a row; prepared statements run on the writer's own connection (inside the
same group-commit transaction) cost a fraction. A batch's rows go in by one multi-row INSERT (up to
`_SQLITE_MAX_ROWS` rows each): one statement execution rather than one per row (and on databases
whose CHECKs still use IN lists, one build of their lookup tables). Values are bound exactly as the
schema's types bind them (UTCDateTime, JSONText, Boolean), so both paths store the same bytes; a test
compares them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from typing import Any, cast

import orjson
from sqlalchemy import Connection, Table

from serving.store import schema
from serving.store.records import DecisionRecord

d, q = schema.decisions, schema.queue

_SQLITE_MAX_ROWS = 1000  # rows per INSERT (a batch in one statement; the parameter limit may lower it)


class _SQLiteInsert:
    """Multi-row INSERT statements into one table: a batch goes in as one statement of its own size.

    One statement rather than several matters on a busy service: the driver lets go of the GIL while
    SQLite runs each statement, and getting it back waits on the scoring threads' switch interval.
    """

    def __init__(self, table: Table, suffix: str = "") -> None:
        self.columns = tuple(c.name for c in table.columns)
        self._head = f"INSERT INTO {table.name} ({', '.join(self.columns)}) VALUES "
        self._values = f"({', '.join('?' for _ in self.columns)})"
        self._suffix = suffix
        self.statement = lru_cache(maxsize=64)(self._statement)

    def _statement(self, n_rows: int) -> str:
        """The INSERT of n_rows rows (the same string object while cached, so the driver's cache hits)."""
        return self._head + ", ".join([self._values] * n_rows) + self._suffix

    def run(self, cursor: sqlite3.Cursor, rows: Sequence[tuple[Any, ...]]) -> int:
        """Insert rows (tuples in `columns` order); return how many went in."""
        max_params = cursor.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
        size = max(1, min(_SQLITE_MAX_ROWS, max_params // len(self.columns)))
        inserted = 0
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            cursor.execute(self.statement(len(chunk)), list(chain.from_iterable(chunk)))
            inserted += cursor.rowcount
        return inserted


_SQLITE_DECISIONS = _SQLiteInsert(d, " ON CONFLICT DO NOTHING")
_SQLITE_QUEUE = _SQLiteInsert(q)
# The order the fast writers (`_sqlite_decision_row` here, `_decision_row` for PostgreSQL) write a decision's and a
# queue item's values in; checked against the schema at import.
DECISION_ROW_ORDER = (
    "decision_id", "request_id", "listing_id", "received_at", "decided_at", "decision", "automated", "risk",
    "model_version", "policy_version", "t_pass", "t_block", "priority", "rules_matched", "reasons", "qa_sample",
    "would_have_been", "fallback_reason", "statement_of_reasons", "listing", "key_id", "request_hash",
    "tier_risk", "decision_tier", "inclusion_prob", "rules_shadow", "model_decision",
)  # fmt: skip
if _SQLITE_DECISIONS.columns != DECISION_ROW_ORDER:
    raise RuntimeError("schema.decisions changed: update _sqlite_decision_row to the new columns")
QUEUE_ROW_ORDER = (
    "decision_id", "priority", "enqueued_at", "status", "claimed_by", "lease_expires_at", "qa_sample", "lane",
    "first_reviewer", "second_review_rate",
)  # fmt: skip
if _SQLITE_QUEUE.columns != QUEUE_ROW_ORDER:
    raise RuntimeError("schema.queue changed: update the queue rows of sqlite_insert_new to the new columns")
_SQLITE_ID_OF_REQUEST = f"SELECT decision_id FROM {d.name} WHERE key_id = ? AND listing_id = ? AND request_id = ?"


def sqlite_insert_new(conn: Connection, fresh: list[DecisionRecord], now: datetime) -> set[str]:
    """`DecisionLog._insert_new` for SQLite: prepared INSERT ... ON CONFLICT DO NOTHING statements over all rows.

    If every row went in (the usual case) that is all; if some collided with stored decisions (retries),
    the batch is rolled back to a savepoint and inserted row by row to learn which ones are new.
    """
    times: dict[datetime, str] = {}
    params = [_sqlite_decision_row(r, times) for r in fresh]
    cursor = _sqlite_cursor(conn)
    try:
        cursor.execute("SAVEPOINT triage_insert_decisions")
        if _SQLITE_DECISIONS.run(cursor, params) == len(fresh):
            inserted = {r.decision_id for r in fresh}
        else:
            cursor.execute("ROLLBACK TO triage_insert_decisions")
            inserted = set()
            one_row = _SQLITE_DECISIONS.statement(1)
            for record, row in zip(fresh, params, strict=True):
                cursor.execute(one_row, row)
                if cursor.rowcount == 1:
                    inserted.add(record.decision_id)
        enqueued_at = _sqlite_time(now, times)
        queued = [
            (r.decision_id, r.priority, enqueued_at, "pending", None, None, int(r.qa_sample), r.lane, None, None)
            for r in fresh
            if r.queued and r.decision_id in inserted
        ]
        _SQLITE_QUEUE.run(cursor, queued)
        cursor.execute("RELEASE triage_insert_decisions")
    finally:
        cursor.close()
    return inserted


def sqlite_ids_of_requests(conn: Connection, requests: list[tuple[str, str, str]]) -> list[str]:
    """The decision ids stored under these (key_id, listing_id, request_id) requests, one index lookup each."""
    cursor = _sqlite_cursor(conn)
    try:
        found = (cursor.execute(_SQLITE_ID_OF_REQUEST, request).fetchone() for request in requests)
        return [row[0] for row in found if row is not None]
    finally:
        cursor.close()


def _sqlite_cursor(conn: Connection) -> sqlite3.Cursor:
    """A driver cursor on the connection's own transaction."""
    return cast(sqlite3.Cursor, conn.connection.driver_connection.cursor())  # type: ignore[union-attr]


_dumps, _JSON_OPTIONS = orjson.dumps, schema.JSON_OPTIONS  # how JSONText encodes


def decision_values(r: DecisionRecord, time: Callable[[datetime], Any], flag: Callable[[bool], Any]) -> tuple[Any, ...]:
    """A record's values in `DECISION_ROW_ORDER`, bound as the schema's column types bind them: times and
    flags by the dialect's `time` and `flag`, JSON columns as `JSONText` encodes them."""
    return (
        r.decision_id,
        r.request_id,
        r.listing_id,
        time(r.received_at),
        time(r.decided_at),
        r.decision,
        flag(r.automated),
        r.risk,
        r.model_version,
        r.policy_version,
        r.t_pass,
        r.t_block,
        r.priority,
        json_text(r.rules_matched),
        json_text(r.reasons),
        flag(r.qa_sample),
        r.would_have_been,
        r.fallback_reason,
        json_text(r.statement_of_reasons),
        json_text(r.listing),
        r.key_id,
        r.request_hash,
        json_text(r.tier_risk),
        r.decision_tier,
        r.inclusion_prob,
        json_text(r.rules_shadow),
        r.model_decision,
    )


def json_text(value: Any) -> str | None:
    return None if value is None else _dumps(value, option=_JSON_OPTIONS).decode()


def _sqlite_decision_row(r: DecisionRecord, times: dict[datetime, str]) -> tuple[Any, ...]:
    return decision_values(r, lambda value: _sqlite_time(value, times), int)


def _sqlite_time(value: datetime, memo: dict[datetime, str]) -> str:
    """`UTCDateTime` as SQLite stores it (SQLAlchemy's DATETIME format, UTC without offset)."""
    text_value = memo.get(value)
    if text_value is None:
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware (UTC) datetime")
        utc = value.astimezone(UTC)
        text_value = memo[value] = (
            f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d} "
            f"{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}.{utc.microsecond:06d}"
        )
    return text_value
