"""Store fixtures: one SQLite file per test, and a fresh schema on the local PostgreSQL server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from serving.store import DecisionRecord, Store, create_store

POSTGRES_URL = os.environ.get("TRIAGE_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class FakeClock:
    """A settable clock, so lease expiry is tested without sleeping."""

    def __init__(self) -> None:
        self.now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL whose search_path is a schema of its own, dropped afterwards."""
    schema = f"triage_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # the marker says it needs the server; fail loudly, never skip silently
        admin.dispose()
        raise RuntimeError(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}") from exc
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


BACKENDS = [
    pytest.param(("sqlite", None), id="sqlite"),  # group commit (the default)
    pytest.param(("sqlite", False), id="sqlite-commit-per-call"),
    pytest.param(("postgresql", None), id="postgresql", marks=pytest.mark.postgres),  # connection pool
    pytest.param(("postgresql", True), id="postgresql-group-commit", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> Iterator[Callable[..., Store]]:
    """Opens stores on this test's database (same database every call, so re-opening can be tested)."""
    backend, group_commit = request.param
    if backend == "postgresql":
        url = request.getfixturevalue("postgres_url")
    else:
        url = f"sqlite:///{tmp_path / 'triage.db'}"
    opened: list[Store] = []

    def open_store(**options: object) -> Store:
        options.setdefault("clock", clock)
        options.setdefault("group_commit", group_commit)
        store = create_store(url, **options)  # type: ignore[arg-type]
        store.init_schema()
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()


@pytest.fixture
def store(store_factory: Callable[..., Store]) -> Store:
    return store_factory()


_ids = count()


def make_decision(**overrides: object) -> DecisionRecord:
    """A plausible decision; `decision='human_review'` ones go to the queue."""
    n = next(_ids)
    listing_id = str(overrides.pop("listing_id", f"L{n:06d}"))
    values: dict[str, object] = {
        "listing_id": listing_id,
        "decision": "human_review",
        "automated": False,
        "policy_version": "policy-1",
        "model_version": "model-1",
        "risk": 0.42,
        "t_pass": 0.1,
        "t_block": 0.9,
        "priority": 0.42,
        "rules_matched": ["regulated_category"],
        "reasons": [{"feature": "price", "contribution": 0.12}],
        "listing": {
            "listing_id": listing_id,
            "merchant_id": "M1",
            "created_at": "2025-05-01T10:00:00+00:00",
            "title": "cream",
            "description": "heals everything",
            "brand": "",
            "category": "health",
            "market": "DE",
            "price": 12.5,
            "merchant_tenure_days": 30,
            "image_count": 2,
            "has_certificate": 0,
        },
    }
    values.update(overrides)
    return DecisionRecord(**values)  # type: ignore[arg-type]
