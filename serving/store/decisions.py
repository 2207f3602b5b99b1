"""The decision log: every decision stored durably (and queued for review where it goes to a person)
before it is acknowledged, idempotent per (key_id, listing_id, request_id)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Insert, Row, func, insert, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite

from serving.store import schema
from serving.store.database import Database
from serving.store.postgres_decisions import postgres_insert_new
from serving.store.records import ConflictError, DecisionRecord, StoreClosedError
from serving.store.sqlite_decisions import sqlite_ids_of_requests, sqlite_insert_new

_Key = tuple[str, str, str, str]

_DECISION_FIELDS = tuple(f.name for f in fields(DecisionRecord))
_KEY_CHUNK = 500

d, q = schema.decisions, schema.queue


class DecisionLog(Database):
    """Writing and reading decisions."""

    def record_decisions(self, rows: Sequence[DecisionRecord]) -> list[DecisionRecord]:
        """Durably store decisions (and queue the ones for review) before returning them as stored.

        Idempotent per (key_id, listing_id, request_id): a retry returns the decision stored the first
        time (with that request's `request_hash`). A request_id first logged with another `request_hash`
        raises ConflictError and nothing of the call is logged.
        """
        if not rows:
            return []
        if self._decision_writer is not None:
            return self._decision_writer.submit_many(self._insert_decisions, rows, idempotent=True)
        return self._write(lambda conn: self._insert_decisions(conn, rows))

    def submit_decisions(self, rows: Sequence[DecisionRecord]) -> Future[list[DecisionRecord]] | None:
        """`record_decisions` without blocking a thread: a Future that resolves once the rows are
        committed (for an event loop to await). None when there is no group-commit writer."""
        if self._decision_writer is None:
            return None
        if self._closed:
            raise StoreClosedError("store is closed")
        return self._decision_writer.submit_many_nowait(self._insert_decisions, rows, idempotent=True)

    def get_decision(self, decision_id: str) -> DecisionRecord | None:
        with self._read_engine.connect() as conn:
            row = conn.execute(select(d).where(d.c.decision_id == decision_id)).first()
        return None if row is None else decision_record(row)

    def find_decision(self, listing_id: str, request_id: str, key_id: str = "") -> DecisionRecord | None:
        """The decision already stored for this request of this key, if any (lets a retry skip scoring)."""
        query = select(d).where(d.c.key_id == key_id, d.c.listing_id == listing_id, d.c.request_id == request_id)
        with self._read_engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else decision_record(row)

    def count_decisions(self) -> int:
        with self._read_engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(d)).scalar_one())

    def iter_decisions(self, since: datetime | None = None, page_size: int = 1000) -> Iterator[DecisionRecord]:
        """Every decision with decided_at >= since, oldest first, read page by page (for audits)."""
        after: tuple[datetime, str] | None = None
        while True:
            query = select(d).order_by(d.c.decided_at, d.c.decision_id).limit(page_size)
            if since is not None:
                query = query.where(d.c.decided_at >= since)
            if after is not None:
                query = query.where(tuple_(d.c.decided_at, d.c.decision_id) > tuple_(*after))
            with self._read_engine.connect() as conn:
                page = [decision_record(row) for row in conn.execute(query)]
            yield from page
            if len(page) < page_size:
                return
            after = (page[-1].decided_at, page[-1].decision_id)

    def decisions_since(self, since: datetime | None = None, limit: int = 1000) -> list[DecisionRecord]:
        """Up to `limit` decisions with decided_at >= since, oldest first."""
        records: list[DecisionRecord] = []
        for record in self.iter_decisions(since, page_size=min(limit, 1000)):
            records.append(record)
            if len(records) >= limit:
                break
        return records

    def _insert_ignoring_conflicts(self) -> Insert:
        if self.dialect == "postgresql":
            return postgresql.insert(d).on_conflict_do_nothing()
        return sqlite.insert(d).on_conflict_do_nothing()

    def _insert_decisions(self, conn: Connection, rows: Sequence[DecisionRecord]) -> list[DecisionRecord]:
        keys = [_key(record) for record in rows]
        first_of_key: dict[_Key, DecisionRecord] = {}
        for key, record in zip(keys, rows, strict=True):
            first = first_of_key.setdefault(key, record)
            if first.request_hash is not None and record.request_hash not in (None, first.request_hash):
                # two bodies under one request_id in one write (callers merged by the group-commit writer,
                # which then runs them one at a time, so only the later one is refused)
                raise ConflictError(f"listing {record.listing_id!r} was decided under this key with a different body")
        fresh = list(first_of_key.values())
        now = self._clock()
        if self.dialect == "sqlite":  # one writer at a time: the insertion order cannot deadlock
            inserted = sqlite_insert_new(conn, fresh, now)
        else:
            # a fixed insertion order keeps concurrent PostgreSQL batches from deadlocking on the unique key
            fresh.sort(key=lambda r: (r.key_id, r.listing_id, r.request_id or "", r.decision_id))
            inserted = postgres_insert_new(conn, fresh, now)
        existing = self._stored_for_retries(conn, [r for r in fresh if r.decision_id not in inserted])
        _refuse_other_bodies(fresh, existing)  # before the write commits: a refused request logs nothing
        stored = []
        for key in keys:
            first = first_of_key[key]
            stored.append(first if first.decision_id in inserted else existing[key])
        return stored

    def _insert_new(self, conn: Connection, fresh: list[DecisionRecord], now: datetime) -> set[str]:
        """Insert the decisions that are new (and queue them); return their ids (SQLAlchemy, any database)."""
        statement = self._insert_ignoring_conflicts().returning(d.c.decision_id)
        inserted = set(conn.execute(statement, [_decision_params(r) for r in fresh]).scalars())
        queued = [_queue_params(r, now) for r in fresh if r.decision_id in inserted and r.queued]
        if queued:
            conn.execute(insert(q), queued)
        return inserted

    def _stored_for_retries(self, conn: Connection, retried: list[DecisionRecord]) -> dict[_Key, DecisionRecord]:
        """The stored decisions that records which were not inserted collided with."""
        found: dict[_Key, DecisionRecord] = {}
        requests = [(r.key_id, r.listing_id, r.request_id) for r in retried if r.request_id is not None]
        for row in self._stored_for_requests(conn, requests):
            stored = decision_record(row)
            found[_key(stored)] = stored
        for record in retried:
            if record.request_id is None:  # this decision_id is stored already: a retry of the same decision
                same_id = conn.execute(select(d).where(d.c.decision_id == record.decision_id)).first()
                if same_id is not None and same_id.listing_id == record.listing_id:
                    found[_key(record)] = decision_record(same_id)
            if _key(record) not in found:
                raise ConflictError(f"decision_id {record.decision_id} is already used by another decision")
        return found

    def _stored_for_requests(self, conn: Connection, requests: list[tuple[str, str, str]]) -> Iterator[Row[Any]]:
        """The stored decisions of these (key_id, listing_id, request_id) requests."""
        if self.dialect == "sqlite":
            # SQLite scans the whole table for a row-value IN list: find each request through the
            # unique index instead, then read the rows by primary key
            ids = sqlite_ids_of_requests(conn, requests)
            for start in range(0, len(ids), _KEY_CHUNK):
                yield from conn.execute(select(d).where(d.c.decision_id.in_(ids[start : start + _KEY_CHUNK])))
            return
        for start in range(0, len(requests), _KEY_CHUNK):
            condition = tuple_(d.c.key_id, d.c.listing_id, d.c.request_id).in_(requests[start : start + _KEY_CHUNK])
            yield from conn.execute(select(d).where(condition))


def _refuse_other_bodies(fresh: Sequence[DecisionRecord], existing: dict[_Key, DecisionRecord]) -> None:
    """ConflictError (the transaction rolls back) when a request_id of this key was first logged with
    another body (decisions logged before bodies were hashed have no hash: taken as retries). Checked
    here, in the write, so that a batch resent with a listing added does not log that listing's decision
    before the API refuses the request with 409."""
    for record in fresh:
        stored = existing.get(_key(record))
        if stored is None or stored.decision_id == record.decision_id:
            continue
        if stored.request_hash is not None and stored.request_hash != record.request_hash:
            raise ConflictError(f"listing {record.listing_id!r} was decided under this key with a different body")


def _key(record: DecisionRecord) -> _Key:
    """What makes two records the same decision: (key_id, listing_id, request_id), else the decision_id."""
    if record.request_id is not None:
        return ("request", record.key_id, record.listing_id, record.request_id)
    return ("decision", record.decision_id, "", "")


def _decision_params(record: DecisionRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in _DECISION_FIELDS}


def _queue_params(record: DecisionRecord, now: datetime) -> dict[str, Any]:
    return {
        "decision_id": record.decision_id,
        "priority": record.priority,
        "enqueued_at": now,
        "status": "pending",
        "claimed_by": None,
        "lease_expires_at": None,
        "qa_sample": record.qa_sample,
        "lane": record.lane,
    }


def decision_record(row: Row[Any]) -> DecisionRecord:
    """A stored row of the decisions table (or of a join that has its columns) as a DecisionRecord."""
    mapping = row._mapping
    record = DecisionRecord(**{name: mapping[name] for name in _DECISION_FIELDS})
    record.key_id = record.key_id or ""  # NULL in rows logged before request ids were scoped per key
    record.rules_shadow = record.rules_shadow or []  # NULL in rows logged before shadow rules
    return record
