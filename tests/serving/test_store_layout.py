"""The decision log's integrity rules hold in the database itself, and databases created with the
earlier layout (a table-wide UNIQUE (listing_id, request_id), CHECKs written as IN lists) keep working."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    CheckConstraint,
    Column,
    ForeignKey,
    Index,
    MetaData,
    Table,
    UniqueConstraint,
    create_engine,
    insert,
)
from sqlalchemy.exc import IntegrityError

from serving.store import DecisionRecord, Store, create_store, schema
from tests.serving.conftest import FakeClock, make_decision, store_opener

_IN_DECISIONS = "('auto_pass', 'auto_block', 'human_review')"


def _columns_of(table: Table) -> list[Column[Any]]:
    return [
        Column(
            c.name,
            c.type,
            *(ForeignKey(fk.target_fullname) for fk in c.foreign_keys),
            primary_key=c.primary_key,
            nullable=c.nullable,
        )
        for c in table.columns
    ]


def earlier_layout() -> MetaData:
    """The schema as the first releases created it."""
    metadata = MetaData()
    Table(
        "decisions",
        metadata,
        *_columns_of(schema.decisions),
        UniqueConstraint("listing_id", "request_id", name="uq_decisions_listing_request"),
        CheckConstraint(f"decision IN {_IN_DECISIONS}", name="ck_decisions_decision"),
        CheckConstraint(
            f"would_have_been IS NULL OR would_have_been IN {_IN_DECISIONS}", name="ck_decisions_would_have_been"
        ),
        Index("ix_decisions_decided_at", "decided_at", "decision_id"),
    )
    Table(
        "review_queue",
        metadata,
        *_columns_of(schema.queue),
        CheckConstraint("status IN ('pending', 'claimed', 'done')", name="ck_queue_status"),
        Index("ix_queue_status_priority", "status", "priority"),
    )
    for table in (schema.reviews, schema.api_keys, schema.policy_audit):
        table.to_metadata(metadata)
    return metadata


LAYOUT_BACKENDS = [
    pytest.param(("sqlite", None), id="sqlite"),
    pytest.param(("sqlite", False), id="sqlite-commit-per-call"),
    pytest.param(("postgresql", None), id="postgresql", marks=pytest.mark.postgres),
]


@pytest.fixture(params=LAYOUT_BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, bool | None]:
    """A database URL (not yet initialised) and the group-commit setting to open it with."""
    backend, group_commit = request.param
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'old.db'}"
    return url, group_commit


@pytest.fixture
def open_store(database: tuple[str, bool | None], clock: FakeClock) -> Iterator[Callable[[], Store]]:
    url, group_commit = database
    with store_opener(url, group_commit, clock) as open_:
        yield open_


def write_rows(url: str, table: Table, rows: list[dict[str, Any]]) -> None:
    engine = create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(insert(table), rows)
    finally:
        engine.dispose()


def as_row(record: DecisionRecord) -> dict[str, Any]:
    return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}


def write_log_without(url: str, columns: set[str], clock: FakeClock) -> DecisionRecord:
    """A decision log as it was before `columns` were added to `decisions`, holding one decision."""
    metadata = MetaData()
    decisions = Table("decisions", metadata, *(c for c in _columns_of(schema.decisions) if c.name not in columns))
    for table in (schema.queue, schema.reviews, schema.api_keys, schema.policy_audit):
        table.to_metadata(metadata)
    engine = create_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    old = make_decision(listing_id="L-old", decided_at=clock.now, received_at=clock.now)
    write_rows(url, decisions, [{k: v for k, v in as_row(old).items() if k not in columns}])
    return old


def test_a_database_of_the_earlier_layout_opens_reads_and_takes_new_decisions(
    database: tuple[str, bool | None], open_store: Callable[[], Store], clock: FakeClock
) -> None:
    url, _ = database
    old_layout = earlier_layout()
    engine = create_engine(url)
    old_layout.create_all(engine)
    engine.dispose()
    old = make_decision(listing_id="L-old", request_id="req-old", decided_at=clock.now, received_at=clock.now)
    write_rows(url, old_layout.tables["decisions"], [as_row(old)])
    queue_row = {"decision_id": old.decision_id, "priority": old.priority, "enqueued_at": clock.now}
    write_rows(url, old_layout.tables["review_queue"], [{**queue_row, "status": "pending", "qa_sample": False}])

    store = open_store()  # init_schema on the old layout

    assert store.get_decision(old.decision_id) == old
    assert store.find_decision("L-old", "req-old") == old
    retry = make_decision(listing_id="L-old", request_id="req-old", decision="auto_pass", automated=True)
    new = [make_decision(request_id=f"req-{i}", priority=float(i)) for i in range(300)]
    stored = store.record_decisions([retry, *new, retry])
    assert [s.decision_id for s in stored] == [old.decision_id, *(n.decision_id for n in new), old.decision_id]
    assert store.count_decisions() == 301
    assert store.queue_counts() == {"pending": 301, "claimed": 0, "done": 0}
    assert store.claim("alice", n=1)[0].decision_id == new[-1].decision_id
    store.close()

    reopened = open_store()  # and again: init_schema stays safe to repeat
    assert reopened.get_decision(new[0].decision_id) == new[0]
    assert reopened.record_decisions([dataclasses.replace(new[5], decision_id="other")])[0] == new[5]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'rules.db'}"


@pytest.fixture(params=["new layout", "earlier layout"])
def initialised(request: pytest.FixtureRequest, store_url: str, clock: FakeClock) -> Iterator[Store]:
    """A store on a database created by this schema, or by the earlier layout and then initialised."""
    if request.param == "earlier layout":
        engine = create_engine(store_url)
        earlier_layout().create_all(engine)
        engine.dispose()
    store = create_store(store_url, clock=clock)
    store.init_schema()
    yield store
    store.close()


def insert_raw(store: Store, table: Table, row: dict[str, Any]) -> None:
    """Insert past the store's own checks, as another writer (or a bug) could."""
    store._write(lambda conn: conn.execute(insert(table).values(row)))  # noqa: SLF001


