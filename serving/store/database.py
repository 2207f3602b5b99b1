"""The store's database: engines, the committed-write path and the schema.

SQLite (the embedded default) runs in WAL mode with synchronous=FULL; every write goes through one
group-commit writer thread, so concurrent requests share a transaction and an fsync. PostgreSQL uses a
connection pool and row locks (`FOR UPDATE SKIP LOCKED`) instead, except for decisions, the hot write: they
go through a group-commit writer of their own (one connection), so the decisions of concurrent requests
share one INSERT, one commit and one WAL flush. Every write is committed before the call returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any, Self, TypeVar

from sqlalchemy import Connection, Engine, create_engine, delete, event, insert, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import DBAPIError

from serving.store import schema
from serving.store.health import WriteHealth, is_storage_error
from serving.store.records import StoreClosedError, utcnow
from serving.store.writer import GroupCommitWriter

logger = logging.getLogger(__name__)

T = TypeVar("T")
Clock = Callable[[], datetime]

_TRANSIENT_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock
_WRITE_ATTEMPTS = 4
_SCHEMA_LOCK_ID = 0x7472696167  # pg advisory lock taken while creating the schema


class Database:
    """One database of the store: a write engine (group-committed on SQLite) and a read engine."""

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
        # SQLite has one writer anyway. On PostgreSQL, group-committing every write would serialise the
        # process's claims and verdicts behind one connection: unset, only decisions are group-committed.
        group_decisions = group_commit is None and self.dialect == "postgresql"
        if group_commit is None:
            group_commit = self.dialect == "sqlite"
        if self.dialect == "sqlite":
            self._write_engine, self._read_engine = _sqlite_engines(self.url, group_commit, pool_size)
        elif self.dialect == "postgresql":
            engine = create_engine(self.url, pool_size=pool_size, max_overflow=2 * pool_size, pool_pre_ping=True)
            self._write_engine = self._read_engine = engine
        else:
            raise ValueError(f"unsupported database {self.dialect!r}: use sqlite or postgresql")
        self.write_health = WriteHealth()  # failed by a storage error on any write, cleared by the next commit
        # a PostgreSQL writer keeps its connection between groups (a checkout pings: a round trip a group)
        hold_s = 1.0 if self.dialect == "postgresql" else 0.0
        self._writer = (
            GroupCommitWriter(self._write_engine, group_commit_ms / 1000, health=self.write_health, hold_s=hold_s)
            if group_commit
            else None
        )
        self._decision_writer = self._writer or (
            GroupCommitWriter(self._write_engine, group_commit_ms / 1000, health=self.write_health, hold_s=hold_s)
            if group_decisions
            else None
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def init_schema(self) -> None:
        """Create the tables if missing (safe to call from several processes at once).

        Existing tables gain the columns added since and the per-key idempotency index; see
        `_migrate_idempotency_index` for the one rule an earlier SQLite log keeps.
        """
        self._write(self._create_schema)
        logger.info("schema ready on %s", self.url.render_as_string(hide_password=True))

    def close(self) -> None:
        """Finish queued writes, then release every connection."""
        if self._closed:
            return
        self._closed = True
        if self._decision_writer is not None and self._decision_writer is not self._writer:
            self._decision_writer.close()
        if self._writer is not None:
            self._writer.close()
        self._write_engine.dispose()
        self._read_engine.dispose()

    def _write(self, work: Callable[[Connection], T]) -> T:
        """Run `work` in a committed write transaction (group-committed on SQLite)."""
        if self._closed:
            raise StoreClosedError("store is closed")
        if self._writer is not None:
            return self._writer.submit(work)
        try:
            result = self._write_with_retries(work)
        except Exception as exc:
            if is_storage_error(exc):
                self.write_health.failed(exc)
            raise
        self.write_health.succeeded()
        return result

    def _write_with_retries(self, work: Callable[[Connection], T]) -> T:
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

    def probe_write(self) -> bool:
        """Commit one small write (the `write_probe` row) through the normal write path; True if it committed.

        Run while the log is failing, so readiness comes back once writes succeed without waiting for traffic
        (which a not-ready service does not get).
        """
        try:
            self._write(self._touch_probe)
        except Exception as exc:
            if is_storage_error(exc):
                self.write_health.failed(exc)
            logger.warning("decision log write probe failed: %s", exc)
            return False
        return True

    def _touch_probe(self, conn: Connection) -> None:
        conn.execute(delete(schema.write_probe))
        conn.execute(insert(schema.write_probe).values(id=1, checked_at=self._clock()))

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
        for index in schema.ADDED_INDEXES:
            index.create(conn, checkfirst=True)
        self._migrate_idempotency_index(conn)

    def _migrate_idempotency_index(self, conn: Connection) -> None:
        """Idempotency per API key: the index of `schema.IDEMPOTENCY_INDEX`, in place of the earlier one.

        The new index is built before the old rule goes, in one transaction, so no moment is unguarded.
        Rows logged before the upgrade have no key_id and are never matched by a new request.
        """
        inspector = inspect(conn)
        table, before = schema.decisions.name, schema.IDEMPOTENCY_INDEX_BEFORE
        indexes = {i["name"] for i in inspector.get_indexes(table)}
        if schema.IDEMPOTENCY_INDEX.name not in indexes:
            schema.IDEMPOTENCY_INDEX.create(conn)
        constraints = {u["name"] for u in inspector.get_unique_constraints(table)}
        if before in constraints and self.dialect == "postgresql":
            conn.execute(text(f"ALTER TABLE {table} DROP CONSTRAINT {before}"))
        elif before in indexes and before not in constraints:
            conn.execute(text(f"DROP INDEX {before}"))


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


def _transient(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _TRANSIENT_SQLSTATES
