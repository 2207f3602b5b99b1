"""Group commit: one writer thread runs many callers' writes in one transaction and one fsync.

SQLite allows one writer at a time and every durable commit costs an fsync. Instead of each request
committing on its own, callers hand their write to the writer thread and wait on a Future. The writer
takes whatever is queued, waits up to `window_s` for more, runs the writes, commits once, and only then
resolves the Futures: a caller is acknowledged only after its data is on disk. A group that already
holds `full_items` items (e.g. decision rows) does not wait out the window: its fsync is shared widely
enough, and waiting would only add latency (writes that arrive meanwhile join the next group).

Writes of the same kind submitted with `submit_many` (e.g. decision rows) are merged into one call, so
thirty callers cost one multi-row INSERT rather than thirty. When a group holds several writes, each
(or each merged group) runs in its own SAVEPOINT; a group that is one write, or one merged group (the
usual case for decisions), needs none, which saves two statements (two round trips on PostgreSQL). If a
merged group fails, its callers are retried one by one so only the faulty caller sees the error.

With `hold_s` > 0 (PostgreSQL) the writer holds its connection from one group to the next while writes keep
coming: checking one out of the pool a group costs a round trip (the pool's pre-ping). After `hold_s`
without a group, or after any error, the connection goes back to the pool, and the next group checks one
out (and pings it) again, so a connection the server dropped meanwhile is replaced, as with a checkout a
group. A connection dropped while held (a server restart) fails the group it was handed to: a group of
idempotent writes (`submit_many(..., idempotent=True)`: decisions, whose retry returns what the first
attempt stored should its commit have gone through) then runs once more on a fresh connection, so its
callers see no error; any other group's callers get the error. With 0 (SQLite, whose write pool is this
one connection, and a checkout costs no round trip) each group checks one out and returns it.

A storage error (disk full, I/O) fails the `health` shared with the store; a group that commits without
one clears it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from serving.store.health import WriteHealth, is_storage_error
from serving.store.records import StoreClosedError

logger = logging.getLogger(__name__)

T = TypeVar("T")
Item = TypeVar("Item")
Result = TypeVar("Result")
WriteMany = Callable[[Connection, list[Any]], list[Any]]


@dataclass(eq=False)
class _Job:
    future: Future[Any] = field(default_factory=Future)
    write: Callable[[Connection], Any] | None = None
    write_many: WriteMany | None = None
    items: Sequence[Any] = ()
    idempotent: bool = False  # running it again after an unknown outcome changes nothing

    @property
    def size(self) -> int:
        """How many items this write holds (a single write counts one)."""
        return len(self.items) if self.write_many is not None else 1

    def run(self, conn: Connection) -> Any:
        if self.write_many is not None:
            return self.write_many(conn, list(self.items))
        assert self.write is not None
        return self.write(conn)


class GroupCommitWriter:
    """A single writer thread that commits queued writes together."""

    def __init__(
        self,
        engine: Engine,
        window_s: float = 0.002,
        max_jobs: int = 512,
        full_items: int = 256,
        health: WriteHealth | None = None,
        hold_s: float = 0.0,
    ) -> None:
        self._engine = engine
        self._hold_s = hold_s
        self._conn: Connection | None = None  # held between groups (see the module's docstring)
        self._last_group = 0.0
        self._reused = False  # whether the current group runs on a connection held from an earlier one
        self.health = health or WriteHealth()
        self._window_s = window_s
        self._max_jobs = max_jobs
        self._full_items = full_items
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="triage-group-commit", daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[Connection], T]) -> T:
        """Run `write(conn)` in the next group transaction; return its result once committed."""
        result: T = self._enqueue(_Job(write=write))
        return result

    def submit_many(
        self,
        write_many: Callable[[Connection, list[Item]], list[Result]],
        items: Sequence[Item],
        *,
        idempotent: bool = False,
    ) -> list[Result]:
        """Run `write_many(conn, items)`, merged with other callers' items for the same function.

        `write_many` must return one result per item, in order. `idempotent`: running it a second time,
        whether or not the first committed, returns what the first would have (it may then run again
        after the database dropped the connection).
        """
        results: list[Result] = self._enqueue(_Job(write_many=write_many, items=items, idempotent=idempotent))
        return results

    def submit_many_nowait(
        self,
        write_many: Callable[[Connection, list[Item]], list[Result]],
        items: Sequence[Item],
        *,
        idempotent: bool = False,
    ) -> Future[list[Result]]:
        """`submit_many` without waiting: the Future resolves once the group is committed."""
        return self._put(_Job(write_many=write_many, items=items, idempotent=idempotent))

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(None)
        self._thread.join()

    def _enqueue(self, job: _Job) -> Any:
        return self._put(job).result()

    def _put(self, job: _Job) -> Future[Any]:
        with self._lock:
            if self._closed:
                raise StoreClosedError("store is closed")
            self._jobs.put(job)
        return job.future

    def _run(self) -> None:
        stopping = False
        try:
            while not stopping:
                first = self._jobs.get()
                if first is None:
                    break
                batch, stopping = self._gather(first)
                self._commit(batch)
        finally:
            self._release()

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A transaction on the held connection: committed when the block ends, rolled back on an error,
        after which the connection goes back to the pool (it may be broken)."""
        if self._conn is not None and time.monotonic() - self._last_group > self._hold_s:
            self._release()  # idle a while: the next checkout pings it
        self._reused = self._conn is not None
        if self._conn is None:
            self._conn = self._engine.connect()
        try:
            with self._conn.begin():
                yield self._conn
        except BaseException:
            self._release()
            raise
        self._last_group = time.monotonic()
        if self._hold_s <= 0:
            self._release()

    def _release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a broken connection: the pool discards it
                logger.warning("closing the group-commit connection failed", exc_info=True)

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        batch = [first]
        items = first.size
        deadline = time.monotonic() + self._window_s
        while len(batch) < self._max_jobs:
            timeout = deadline - time.monotonic() if items < self._full_items else 0.0
            try:
                job = self._jobs.get(timeout=timeout) if timeout > 0 else self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return batch, True
            batch.append(job)
            items += job.size
        return batch, False

    def _commit(self, batch: list[_Job]) -> None:
        live = [job for job in batch if job.future.set_running_or_notify_cancel()]
        if live and len({job.write_many or job for job in live}) == 1:
            self._commit_one_write(live)
            return
        outcomes: dict[_Job, tuple[Any, BaseException | None]] = {}
        try:
            with self._transaction() as conn:
                merged: dict[WriteMany, list[_Job]] = {}
                for job in live:
                    if job.write_many is not None:
                        merged.setdefault(job.write_many, []).append(job)
                    else:
                        outcomes[job] = _in_savepoint(conn, job.run)
                for write_many, jobs in merged.items():
                    outcomes.update(_run_merged(conn, write_many, jobs))
        except Exception as exc:  # the commit itself failed: nothing in this batch is durable
            logger.exception("group commit of %d writes failed", len(live))
            if is_storage_error(exc):
                self.health.failed(exc)
            for job in live:
                job.future.set_exception(exc)
            return
        storage_error = next((e for _, e in outcomes.values() if e is not None and is_storage_error(e)), None)
        if storage_error is not None:
            self.health.failed(storage_error)
        elif live:
            self.health.succeeded()
        for job, (result, error) in outcomes.items():
            if error is None:
                job.future.set_result(result)
            else:
                job.future.set_exception(error)

    def _commit_one_write(self, jobs: list[_Job], may_rerun: bool = True) -> None:
        """Commit one write, or one merged group of writes, in a transaction of its own (no savepoint)."""
        try:
            with self._transaction() as conn:
                if len(jobs) == 1:
                    results = [jobs[0].run(conn)]
                else:
                    merged = jobs[0].write_many(conn, [item for job in jobs for item in job.items])  # type: ignore[misc]
                    results, start = [], 0
                    for job in jobs:
                        results.append(merged[start : start + len(job.items)])
                        start += len(job.items)
        except Exception as exc:
            if may_rerun and self._reused and _dropped(exc) and all(job.idempotent for job in jobs):
                logger.warning("the database dropped the writer's connection: running the group again on a new one")
                self._commit_one_write(jobs, may_rerun=False)
                return
            if is_storage_error(exc):
                logger.exception("group commit of %d writes failed", len(jobs))
                self.health.failed(exc)
            elif len(jobs) > 1:  # one caller's bad write: retry each alone, so only that one sees the error
                for job in jobs:
                    self._commit_one_write([job])
                return
            for job in jobs:
                job.future.set_exception(exc)
            return
        self.health.succeeded()
        for job, result in zip(jobs, results, strict=True):
            job.future.set_result(result)


def _dropped(exc: BaseException) -> bool:
    """Whether the error is the database connection lost (SQLAlchemy's disconnect detection)."""
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _in_savepoint(conn: Connection, work: Callable[[Connection], Any]) -> tuple[Any, BaseException | None]:
    savepoint = conn.begin_nested()
    try:
        result = work(conn)
    except Exception as exc:  # this caller's error only; the others still commit
        savepoint.rollback()
        return None, exc
    savepoint.commit()
    return result, None


def _run_merged(
    conn: Connection, write_many: WriteMany, jobs: list[_Job]
) -> dict[_Job, tuple[Any, BaseException | None]]:
    if len(jobs) > 1:
        items = [item for job in jobs for item in job.items]
        results, error = _in_savepoint(conn, lambda c: write_many(c, items))
        if error is None:
            outcomes: dict[_Job, tuple[Any, BaseException | None]] = {}
            start = 0
            for job in jobs:
                outcomes[job] = (results[start : start + len(job.items)], None)
                start += len(job.items)
            return outcomes
    return {job: _in_savepoint(conn, job.run) for job in jobs}
