"""Reliability fixtures: a real uvicorn process on a temp SQLite decision log, keys, load, and a figures report.

Every test here starts the service as production runs it (`uvicorn serving.app:create_app --factory`) on
loopback, with a private copy of the session bundle (admin calls may rewrite its policy). The figures each
check measures (requests sent, acknowledged, found in the log, lost...) are printed in a "reliability
figures" section at the end of the run, with or without `-s`, and attached to the JUnit report as properties.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from serving.keys import create_key
from serving.process import free_port, service_command, service_env, wait_until_up
from serving.store import create_store

REPO = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 60.0
KEY_SCOPES = {
    "score": "score",
    "review": "review",
    "read": "read",
    "audit": "audit",
    "supervise": "supervise",
    "admin": "admin",
    "reviewer-a": "review",
    "reviewer-b": "review",
    "reviewer-c": "review",
}

# --- figures report ----------------------------------------------------------------------------------


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[..., None]:
    """report(name=value, ...): keep a check's figures for the end-of-run summary (`tests/conftest.py`) and the
    JUnit XML."""

    def record(**figures: Any) -> None:
        for name, value in figures.items():
            request.node.user_properties.append((name, value))

    return record


# --- the service process -----------------------------------------------------------------------------


@dataclass
class Service:
    """One uvicorn process serving the app; its JSON log goes to `log_path`."""

    bundle: Path
    db_path: Path
    log_path: Path
    tokens: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def database_url(self) -> str:
        return f"sqlite:///{self.db_path}"

    def start(self, wait_ready: bool = True) -> Service:
        self.port = free_port()
        env = {
            # the checks count model-scored decisions
            **service_env(self.bundle, self.database_url, log_level="INFO", request_timeout_ms="10000"),
            **self.env,
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                service_command(self.port), cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self._wait("/readyz" if wait_ready else "/healthz")
        return self

    def _wait(self, path: str) -> None:
        assert self.proc is not None
        try:
            wait_until_up(self.url, self.proc, path, timeout_s=START_TIMEOUT_S)
        except RuntimeError as error:
            self.stop()
            raise RuntimeError(f"{error}:\n{self.log_text()[-3000:]}") from error

    def kill(self) -> None:
        """SIGKILL: no shutdown handler runs, nothing is flushed."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def headers(self, key: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[key]}"} if key else {}

    def client(self, key: str | None = "admin", timeout: float = 30.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=self.headers(key), timeout=timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """Read the decision log directly (a separate SQLite connection; the service may be running)."""
        with sqlite3.connect(self.db_path, timeout=30) as conn:
            return conn.execute(sql).fetchall()


def create_keys(database_url: str) -> dict[str, str]:
    with create_store(database_url, group_commit=False) as store:
        store.init_schema()
        return {name: create_key(store, name, scope) for name, scope in KEY_SCOPES.items()}


@pytest.fixture
def private_bundle(bundle_dir: Path, tmp_path: Path) -> Path:
    """A copy of the session bundle this test may change (policy saves, tampering)."""
    return Path(shutil.copytree(bundle_dir, tmp_path / "bundle"))


def new_service(directory: Path, bundle: Path, name: str, db_path: Path | None = None, **env: str) -> Service:
    """A not-yet-started service with its own database (keys created) and log file in `directory`."""
    db = db_path or directory / f"{name}.db"
    return Service(bundle, db, directory / f"{name}.log", create_keys(f"sqlite:///{db}"), env)


@pytest.fixture(scope="module")
def shared_service(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One service for a whole module of read-mostly checks (own bundle copy and database)."""
    directory = tmp_path_factory.mktemp("shared-service")
    bundle = Path(shutil.copytree(bundle_dir, directory / "bundle"))
    service = new_service(directory, bundle, "service").start()
    yield service
    service.stop()


@pytest.fixture
def make_service(tmp_path: Path, private_bundle: Path) -> Iterator[Callable[..., Service]]:
    """make_service(bundle=None, wait_ready=True, **env): a started service; every one is stopped afterwards."""
    services: list[Service] = []
    counter = itertools.count()

    def make(bundle: Path | None = None, wait_ready: bool = True, db_path: Path | None = None, **env: str) -> Service:
        service = new_service(tmp_path, bundle or private_bundle, f"service-{next(counter)}", db_path, **env)
        services.append(service)
        return service.start(wait_ready)

    yield make
    for service in services:
        service.stop()


def restart(service: Service) -> Service:
    """The same service (bundle, database, keys) in a fresh process, still stopped by its fixture."""
    if service.alive():
        service.stop()
    return service.start()


# --- load ------------------------------------------------------------------------------------------


def listing(i: int, **overrides: Any) -> dict[str, Any]:
    """A valid listing; every 7th is in a regulated category, so human review (and the queue) gets traffic."""
    body: dict[str, Any] = {
        "listing_id": f"R-{i}",
        "merchant_id": f"M{i % 97:05d}",
        "created_at": "2025-11-01T10:00:00+00:00",
        "title": ("Vitamin C tablets 1000mg" if i % 7 == 0 else f"Leather wallet model {i % 13}"),
        "description": "Genuine product with fast shipping.",
        "brand": "",
        "category": "health" if i % 7 == 0 else "fashion",
        "market": ("DE", "US", "FR")[i % 3],
        "price": round(5 + (i % 200) * 1.7, 2),
        "merchant_tenure_days": i % 900,
        "image_count": i % 6,
        "has_certificate": 0,
    }
    body.update(overrides)
    return body


@dataclass
class LoadResult:
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    transport_errors: int = 0
    retried: int = 0  # transport errors retried with the same request_id (Load with retries)
    acknowledged: list[str] = field(default_factory=list)  # decision ids in 200 responses
    fallback: int = 0  # acknowledged decisions not scored by the model (human_review, fail safe)
    seconds: float = 0.0

    @property
    def server_errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)


class Load:
    """Concurrent scoring traffic (asyncio + httpx), bounded by a decision count and a deadline.

    Requests alternate between one listing and a batch of `batch` listings. `stop()` ends it early (from
    another thread); after a transport error (the server died) a worker stops sending. With `retries`,
    it behaves as a careful client does on a live server: every listing carries a request_id (the
    idempotency key) and a transport error (a dropped keep-alive connection, a timeout on a starved
    machine) is retried with the same body, so a decision logged but never acknowledged comes back.
    """

    def __init__(
        self,
        service: Service,
        decisions: int,
        concurrency: int = 32,
        batch: int = 10,
        max_seconds: float = 60.0,
        first_id: int = 0,
        retries: int = 0,
    ) -> None:
        self.service, self.decisions, self.concurrency = service, decisions, concurrency
        self.retries = retries
        self._request_ids = itertools.count()
        self.batch, self.max_seconds = batch, max_seconds
        self.result = LoadResult()
        self._next = itertools.count(first_id)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> LoadResult:
        start = time.perf_counter()
        asyncio.run(self._main(start + self.max_seconds))
        self.result.seconds = time.perf_counter() - start
        return self.result

    def start_in_thread(self) -> Load:
        self._thread = threading.Thread(target=self.run, daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float = 60.0) -> LoadResult:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "load did not stop in time"
        return self.result

    async def _main(self, deadline: float) -> None:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(
            base_url=self.service.url, headers=self.service.headers("score"), limits=limits, timeout=30
        ) as client:
            await asyncio.gather(*(self._worker(client, w, deadline) for w in range(self.concurrency)))

    def _keyed(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body with an idempotency key when requests are retried (a batch has one for all items)."""
        return {**body, "request_id": f"load-{next(self._request_ids)}"} if self.retries else body

    async def _worker(self, client: httpx.AsyncClient, worker: int, deadline: float) -> None:
        result = self.result
        n = 0
        while not self._stop.is_set() and time.perf_counter() < deadline and len(result.acknowledged) < self.decisions:
            n += 1
            single = (n + worker) % 2 == 0
            if single:
                path, body = "/v1/score", self._keyed(listing(next(self._next)))
            else:
                items = [listing(next(self._next)) for _ in range(self.batch)]
                path, body = "/v1/score/batch", self._keyed({"items": items})
            for attempt in range(self.retries + 1):
                try:
                    response = await client.post(path, json=body)
                    break
                except httpx.TransportError:
                    if attempt < self.retries:
                        result.retried += 1
                        await asyncio.sleep(0.2 * (attempt + 1))
                        continue
                    result.transport_errors += 1
                    return  # the server is gone: this request was never acknowledged
            result.requests += 1
            result.statuses[response.status_code] = result.statuses.get(response.status_code, 0) + 1
            if response.status_code == 200:
                body = response.json()
                items_out = [body] if single else body["items"]
                result.acknowledged.extend(item["decision_id"] for item in items_out)
                result.fallback += sum(item["fallback_reason"] is not None for item in items_out)


# --- checks on the decision log ------------------------------------------------------------------------


def logged_ids(service: Service) -> set[str]:
    return {row[0] for row in service.query("SELECT decision_id FROM decisions")}


def queue_consistency(service: Service) -> dict[str, int]:
    """Counts that must hold for a consistent queue: every human_review decision has exactly one queue row
    and no queue row belongs to anything else."""
    ((decisions,),) = service.query("SELECT count(*) FROM decisions")
    ((review,),) = service.query("SELECT count(*) FROM decisions WHERE decision = 'human_review'")
    ((queue_rows,),) = service.query("SELECT count(*) FROM review_queue")
    ((distinct,),) = service.query("SELECT count(DISTINCT decision_id) FROM review_queue")
    ((unqueued,),) = service.query(
        "SELECT count(*) FROM decisions d LEFT JOIN review_queue q ON q.decision_id = d.decision_id "
        "WHERE d.decision = 'human_review' AND q.decision_id IS NULL"
    )
    ((stray,),) = service.query(
        "SELECT count(*) FROM review_queue q LEFT JOIN decisions d ON d.decision_id = q.decision_id "
        "WHERE d.decision_id IS NULL OR (d.decision != 'human_review' AND d.qa_sample = 0)"
    )
    return {
        "decisions": decisions,
        "human_review": review,
        "queue_rows": queue_rows,
        "queue_duplicates": queue_rows - distinct,
        "review_without_queue_row": unqueued,
        "queue_rows_without_review_decision": stray,
    }


def route_some_automatically(service: Service, t_pass: float = 0.03, t_block: float = 0.6) -> None:
    """The small test bundle's guaranteed policy queues almost everything; these thresholds give a mix
    of auto_pass, human_review (and QA samples) so queue checks see both sides. A tiered bundle's listings
    pass only under every tier's t_pass as well: each tier gets `t_pass` too."""
    with service.client("admin") as client:
        current = client.get("/v1/policy")
        deadline = time.monotonic() + 30
        while current.status_code in (429, 503) and time.monotonic() < deadline:  # a transient refusal: retry
            time.sleep(0.5)
            current = client.get("/v1/policy")
        assert current.status_code == 200, current.text
        tiers = [t["name"] for t in current.json()["tiers"]]
        body = {"t_pass": t_pass, "t_block": t_block, "reason": "reliability test"}
        response = client.put("/v1/policy", json={**body, "tier_pass": dict.fromkeys(tiers, t_pass)} if tiers else body)
    assert response.status_code == 200, response.text


def decision_mix(service: Service) -> dict[str, int]:
    return {str(d): int(n) for d, n in service.query("SELECT decision, count(*) FROM decisions GROUP BY decision")}
