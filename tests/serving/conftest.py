"""Store fixtures: one SQLite file per test, and a fresh schema on the local PostgreSQL server."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import create_engine, text

from serving.store import SCOPES, DecisionRecord, Store, create_store

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from serving.settings import Settings

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


@contextmanager
def postgres_schema(prefix: str = "triage_test") -> Iterator[str]:
    """A URL whose search_path is a schema of its own on the local server, dropped afterwards."""
    schema = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # the marker says it needs the server; fail loudly, never skip silently
        admin.dispose()
        raise RuntimeError(f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}") from exc
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


BACKENDS = [
    pytest.param(("sqlite", None), id="sqlite"),  # group commit (the default)
    pytest.param(("sqlite", False), id="sqlite-commit-per-call"),
    pytest.param(("postgresql", None), id="postgresql", marks=pytest.mark.postgres),  # connection pool
    pytest.param(("postgresql", True), id="postgresql-group-commit", marks=pytest.mark.postgres),
]


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock) -> Iterator[Callable[..., Store]]:
    """Opens stores on this test's database (same database every call, so re-opening can be tested)."""
    backend, group_commit = request.param
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else f"sqlite:///{tmp_path / 'triage.db'}"
    with store_opener(url, group_commit, clock) as open_store:
        yield open_store


@contextmanager
def store_opener(url: str, group_commit: bool | None, clock: FakeClock) -> Iterator[Callable[..., Store]]:
    """A function that opens (and initialises) stores on `url`; every store it opened is closed on exit."""
    opened: list[Store] = []

    def open_store(**options: object) -> Store:
        options.setdefault("clock", clock)
        options.setdefault("group_commit", group_commit)
        store = create_store(url, **options)  # type: ignore[arg-type]
        store.init_schema()
        opened.append(store)
        return store

    try:
        yield open_store
    finally:
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


# -- the HTTP service ---------------------------------------------------------------------------------


def listing_json(i: int = 0, **overrides: object) -> dict[str, object]:
    """A valid listing body for POST /v1/score."""
    body: dict[str, object] = {
        "listing_id": f"L-{i}",
        "merchant_id": f"M{i % 50:05d}",
        "created_at": "2025-11-01T10:00:00+00:00",
        "title": "Leather wallet, brown",
        "description": "Genuine leather wallet with six card slots.",
        "brand": "",
        "category": "Fashion",
        "market": "DE",
        "price": 29.9,
        "merchant_tenure_days": 400,
        "image_count": 3,
        "has_certificate": 0,
    }
    body.update(overrides)
    return body


@pytest.fixture
def own_bundle(bundle_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the session bundle, for tests that change it (policy saves, tampering)."""
    import shutil

    return Path(shutil.copytree(bundle_dir, tmp_path / "bundle"))


@pytest.fixture
def api_settings(bundle_dir: Path, tmp_path: Path):
    from serving.settings import Settings

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "bundle": str(bundle_dir),
            "database_url": f"sqlite:///{tmp_path / 'service.db'}",
            "group_commit_ms": 1.0,
            # Tests that compare scores need every item scored: a loaded CI machine must not turn a
            # slow first request into a (correct, but different) fail-safe fallback. Budget tests
            # override this.
            "request_timeout_ms": 10_000,
        }
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


class Api:
    """A TestClient on a running app (lifespan done) plus one key per scope."""

    def __init__(self, client: TestClient, app: FastAPI) -> None:
        self.client, self.app = client, app
        self.store: Store = app.state.store
        self.tokens = {scope: self._token(f"{scope}-key", scope) for scope in SCOPES}

    def _token(self, name: str, scope: str) -> str:
        """A new key, or a new token for it when the app restarted on the same database."""
        from serving.keys import create_key, rotate_key
        from serving.store import ConflictError

        try:
            return create_key(self.store, name, scope)
        except ConflictError:
            token = rotate_key(self.store, name)
            assert token is not None
            return token

    def headers(self, scope: str = "score") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}

    def key(self, name: str, scopes: str) -> dict[str, str]:
        from serving.keys import create_key

        return {"Authorization": f"Bearer {create_key(self.store, name, scopes)}"}

    def post(self, path: str, body: object, scope: str = "score") -> httpx.Response:
        """POST body as JSON; Python's encoder writes NaN/Infinity literals, as careless clients do."""
        import json

        headers = {**self.headers(scope), "content-type": "application/json"}
        return self.client.post(path, content=json.dumps(body), headers=headers)

    def score(self, body: dict[str, object], scope: str = "score") -> httpx.Response:
        return self.post("/v1/score", body, scope)

    def batch(self, items: list[dict[str, object]], **extra: object) -> httpx.Response:
        return self.post("/v1/score/batch", {"items": items, **extra})


@pytest.fixture
def serve(api_settings: Callable[..., Settings]) -> Callable[..., AbstractContextManager[Api]]:
    """serve(**settings) -> context manager yielding an Api on a started app."""
    from contextlib import contextmanager

    from fastapi.testclient import TestClient

    from serving.app import create_app

    @contextmanager
    def run(**overrides: object) -> Iterator[Api]:
        app = create_app(api_settings(**overrides))
        with TestClient(app, raise_server_exceptions=False) as client:
            yield Api(client, app)

    return run
