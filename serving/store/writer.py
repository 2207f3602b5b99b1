"""Group commit: one writer thread runs many callers' writes in one transaction and one fsync.

SQLite allows one writer at a time and every durable commit costs an fsync. Instead of each request
committing on its own, callers hand their write (a function of a connection) to the writer thread and
wait on a Future. The writer takes whatever is queued, waits up to `window_s` for more, runs each write
in its own SAVEPOINT (so one failing write does not sink the others), commits once, and only then
resolves the Futures: a caller is acknowledged only after its data is on disk.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine

from serving.store.records import StoreClosedError

logger = logging.getLogger(__name__)

T = TypeVar("T")
Job = tuple[Callable[[Connection], Any], "Future[Any]"]


class GroupCommitWriter:
    """A single writer thread that commits queued writes together."""

    def __init__(self, engine: Engine, window_s: float = 0.002, max_jobs: int = 512) -> None:
        self._engine = engine
        self._window_s = window_s
        self._max_jobs = max_jobs
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._closed = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="triage-group-commit", daemon=True)
        self._thread.start()

    def submit(self, write: Callable[[Connection], T]) -> T:
        """Run `write(conn)` in the next group transaction; return its result once committed."""
        future: Future[T] = Future()
        with self._lock:
            if self._closed:
                raise StoreClosedError("store is closed")
            self._jobs.put((write, future))
        return future.result()

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._jobs.get()
            if first is None:
                break
            batch, stopping = self._gather(first)
            self._commit(batch)

    def _gather(self, first: Job) -> tuple[list[Job], bool]:
        batch = [first]
        deadline = time.monotonic() + self._window_s
        while len(batch) < self._max_jobs:
            timeout = deadline - time.monotonic()
            try:
                job = self._jobs.get(timeout=timeout) if timeout > 0 else self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                return batch, True
            batch.append(job)
        return batch, False

    def _commit(self, batch: list[Job]) -> None:
        outcomes: list[tuple[Future[Any], Any, BaseException | None]] = []
        try:
            with self._engine.begin() as conn:
                for write, future in batch:
                    if not future.set_running_or_notify_cancel():
                        continue
                    savepoint = conn.begin_nested()
                    try:
                        result = write(conn)
                    except Exception as exc:  # this caller's error only; the others still commit
                        savepoint.rollback()
                        outcomes.append((future, None, exc))
                    else:
                        savepoint.commit()
                        outcomes.append((future, result, None))
        except Exception as exc:  # the commit itself failed: nothing in this batch is durable
            logger.exception("group commit of %d writes failed", len(batch))
            for _, future in batch:
                if future.running():
                    future.set_exception(exc)
            return
        for future, result, error in outcomes:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)
