"""Request ids are scoped per API key and remembered with a hash of the request body, on both databases,
and databases created before that gain the per-key rule when opened."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Index, MetaData, Table, create_engine, inspect

from serving.store import ConflictError, Store, create_store, schema
from tests.serving.conftest import FakeClock, make_decision
from tests.serving.test_store_layout import _columns_of, as_row, earlier_layout, write_rows


def test_two_keys_use_one_request_id_independently(store: Store) -> None:
    first = make_decision(listing_id="L1", request_id="req-1", key_id="key-a", request_hash="h1")
    other_key = make_decision(listing_id="L1", request_id="req-1", key_id="key-b", request_hash="h2")
    retry = make_decision(listing_id="L1", request_id="req-1", key_id="key-a", request_hash="h1")
    other_body = make_decision(listing_id="L1", request_id="req-1", key_id="key-a", request_hash="h3")
    added = make_decision(listing_id="L2", request_id="req-1", key_id="key-a", request_hash="h3")

    stored = store.record_decisions([first, other_key])
    again = store.record_decisions([retry])
    with pytest.raises(ConflictError, match="different body"):  # the request_id reused with another body
        store.record_decisions([added, other_body])

    assert [s.decision_id for s in stored] == [first.decision_id, other_key.decision_id]
    assert again == [first]  # the first decision of key-a, with the hash it was logged with
    assert again[0].request_hash == "h1" and again[0].key_id == "key-a"
    assert store.find_decision("L2", "req-1", "key-a") is None  # refused whole: nothing of it logged
    merged = [  # two callers' bodies under one request_id in one write, as the group-commit writer merges them
        make_decision(listing_id="L1", request_id="req-2", key_id="key-a", request_hash="h1"),
        make_decision(listing_id="L1", request_id="req-2", key_id="key-a", request_hash="h2"),
        make_decision(listing_id="L2", request_id="req-2", key_id="key-a", request_hash="h2"),
    ]
    with pytest.raises(ConflictError, match="different body"):
        store.record_decisions(merged)
    assert store.find_decision("L2", "req-2", "key-a") is None and store.find_decision("L1", "req-2", "key-a") is None
    assert store.find_decision("L1", "req-1", "key-b") == other_key
    assert store.find_decision("L1", "req-1") is None  # no decision was logged without a key
    assert store.count_decisions() == 2


def _layout_before_keys() -> MetaData:
    """The layout of the release before per-key request ids: no key_id/request_hash columns, and a
    partial unique index on (listing_id, request_id)."""
    metadata = MetaData()
    added = {"key_id", "request_hash"}
    decisions = Table("decisions", metadata, *(c for c in _columns_of(schema.decisions) if c.name not in added))
    Index(
        schema.IDEMPOTENCY_INDEX_BEFORE,
        decisions.c.listing_id,
        decisions.c.request_id,
        unique=True,
        sqlite_where=decisions.c.request_id.is_not(None),
        postgresql_where=decisions.c.request_id.is_not(None),
    )
    return metadata


def _old_row(metadata: MetaData) -> dict[str, object]:
    columns = set(metadata.tables["decisions"].c.keys())
    old = make_decision(listing_id="L-old", request_id="req-old")
    return {k: v for k, v in as_row(old).items() if k in columns}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path / 'before.db'}"


def _opened(url: str, layout: Callable[[], MetaData], clock: FakeClock) -> tuple[Store, dict[str, object]]:
    metadata = layout()
    engine = create_engine(url)
    metadata.create_all(engine)
    engine.dispose()
    row = _old_row(metadata)
    write_rows(url, metadata.tables["decisions"], [row])
    store = create_store(url, clock=clock)
    store.init_schema()
    store.init_schema()  # safe to repeat
    return store, row


def test_a_log_of_the_release_before_gains_per_key_request_ids(url: str, clock: FakeClock) -> None:
    store, old = _opened(url, _layout_before_keys, clock)
    try:
        engine = create_engine(url)
        indexes = {i["name"] for i in inspect(engine).get_indexes("decisions")}
        engine.dispose()
        assert schema.IDEMPOTENCY_INDEX.name in indexes and schema.IDEMPOTENCY_INDEX_BEFORE not in indexes
        stored_old = store.get_decision(str(old["decision_id"]))
        assert stored_old is not None and stored_old.key_id == "" and stored_old.request_hash is None

        a = make_decision(listing_id="L1", request_id="r", key_id="key-a")
        b = make_decision(listing_id="L1", request_id="r", key_id="key-b")
        assert store.record_decisions([a, b]) == [a, b]
        retry = make_decision(listing_id="L1", request_id="r", key_id="key-a", decision="auto_pass")
        assert store.record_decisions([retry]) == [a]
    finally:
        store.close()


def test_the_first_layout_keeps_one_decision_per_request_id(url: str, clock: FakeClock) -> None:
    """A table-wide UNIQUE (listing_id, request_id): PostgreSQL drops it for the per-key index; SQLite
    cannot drop a constraint, so there a second key reusing a request id is refused, never merged."""
    store, _ = _opened(url, earlier_layout, clock)
    try:
        a = make_decision(listing_id="L1", request_id="r", key_id="key-a")
        b = make_decision(listing_id="L1", request_id="r", key_id="key-b")
        assert store.record_decisions([a]) == [a]
        if url.startswith("postgresql"):
            assert store.record_decisions([b]) == [b]
        else:
            with pytest.raises(ConflictError):
                store.record_decisions([b])
        assert store.record_decisions([make_decision(listing_id="L1", request_id="r", key_id="key-a")]) == [a]
    finally:
        store.close()