def test_the_database_refuses_a_second_decision_for_one_request(initialised: Store) -> None:
    first = make_decision(listing_id="L1", request_id="req-1")
    insert_raw(initialised, schema.decisions, as_row(first))

    with pytest.raises(IntegrityError):
        insert_raw(initialised, schema.decisions, as_row(make_decision(listing_id="L1", request_id="req-1")))
    for record in (
        make_decision(listing_id="L1", request_id="req-2"),
        make_decision(listing_id="L2", request_id="req-1"),
    ):
        insert_raw(initialised, schema.decisions, as_row(record))
    for _ in range(2):  # without a request_id, decisions of one listing never collide
        insert_raw(initialised, schema.decisions, as_row(make_decision(listing_id="L1")))
    assert initialised.count_decisions() == 5
    assert initialised.find_decision("L1", "req-1") == first


def test_the_database_refuses_unknown_decisions_statuses_and_orphan_queue_items(initialised: Store) -> None:
    record = make_decision()
    for bad in ({"decision": "maybe"}, {"would_have_been": "maybe"}):
        with pytest.raises(IntegrityError):
            insert_raw(initialised, schema.decisions, {**as_row(make_decision()), **bad})
    insert_raw(initialised, schema.decisions, {**as_row(record), "would_have_been": None})
    insert_raw(initialised, schema.decisions, {**as_row(make_decision()), "would_have_been": "auto_pass"})

    item = {"decision_id": record.decision_id, "priority": 0.5, "enqueued_at": record.decided_at, "qa_sample": False}
    with pytest.raises(IntegrityError):
        insert_raw(initialised, schema.queue, {**item, "status": "lost"})
    with pytest.raises(IntegrityError):  # the foreign key: a queue item needs its decision
        insert_raw(initialised, schema.queue, {**item, "decision_id": "no-such-decision", "status": "pending"})
    insert_raw(initialised, schema.queue, {**item, "status": "pending"})
    assert initialised.queue_counts()["pending"] == 1
