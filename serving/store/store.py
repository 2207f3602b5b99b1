"""The decision log, review queue, API keys and policy audit over one SQLAlchemy Core schema.

SQLite (the embedded default) runs in WAL mode with synchronous=FULL; every write goes through one
group-commit writer thread, so concurrent requests share a transaction and an fsync. PostgreSQL uses a
connection pool and row locks (`FOR UPDATE SKIP LOCKED`) instead. Every write is committed before the
call returns.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from itertools import chain
from pathlib import Path
from typing import Any, TypeVar, cast

import orjson
import pandas as pd
from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Insert,
    Row,
    Table,
    and_,
    create_engine,
    event,
    func,
    insert,
    inspect,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError

from features.config import DataConfig
from serving.store import schema
from serving.store.labels import labelled_outcome, labels_frame
from serving.store.records import (
    VERDICTS,
    ApiKey,
    ConflictError,
    DecisionRecord,
    NotFoundError,
    PolicyChange,
    QueueItem,
    Review,
    StoreClosedError,
    Verdict,
    utcnow,
)
from serving.store.writer import GroupCommitWriter

logger = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], datetime]
_Key = tuple[str, str, str]

_DECISION_FIELDS = tuple(f.name for f in fields(DecisionRecord))
_TRANSIENT_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock
_WRITE_ATTEMPTS = 4
_SCHEMA_LOCK_ID = 0x7472696167  # pg advisory lock taken while creating the schema
_KEY_CHUNK = 500

d, q, rv = schema.decisions, schema.queue, schema.reviews


class Store:
    """Durable storage of the scoring service. Thread-safe; create one per process (`create_store`)."""

    def __init__(
        self,
        url: str | URL,
        *,
        group_commit: bool | None = None,
        group_commit_ms: float = 2.0,
        pool_size: int = 8,
        clock: Clock = utcnow,
    ) -> None:
        self.url = make_url(url)
        self.dialect = self.url.get_backend_name()
        self._clock = clock
        self._closed = False
        if group_commit is None:  # SQLite has one writer anyway; PostgreSQL gains ~2x but serialises a process
            group_commit = self.dialect == "sqlite"
        if self.dialect == "sqlite":
            self._write_engine, self._read_engine = _sqlite_engines(self.url, group_commit, pool_size)
        elif self.dialect == "postgresql":
            engine = create_engine(self.url, pool_size=pool_size, max_overflow=2 * pool_size, pool_pre_ping=True)
            self._write_engine = self._read_engine = engine
        else:
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite or postgresql")
        self._writer = GroupCommitWriter(self._write_engine, group_commit_ms / 1000) if group_commit else None

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def init_schema(self) -> None:
        """Create the tables if missing (safe to call from several processes at once).

        Existing tables keep their indexes and constraints: a log created by an earlier release keeps
        its table-wide UNIQUE (listing_id, request_id), which enforces the rule of the partial unique index.
        """
        self._write(self._create_schema)
        logger.info("schema ready on %s", self.url.render_as_string(hide_password=True))

    def close(self) -> None:
        """Finish queued writes, then release every connection."""
        if self._closed:
            return
        self._closed = True
        if self._writer is not None:
            self._writer.close()
        self._write_engine.dispose()
        self._read_engine.dispose()

    # -- decisions ------------------------------------------------------------------------------

    def record_decisions(self, rows: Sequence[DecisionRecord]) -> list[DecisionRecord]:
        """Durably store decisions (and queue the ones for review) before returning them as stored.

        Idempotent per (listing_id, request_id): a retry returns the decision stored the first time.
        """
        if not rows:
            return []
        if self._writer is not None:
            return self._writer.submit_many(self._insert_decisions, rows)
        return self._write(lambda conn: self._insert_decisions(conn, rows))

    def submit_decisions(self, rows: Sequence[DecisionRecord]) -> Future[list[DecisionRecord]] | None:
        """`record_decisions` without blocking a thread: a Future that resolves once the rows are
        committed (for an event loop to await). None when there is no group-commit writer."""
        if self._writer is None:
            return None
        if self._closed:
            raise StoreClosedError("store is closed")
        return self._writer.submit_many_nowait(self._insert_decisions, rows)

    def get_decision(self, decision_id: str) -> DecisionRecord | None:
        with self._read_engine.connect() as conn:
            row = conn.execute(select(d).where(d.c.decision_id == decision_id)).first()
        return None if row is None else _decision(row)

    def find_decision(self, listing_id: str, request_id: str) -> DecisionRecord | None:
        """The decision already stored for this request, if any (lets a retry skip scoring)."""
        query = select(d).where(d.c.listing_id == listing_id, d.c.request_id == request_id)
        with self._read_engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _decision(row)

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
                page = [_decision(row) for row in conn.execute(query)]
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

    # -- review queue ---------------------------------------------------------------------------

    def claim(self, reviewer: str, n: int = 1, lease_seconds: int = 300) -> list[QueueItem]:
        """Lease up to n of the highest-priority items that are pending or whose lease expired.

        Atomic: two concurrent claimers never receive the same item.
        """
        if not reviewer:
            raise ValueError("reviewer must not be empty")
        if not 1 <= n <= 1000 or lease_seconds < 0:
            raise ValueError("claim: n must be in [1, 1000] and lease_seconds >= 0")
        return self._write(lambda conn: self._claim(conn, reviewer, n, lease_seconds))

    def record_review(
        self,
        decision_id: str,
        reviewer: str,
        verdict: str,
        violation_reason: str | None = None,
        review_seconds: float | None = None,
        statement_of_reasons: dict[str, Any] | None = None,
    ) -> Review:
        """Store a verdict (with the DSA statement of reasons of a rejection) and close the queue item.

        Raises NotFoundError for an unknown decision, ConflictError if it is not queued, already
        reviewed, or leased to another reviewer.
        """
        if verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {sorted(VERDICTS)}, got {verdict!r}")
        if not reviewer:
            raise ValueError("reviewer must not be empty")
        if review_seconds is not None and not 0 <= review_seconds < float("inf"):
            raise ValueError("review_seconds must be a finite number >= 0")
        now = self._clock()
        review = Review(
            decision_id,
            reviewer,
            cast(Verdict, verdict),
            violation_reason,
            review_seconds,
            now,
            statement_of_reasons,
        )
        try:
            return self._write(lambda conn: self._review(conn, review))
        except IntegrityError as exc:  # a concurrent verdict won the race
            raise ConflictError(f"decision {decision_id} is already reviewed") from exc

    def get_review(self, decision_id: str) -> Review | None:
        with self._read_engine.connect() as conn:
            row = conn.execute(select(rv).where(rv.c.decision_id == decision_id)).first()
        return None if row is None else Review(**row._mapping)

    def queue_counts(self) -> dict[str, int]:
        """Queue items by status (pending, claimed, done); claimed includes expired leases."""
        query = select(q.c.status, func.count()).group_by(q.c.status)
        with self._read_engine.connect() as conn:
            counts = {str(status): int(count) for status, count in conn.execute(query)}
        return {status: counts.get(status, 0) for status in ("pending", "claimed", "done")}

    def export_labels(self, config: DataConfig | None = None, since: datetime | None = None) -> pd.DataFrame:
        """Reviewed decisions as labelled outcomes in the data contract (listing fields + outcome)."""
        config = config or DataConfig()
        query = (
            select(d.c.decision_id, d.c.listing_id, d.c.listing, d.c.received_at, d.c.qa_sample, rv)
            .join_from(rv, d, rv.c.decision_id == d.c.decision_id)
            .order_by(rv.c.reviewed_at, rv.c.decision_id)
        )
        if since is not None:
            query = query.where(rv.c.reviewed_at >= since)
        with self._read_engine.connect() as conn:
            rows = [labelled_outcome(row, config) for row in conn.execute(query)]
        return labels_frame(rows, config)

    # -- API keys -------------------------------------------------------------------------------

    def insert_api_key(self, key_id: str, name: str, scopes: Iterable[str], key_hash: str) -> ApiKey:
        key = ApiKey(key_id, name, frozenset(scopes), self._clock(), revoked=False)
        values = {
            "key_id": key_id,
            "name": name,
            "scopes": ",".join(sorted(key.scopes)),
            "key_hash": key_hash,
            "created_at": key.created_at,
            "revoked": False,
        }
        try:
            self._write(lambda conn: conn.execute(insert(schema.api_keys).values(values)))
        except IntegrityError as exc:
            raise ConflictError(f"an API key named {name!r} already exists") from exc
        return key

    def api_key_with_hash(self, key_id: str) -> tuple[ApiKey, str] | None:
        """The key and its stored hash, for verification."""
        query = select(schema.api_keys).where(schema.api_keys.c.key_id == key_id)
        with self._read_engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else (_api_key(row), str(row.key_hash))

    def list_api_keys(self) -> list[ApiKey]:
        query = select(schema.api_keys).order_by(schema.api_keys.c.created_at)
        with self._read_engine.connect() as conn:
            return [_api_key(row) for row in conn.execute(query)]

    def revoke_api_key(self, key_id: str) -> bool:
        """Mark a key revoked; False if there is no such key."""
        statement = update(schema.api_keys).where(schema.api_keys.c.key_id == key_id).values(revoked=True)
        return bool(self._write(lambda conn: conn.execute(statement).rowcount))

    # -- policy audit ---------------------------------------------------------------------------

    def record_policy_change(self, actor: str, old: dict[str, Any], new: dict[str, Any]) -> PolicyChange:
        """Append a policy change to the audit trail; versions are read from the policies' `version`."""
        values: dict[str, Any] = {
            "at": self._clock(),
            "actor": actor,
            "old_version": _version(old),
            "new_version": _version(new),
            "old": old,
            "new": new,
        }
        statement = insert(schema.policy_audit).values(values).returning(schema.policy_audit.c.id)
        change_id = self._write(lambda conn: conn.execute(statement).scalar_one())
        return PolicyChange(id=int(change_id), **values)

    def policy_history(self, limit: int = 100) -> list[PolicyChange]:
        """Policy changes, newest first."""
        query = select(schema.policy_audit).order_by(schema.policy_audit.c.id.desc()).limit(limit)
        with self._read_engine.connect() as conn:
            return [PolicyChange(**row._mapping) for row in conn.execute(query)]

    def latest_policy(self) -> dict[str, Any] | None:
        """The policy most recently put in force, so a restarted service resumes it."""
        history = self.policy_history(limit=1)
        return history[0].new if history else None

    # -- internals ------------------------------------------------------------------------------

    def _write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in a committed write transaction (group-committed on SQLite)."""
        if self._closed:
            raise StoreClosedError("store is closed")
        if self._writer is not None:
            return self._writer.submit(work)
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                with self._write_engine.begin() as conn:
                    return work(conn)
            except DBAPIError as exc:
                if attempt + 1 == _WRITE_ATTEMPTS or not _transient(exc):
                    raise
                logger.warning("transient database error, retrying: %s", exc.orig)
                time.sleep(0.01 * 2**attempt)
        raise AssertionError("unreachable")

    def _create_schema(self, conn: Connection) -> None:
        if self.dialect == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _SCHEMA_LOCK_ID})
        schema.metadata.create_all(conn)
        for table, column_name in schema.ADDED_COLUMNS:
            existing = {c["name"] for c in inspect(conn).get_columns(table.name)}
            if column_name not in existing:
                column = table.c[column_name]
                kind = column.type.compile(dialect=conn.dialect)
                conn.execute(text(f'ALTER TABLE {table.name} ADD COLUMN "{column_name}" {kind}'))

    def _insert_ignoring_conflicts(self) -> Insert:
        if self.dialect == "postgresql":
            return postgresql.insert(d).on_conflict_do_nothing()
        return sqlite.insert(d).on_conflict_do_nothing()

    def _insert_decisions(self, conn: Connection, rows: Sequence[DecisionRecord]) -> list[DecisionRecord]:
        keys = [_key(record) for record in rows]
        first_of_key: dict[_Key, DecisionRecord] = {}
        for key, record in zip(keys, rows, strict=True):
            first_of_key.setdefault(key, record)
        fresh = list(first_of_key.values())
        now = self._clock()
        if self.dialect == "sqlite":  # one writer at a time: the insertion order cannot deadlock
            inserted = _sqlite_insert_new(conn, fresh, now)
        else:
            # a fixed insertion order keeps concurrent PostgreSQL batches from deadlocking on the unique key
            fresh.sort(key=lambda r: (r.listing_id, r.request_id or "", r.decision_id))
            inserted = self._insert_new(conn, fresh, now)
        existing = self._stored_for_retries(conn, [r for r in fresh if r.decision_id not in inserted])
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
        pairs = [(r.listing_id, r.request_id) for r in retried if r.request_id is not None]
        for row in self._stored_for_requests(conn, pairs):
            stored = _decision(row)
            found[_key(stored)] = stored
        for record in retried:
            if record.request_id is None:  # this decision_id is stored already: a retry of the same decision
                same_id = conn.execute(select(d).where(d.c.decision_id == record.decision_id)).first()
                if same_id is not None and same_id.listing_id == record.listing_id:
                    found[_key(record)] = _decision(same_id)
            if _key(record) not in found:
                raise ConflictError(f"decision_id {record.decision_id} is already used by another decision")
        return found

    def _stored_for_requests(self, conn: Connection, pairs: list[tuple[str, str]]) -> Iterator[Row[Any]]:
        """The stored decisions of these (listing_id, request_id) pairs."""
        if self.dialect == "sqlite":
            # SQLite scans the whole table for a row-value IN list: find each pair through the unique
            # index instead, then read the rows by primary key
            ids = _sqlite_ids_of_requests(conn, pairs)
            for start in range(0, len(ids), _KEY_CHUNK):
                yield from conn.execute(select(d).where(d.c.decision_id.in_(ids[start : start + _KEY_CHUNK])))
            return
        for start in range(0, len(pairs), _KEY_CHUNK):
            condition = tuple_(d.c.listing_id, d.c.request_id).in_(pairs[start : start + _KEY_CHUNK])
            yield from conn.execute(select(d).where(condition))

    def _claim(self, conn: Connection, reviewer: str, n: int, lease_seconds: int) -> list[QueueItem]:
        now = self._clock()
        claimable = _claimable(now)
        candidates = (
            select(q.c.decision_id)
            .where(claimable)
            .order_by(q.c.priority.desc(), q.c.enqueued_at, q.c.decision_id)
            .limit(n)
        )
        if self.dialect == "postgresql":
            candidates = candidates.with_for_update(skip_locked=True)
        ids = list(conn.execute(candidates).scalars())
        if not ids:
            return []
        expires = now + timedelta(seconds=lease_seconds)
        lease = {"status": "claimed", "claimed_by": reviewer, "lease_expires_at": expires}
        claim = update(q).where(q.c.decision_id.in_(ids), claimable).values(lease).returning(q)
        claimed = conn.execute(claim).all()
        records = {
            row.decision_id: _decision(row)
            for row in conn.execute(select(d).where(d.c.decision_id.in_([c.decision_id for c in claimed])))
        }
        items = [QueueItem(**row._mapping, decision=records[row.decision_id]) for row in claimed]
        return sorted(items, key=lambda item: (-item.priority, item.enqueued_at, item.decision_id))

    def _review(self, conn: Connection, review: Review) -> Review:
        query = select(q).where(q.c.decision_id == review.decision_id)
        if self.dialect == "postgresql":
            query = query.with_for_update()
        item = conn.execute(query).first()
        if item is None:
            known = conn.execute(select(d.c.decision_id).where(d.c.decision_id == review.decision_id)).first()
            if known is None:
                raise NotFoundError(f"unknown decision {review.decision_id}")
            raise ConflictError(f"decision {review.decision_id} is not in the review queue")
        if item.status == "done":
            raise ConflictError(f"decision {review.decision_id} is already reviewed")
        leased = item.status == "claimed" and item.lease_expires_at > review.reviewed_at
        if leased and item.claimed_by != review.reviewer:
            raise ConflictError(f"decision {review.decision_id} is leased to another reviewer")
        conn.execute(insert(rv).values(_review_params(review)))
        done = {"status": "done", "claimed_by": review.reviewer, "lease_expires_at": None}
        conn.execute(update(q).where(q.c.decision_id == review.decision_id).values(done))
        return review


def create_store(
    url: str,
    *,
    group_commit: bool | None = None,
    group_commit_ms: float = 2.0,
    pool_size: int = 8,
    clock: Clock = utcnow,
) -> Store:
    """Open the store at a database URL (creating the SQLite file's folder); call `init_schema()` next."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return Store(parsed, group_commit=group_commit, group_commit_ms=group_commit_ms, pool_size=pool_size, clock=clock)


def _sqlite_engines(url: URL, group_commit: bool, pool_size: int) -> tuple[Engine, Engine]:
    """A write engine (BEGIN IMMEDIATE, WAL, synchronous=FULL) and a read-only engine for one file."""
    connect_args = {"check_same_thread": False, "timeout": 30}
    writers = 1 if group_commit else pool_size
    write_engine = create_engine(url, connect_args=connect_args, pool_size=writers, max_overflow=0)
    read_engine = create_engine(url, connect_args=connect_args, pool_size=pool_size, max_overflow=pool_size)

    @event.listens_for(write_engine, "connect")
    def _writer_pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (see _begin_immediate)
        cursor = dbapi_connection.cursor()
        # temp_store=MEMORY: the savepoint journal (pages a write changed, kept for rollbacks inside the
        # transaction; durability is the WAL's job) stays in memory rather than moving to a temporary
        # file past 64 KiB, which on a log of 200k decisions added a fifth to the CPU time of a batch.
        pragmas = ("journal_mode=WAL", "synchronous=FULL", "busy_timeout=30000", "foreign_keys=ON", "temp_store=MEMORY")
        for pragma in pragmas:
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(write_engine, "begin")
    def _begin_immediate(conn: Connection) -> None:
        # take the write lock up front: a deferred transaction that later writes can fail with BUSY
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(read_engine, "connect")
    def _reader_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        for pragma in ("busy_timeout=30000", "query_only=ON"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    return write_engine, read_engine


# -- SQLite fast path for the decision log ---------------------------------------------------------
# The hot write of the service. SQLAlchemy's multi-row INSERT ... RETURNING with per-value type
# processing cost ~80 us a row; prepared statements run on the writer's own connection (inside the
# same group-commit transaction) cost a fraction. A batch's rows go in by one multi-row INSERT (up to
# `_SQLITE_MAX_ROWS` rows each): one statement execution rather than one per row (and on databases
# whose CHECKs still use IN lists, one build of their lookup tables). Values are bound exactly as the
# schema's types bind them (UTCDateTime, JSONText, Boolean), so both paths store the same bytes; a test
# compares them.

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
_SQLITE_DECISION_ORDER = (  # the order `_sqlite_decision_row` writes; checked against the schema at import
    "decision_id", "request_id", "listing_id", "received_at", "decided_at", "decision", "automated", "risk",
    "model_version", "policy_version", "t_pass", "t_block", "priority", "rules_matched", "reasons", "qa_sample",
    "would_have_been", "fallback_reason", "statement_of_reasons", "listing",
)  # fmt: skip
if _SQLITE_DECISIONS.columns != _SQLITE_DECISION_ORDER:
    raise RuntimeError("schema.decisions changed: update _sqlite_decision_row to the new columns")
_SQLITE_QUEUE_ORDER = (  # the order of the queue rows `_sqlite_insert_new` writes
    "decision_id", "priority", "enqueued_at", "status", "claimed_by", "lease_expires_at", "qa_sample",
)  # fmt: skip
if _SQLITE_QUEUE.columns != _SQLITE_QUEUE_ORDER:
    raise RuntimeError("schema.queue changed: update the queue rows of _sqlite_insert_new to the new columns")
_SQLITE_ID_OF_REQUEST = f"SELECT decision_id FROM {d.name} WHERE listing_id = ? AND request_id = ?"


def _sqlite_insert_new(conn: Connection, fresh: list[DecisionRecord], now: datetime) -> set[str]:
    """`Store._insert_new` for SQLite: prepared INSERT ... ON CONFLICT DO NOTHING statements over all rows.

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
            (r.decision_id, r.priority, enqueued_at, "pending", None, None, int(r.qa_sample))
            for r in fresh
            if r.queued and r.decision_id in inserted
        ]
        _SQLITE_QUEUE.run(cursor, queued)
        cursor.execute("RELEASE triage_insert_decisions")
    finally:
        cursor.close()
    return inserted


def _sqlite_ids_of_requests(conn: Connection, pairs: list[tuple[str, str]]) -> list[str]:
    """The decision ids stored under these (listing_id, request_id) pairs, one index lookup each."""
    cursor = _sqlite_cursor(conn)
    try:
        found = (cursor.execute(_SQLITE_ID_OF_REQUEST, pair).fetchone() for pair in pairs)
        return [row[0] for row in found if row is not None]
    finally:
        cursor.close()


def _sqlite_cursor(conn: Connection) -> sqlite3.Cursor:
    """A driver cursor on the connection's own transaction."""
    return cast(sqlite3.Cursor, conn.connection.driver_connection.cursor())  # type: ignore[union-attr]


_dumps, _JSON_OPTIONS = orjson.dumps, schema.JSON_OPTIONS  # how JSONText encodes


def _sqlite_decision_row(r: DecisionRecord, times: dict[datetime, str]) -> tuple[Any, ...]:
    """A record's values in `_SQLITE_DECISION_ORDER`, bound as the schema's column types bind them."""
    sor = r.statement_of_reasons
    return (
        r.decision_id,
        r.request_id,
        r.listing_id,
        _sqlite_time(r.received_at, times),
        _sqlite_time(r.decided_at, times),
        r.decision,
        int(r.automated),
        r.risk,
        r.model_version,
        r.policy_version,
        r.t_pass,
        r.t_block,
        r.priority,
        _dumps(r.rules_matched, option=_JSON_OPTIONS).decode(),
        _dumps(r.reasons, option=_JSON_OPTIONS).decode(),
        int(r.qa_sample),
        r.would_have_been,
        r.fallback_reason,
        None if sor is None else _dumps(sor, option=_JSON_OPTIONS).decode(),
        _dumps(r.listing, option=_JSON_OPTIONS).decode(),
    )


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


def _key(record: DecisionRecord) -> _Key:
    """What makes two records the same decision: (listing_id, request_id), else the decision_id."""
    if record.request_id is not None:
        return ("request", record.listing_id, record.request_id)
    return ("decision", record.decision_id, "")


def _transient(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES


def _claimable(now: datetime) -> ColumnElement[bool]:
    expired = and_(q.c.status == "claimed", q.c.lease_expires_at <= now)
    return or_(q.c.status == "pending", expired)


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
    }


def _review_params(review: Review) -> dict[str, Any]:
    return {f.name: getattr(review, f.name) for f in fields(review)}


def _decision(row: Row[Any]) -> DecisionRecord:
    mapping = row._mapping
    return DecisionRecord(**{name: mapping[name] for name in _DECISION_FIELDS})


def _api_key(row: Row[Any]) -> ApiKey:
    scopes = frozenset(s for s in row.scopes.split(",") if s)
    return ApiKey(row.key_id, row.name, scopes, row.created_at, bool(row.revoked))


def _version(policy: dict[str, Any]) -> str | None:
    version = policy.get("version")
    return None if version is None else str(version)
