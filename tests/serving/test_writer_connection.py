"""On PostgreSQL the group-commit writer holds its connection between groups: one checkout for a stream of
groups (no pool pre-ping round trip a group), and a connection the server dropped is replaced, after an
idle spell by the next checkout's ping; mid-stream, a group of decisions runs again on a fresh one and any
other write fails with the error (it may not be safe to run twice)."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.exc import OperationalError

from serving.store import create_store
from tests.serving.conftest import make_decision

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def _writer_checkouts(store: object) -> list[str]:
    """Records a name for every pool checkout made by the group-commit writer's thread."""
    checkouts: list[str] = []

    def on_checkout(*_: object) -> None:
        if threading.current_thread().name == "triage-group-commit":
            checkouts.append("checkout")

    event.listen(store._write_engine.pool, "checkout", on_checkout)  # type: ignore[attr-defined]
    return checkouts


@pytest.mark.parametrize("group_commit", [None, True], ids=["decisions-writer", "every-write-group-committed"])
@pytest.mark.postgres
def test_a_stream_of_groups_checks_out_one_connection(postgres_url: str, group_commit: bool | None) -> None:
    with create_store(postgres_url, group_commit=group_commit, clock=lambda: NOW) as store:
        store.init_schema()
        checkouts = _writer_checkouts(store)
        for i in range(20):
            store.record_decisions([make_decision(request_id=f"stream-{i}")])
        assert store.count_decisions() == 20
        assert len(checkouts) <= 1  # held from the first group on (0 when init_schema's is still held)


def test_on_sqlite_each_group_returns_the_one_write_connection(tmp_path: Path) -> None:
    """SQLite's write pool is one connection, which other writers of the file may need between groups."""
    with create_store(f"sqlite:///{tmp_path / 'log.db'}", clock=lambda: NOW) as store:
        store.init_schema()
        checkouts = _writer_checkouts(store)
        for i in range(3):
            store.record_decisions([make_decision(request_id=f"stream-{i}")])
        assert len(checkouts) == 3
        with store._write_engine.begin() as conn:  # free at once: not held by the writer
            conn.execute(text("SELECT 1"))


def _backend_pid(store: object) -> int:
    writer = store._decision_writer  # type: ignore[attr-defined]
    assert writer._conn is not None, "the writer holds no connection between groups"
    return int(writer._conn.connection.driver_connection.info.backend_pid)


def _terminate(postgres_url: str, pid: int) -> None:
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
    finally:
        admin.dispose()


@pytest.mark.postgres
def test_a_connection_dropped_while_idle_is_replaced_before_the_next_group(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with create_store(postgres_url, clock=lambda: NOW) as store:
        store.init_schema()
        monkeypatch.setattr(store._decision_writer, "_hold_s", 1e-9)  # held, but every gap counts as idle
        store.record_decisions([make_decision(request_id="before")])
        dropped = _backend_pid(store)
        _terminate(postgres_url, dropped)
        store.record_decisions([make_decision(request_id="after")])  # checked out afresh, pinged: no error
        assert _backend_pid(store) != dropped
        assert store.count_decisions() == 2


@pytest.mark.postgres
def test_decisions_handed_a_connection_dropped_mid_stream_go_in_on_a_new_one(postgres_url: str) -> None:
    """The group that finds its held connection dropped runs once more on a fresh one: writing decisions is
    idempotent (a rerun returns what a first attempt stored), so its callers see no error."""
    with create_store(postgres_url, clock=lambda: NOW) as store:
        store.init_schema()
        store.record_decisions([make_decision(request_id="before")])
        dropped = _backend_pid(store)
        _terminate(postgres_url, dropped)
        group = [make_decision(request_id="during"), make_decision(decision="auto_pass", automated=True)]
        assert store.record_decisions(group) == group
        assert _backend_pid(store) != dropped
        assert sorted(str(r.request_id) for r in store.decisions_since(None)) == ["None", "before", "during"]
        with store._read_engine.connect() as conn:
            queued = [str(row[0]) for row in conn.execute(text("SELECT decision_id FROM review_queue"))]
        assert sorted(queued) == sorted(r.decision_id for r in store.decisions_since(None) if r.queued)  # once each
        assert store.write_health.ok
        # had the first attempt committed before the connection dropped, the rerun would find it stored:
        assert store.record_decisions(group) == group  # the same decisions back, with or without a request_id
        assert store.count_decisions() == 3


@pytest.mark.postgres
def test_other_writes_handed_a_dropped_connection_fail_and_the_next_goes_through(postgres_url: str) -> None:
    """A write that is not idempotent is never run twice: its caller gets the error (the API answers 503)."""
    with create_store(postgres_url, group_commit=True, clock=lambda: NOW) as store:
        store.init_schema()
        store.record_decisions([make_decision(request_id="before")])
        dropped = _backend_pid(store)
        _terminate(postgres_url, dropped)
        runs = []

        def write(conn: Connection) -> None:
            runs.append(1)
            conn.execute(text("SELECT 1"))

        with pytest.raises(OperationalError, match="connection"):
            store._write(write)
        assert runs == [1]
        store.record_decisions([make_decision(request_id="next")])  # a fresh connection
        assert _backend_pid(store) != dropped
        assert sorted(str(r.request_id) for r in store.decisions_since(None)) == ["before", "next"]
        assert store.write_health.ok
