"""Whether the decision log can take writes: failed by a storage error, cleared by the next committed write.

A full disk, an I/O error or a lost database connection means a decision cannot be durably logged, so it
cannot be acknowledged: the service answers 503 and reports itself not ready until a write commits again
(the next request's, or the probe `/readyz` runs while the log is failing).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from datetime import datetime

from sqlalchemy.exc import OperationalError

from serving.store.records import utcnow

logger = logging.getLogger(__name__)

# Errors of the database itself (disk full, I/O, locked, unreachable), not of one caller's data.
STORAGE_ERRORS: tuple[type[Exception], ...] = (OperationalError, sqlite3.OperationalError)


def is_storage_error(exc: BaseException) -> bool:
    return isinstance(exc, STORAGE_ERRORS)


def describe(exc: BaseException) -> str:
    """The database's own message (SQLAlchemy wraps it with the statement, which may hold listing data)."""
    original = getattr(exc, "orig", None) or exc
    return f"{type(original).__name__}: {original}".splitlines()[0][:500]


class WriteHealth:
    """The decision log's write health, shared by every writer of one store. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cause: str | None = None
        self._since: datetime | None = None
        self._last_probe = 0.0

    @property
    def ok(self) -> bool:
        return self._cause is None

    @property
    def cause(self) -> str | None:
        return self._cause

    @property
    def since(self) -> datetime | None:
        return self._since

    def failed(self, exc: BaseException) -> None:
        cause = describe(exc)
        with self._lock:
            first = self._cause is None
            self._cause = cause
            if first:
                self._since = utcnow()
        if first:
            logger.error("NOT READY: the decision log cannot take writes (%s); answering 503 until it can", cause)

    def succeeded(self) -> None:
        if self._cause is None:  # the common case: no lock taken
            return
        with self._lock:
            cause, since = self._cause, self._since
            self._cause = self._since = None
        logger.warning("decision log writable again (failing since %s: %s)", since, cause)

    def probe_due(self, min_interval_s: float = 1.0) -> bool:
        """True at most once per `min_interval_s`: a failing disk is not hammered by frequent readiness checks."""
        with self._lock:
            now = time.monotonic()
            if now - self._last_probe < min_interval_s:
                return False
            self._last_probe = now
            return True
