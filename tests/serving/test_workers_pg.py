"""Many workers on PostgreSQL: the decision log's fast path stores what SQLAlchemy stores; and with two
uvicorn workers on one store, a policy change or a key revocation made through one worker reaches the other
within a second, and concurrent queue claims through both never hand out an item twice.

One `uvicorn --workers 2` serves every test of the module. A request is sent to a chosen worker over a
keep-alive connection pinned to it: `/readyz` names the worker that answers (its pid), and every later
response on that connection is checked to come over the same TCP connection, so from the same worker.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from serving.keys import create_key
from serving.process import free_port, service_command, service_env, wait_until_up
from serving.store import create_store
from tests.serving.conftest import listing_json, make_decision, postgres_schema
from tests.serving.test_fast_paths import odd_records

pytestmark = pytest.mark.postgres

REPO = Path(__file__).resolve().parents[2]
SECOND = 1.0  # what the service promises: a change is in force on every worker within a second
SLACK = 0.5  # a busy test machine: the time to notice a change is measured, not the machine's stalls
REPLICA_RULE = {"action": "block", "kind": "term", "terms": ["replica"], "fields": ["title"]}


def test_the_postgres_fast_path_stores_what_sqlalchemy_stores(postgres_url: str) -> None:
    records = odd_records()
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    with create_store(postgres_url, clock=lambda: now) as store:
        store.init_schema()
        fast = store.record_decisions(records)  # the fast path, group-committed
        retried = store.record_decisions([records[1], make_decision(request_id="req-2")])  # a retry and a new one
        with store._write_engine.connect() as conn:
            fast_rows = _rows(conn)
            conn.execute(text("DELETE FROM review_queue"))
            conn.execute(text("DELETE FROM decisions"))
            conn.commit()
        store._write(lambda conn: store._insert_new(conn, records, now))  # the SQLAlchemy path
        with store._write_engine.connect() as conn:
            plain_rows = _rows(conn)
    assert fast == records and retried[0] == records[1]  # the retry answers with the decision stored first
    assert len(fast_rows["decisions"]) == len(records) + 1
    assert _without(fast_rows, retried[1]) == plain_rows
    lanes = sorted(str(row.lane) for row in plain_rows["review_queue"])
    assert lanes == ["audit", "review", "review", "review"]  # the two human_reviews, the old QA sample, the audit


def test_the_postgres_fast_path_refuses_a_value_too_long_for_its_column_and_takes_whole_number_floats(
    postgres_url: str,
) -> None:
    """The INSERT checks each column's length (an error, never a silently cut value), and a whole-number
    priority in a group of fractional ones is stored as sent."""
    from serving.store.postgres_decisions import postgres_insert_new

    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    with create_store(postgres_url, clock=lambda: now) as store:
        store.init_schema()
        whole, fractional = make_decision(priority=1), make_decision(priority=0.25)
        store.record_decisions([whole, fractional])
        with store._write_engine.connect() as conn:
            rows = conn.execute(text("SELECT decision_id, priority FROM decisions")).all()
            stored: dict[str, float] = {str(row[0]): float(row[1]) for row in rows}
        assert stored == {whole.decision_id: 1.0, fractional.decision_id: 0.25}
        with pytest.raises(Exception, match="too long"):  # noqa: PT011 - the driver's DataError, however wrapped
            store._write(lambda conn: postgres_insert_new(conn, [make_decision(model_version="m" * 200)], now))


def test_a_group_too_large_for_one_statement_goes_in_as_several(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group of more rows than one statement's bind parameters allow is split into statements whose $n
    placeholders each start again at $1: every row stored, queued and returned once, retries left alone."""
    from serving.store import postgres_decisions

    monkeypatch.setattr(postgres_decisions._DECISIONS, "rows_per_statement", 3)
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    records = [make_decision(request_id=f"split-{i}", priority=i / 10) for i in range(8)]
    with create_store(postgres_url, clock=lambda: now) as store:
        store.init_schema()
        first = records[:2]
        store.record_decisions(first)
        inserted = store._write(lambda conn: postgres_decisions.postgres_insert_new(conn, records, now))
        with store._write_engine.connect() as conn:
            rows = _rows(conn)
    assert inserted == {r.decision_id for r in records[2:]}  # the first two were stored before: left alone
    assert sorted(str(row.decision_id) for row in rows["decisions"]) == sorted(r.decision_id for r in records)
    assert sorted(str(row.decision_id) for row in rows["review_queue"]) == sorted(r.decision_id for r in records)
    priorities = {str(row.decision_id): float(row.priority) for row in rows["decisions"]}
    assert priorities == {r.decision_id: r.priority for r in records}  # each value in its own row


@pytest.mark.parametrize("qa_sample", [False, True])
@pytest.mark.parametrize("decision", ["auto_pass", "auto_block", "human_review"])
def test_the_fast_path_queues_a_decision_as_the_record_says(postgres_url: str, decision: str, qa_sample: bool) -> None:
    """The statement queues the decisions it inserted by SQL of its own: the same rows, lane included, as
    `DecisionRecord.queued` and `.lane` (what the SQLAlchemy path and SQLite use) for every combination."""
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    record = make_decision(decision=decision, automated=decision != "human_review", qa_sample=qa_sample)
    with create_store(postgres_url, clock=lambda: now) as store:
        store.init_schema()
        store.record_decisions([record])
        with store._write_engine.connect() as conn:
            queued = conn.execute(text("SELECT decision_id, lane, qa_sample, priority FROM review_queue")).all()
    expected = [(record.decision_id, record.lane, qa_sample, record.priority)] if record.queued else []
    assert [tuple(row) for row in queued] == expected


def _rows(conn: Any) -> dict[str, list[Any]]:
    return {
        table: list(conn.execute(text(f"SELECT * FROM {table} ORDER BY decision_id")))  # noqa: S608
        for table in ("decisions", "review_queue")
    }


def _without(rows: dict[str, list[Any]], record: Any) -> dict[str, list[Any]]:
    return {table: [row for row in found if row.decision_id != record.decision_id] for table, found in rows.items()}


class Service:
    """The running service: its URL, the uvicorn process, and one token per scope."""

    def __init__(self, url: str, process: subprocess.Popen[bytes], database_url: str, tokens: dict[str, str]) -> None:
        self.url, self.process, self.database_url, self.tokens = url, process, database_url, tokens

    def headers(self, scope: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[scope]}"}


class Worker:
    """A keep-alive connection pinned to one worker process; refuses to answer from any other.

    A refusal sent before the body is read closes its connection: the next request pins a new one to the
    same worker."""

    def __init__(self, url: str, pid: int, client: httpx.Client | None = None, local_address: object = None) -> None:
        self.url, self.pid = url, pid
        self.client, self._local_address = client, local_address

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self.client is None:
            self.client, self._local_address = _connection_to(self.url, self.pid)
        with self.client.stream(method, path, **kwargs) as response:
            assert _local_address(response) == self._local_address, "the pinned connection was replaced"
            response.read()
        if response.headers.get("connection") == "close":
            self.close()
        return response

    def policy_version(self) -> str:
        return str(self.request("GET", "/readyz").json()["policy_version"])

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None


def _local_address(response: httpx.Response) -> object:
    return response.extensions["network_stream"].get_extra_info("client_addr")


def _connection_to(url: str, pid: int) -> tuple[httpx.Client, object]:
    """A new keep-alive connection that the worker `pid` accepted (others opened on the way are closed)."""
    others: list[httpx.Client] = []
    try:
        for _ in range(100):
            client = httpx.Client(base_url=url, timeout=10)
            with client.stream("GET", "/readyz") as answer:
                address = _local_address(answer)
                answer.read()
            if int(answer.json()["worker_pid"]) == pid:
                return client, address
            others.append(client)
        raise AssertionError(f"100 new connections never reached worker {pid}")
    finally:
        for client in others:
            client.close()


@pytest.fixture(scope="module")
def postgres_database_url() -> Iterator[str]:
    """A schema of the module's own on the local server, dropped afterwards."""
    with postgres_schema("triage_workers") as url:
        yield url


@pytest.fixture(scope="module")
def service(
    bundle_dir: Path, postgres_database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Service]:
    """`uvicorn --workers 2` on the PostgreSQL store, with the default follow interval and key cache."""
    bundle = tmp_path_factory.mktemp("workers") / "bundle"  # policy changes are saved beside the bundle
    subprocess.run(["cp", "-r", str(bundle_dir), str(bundle)], check=True)
    with create_store(postgres_database_url) as store:
        store.init_schema()
        tokens = {scope: create_key(store, f"{scope}-key", scope) for scope in ("score", "read", "admin")}
    port = free_port()
    env = service_env(bundle, postgres_database_url, log_level="WARNING", monitor_refresh_seconds="0")
    command = [*service_command(port, workers=2, log_level="warning"), "--timeout-keep-alive", "60"]
    process = subprocess.Popen(command, cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, process, timeout_s=120)
        yield Service(url, process, postgres_database_url, tokens)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture
def workers(service: Service) -> Iterator[list[Worker]]:
    """One pinned connection to each of the two workers."""
    pids: set[int] = set()
    deadline = time.monotonic() + 30
    while len(pids) < 2 and time.monotonic() < deadline:
        clients = [httpx.Client(base_url=service.url, timeout=10) for _ in range(4)]  # new connections, at once
        with ThreadPoolExecutor(4) as pool:
            pids.update(int(answer.json()["worker_pid"]) for answer in pool.map(lambda c: c.get("/readyz"), clients))
        for client in clients:
            client.close()
    assert len(pids) == 2, f"new connections reached only the workers {sorted(pids)}"
    pinned = [Worker(service.url, pid) for pid in sorted(pids)]
    yield pinned
    for worker in pinned:
        worker.close()


def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> float:
    """Seconds until `condition()` held (polled every 20 ms); AssertionError after `timeout_s`."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"not within {timeout_s} s")
        time.sleep(0.02)
    return time.monotonic() - start


def test_each_worker_sees_a_policy_change_made_through_the_other_within_a_second(
    service: Service, workers: list[Worker]
) -> None:
    first, second = workers
    admin = service.headers("admin")
    put = first.request(
        "PUT", "/v1/policy", json={"t_pass": 0.02, "t_block": 0.97, "reason": "fleet-wide change"}, headers=admin
    )
    assert put.status_code == 200, put.text
    thresholds = put.json()["policy"]["version"]
    assert first.policy_version() == thresholds  # the worker that made the change serves it at once
    seen_by_second = until(lambda: second.policy_version() == thresholds)

    rule = {"rule": REPLICA_RULE, "reason": "replica watches", "force": True}
    added = second.request("PUT", "/v1/policy/rules/replicas", json=rule, headers=admin)
    assert added.status_code == 200, added.text
    with_rule = added.json()["policy"]["version"]
    seen_by_first = until(lambda: first.policy_version() == with_rule)
    patch = {"changes": {"action": "review"}, "reason": "too many wrongful blocks"}
    patched = first.request("PATCH", "/v1/policy/rules/replicas", json=patch, headers=admin)
    assert patched.status_code == 200, patched.text
    reviewing = patched.json()["policy"]["version"]
    seen_again_by_second = until(lambda: second.policy_version() == reviewing)

    assert max(seen_by_second, seen_by_first, seen_again_by_second) < SECOND + SLACK
    score = service.headers("score")
    answer = second.request("POST", "/v1/score", json=listing_json(1, title="Replica watch, brown"), headers=score)
    assert answer.status_code == 200, answer.text
    assert answer.json()["policy_version"] == reviewing
    assert answer.json()["decision"] == "human_review" and "replicas" in answer.json()["rules_matched"]


def test_a_key_revoked_through_one_worker_is_refused_by_every_worker_within_a_second(
    service: Service, workers: list[Worker]
) -> None:
    first, second = workers
    created = first.request(
        "POST", "/v1/admin/keys", json={"name": "upstream", "scopes": ["score"]}, headers=service.headers("admin")
    )
    assert created.status_code == 201, created.text
    key = {"Authorization": f"Bearer {created.json()['token']}"}

    def status_on(worker: Worker) -> int:
        return worker.request("POST", "/v1/score", json=listing_json(2), headers=key).status_code

    assert status_on(first) == status_on(second) == 200  # both workers hold the key in their cache now
    revoked = second.request("POST", "/v1/admin/keys/upstream/revoke", headers=service.headers("admin"))
    assert revoked.status_code == 200, revoked.text
    assert status_on(second) == 401  # the worker that revoked it, at once
    assert until(lambda: status_on(first) == 401) < SECOND + SLACK
    assert status_on(second) == status_on(first) == 401


def test_concurrent_claims_through_both_workers_never_hand_out_an_item_twice(
    service: Service, workers: list[Worker]
) -> None:
    reviewers = 6
    with create_store(service.database_url) as store:
        queued = store.record_decisions([make_decision() for _ in range(90)])
        tokens = [create_key(store, f"reviewer-{uuid.uuid4().hex[:8]}", "review") for _ in range(reviewers)]
    expected = {record.decision_id for record in queued}
    pids = [worker.pid for worker in workers]

    def claim_until_empty(args: tuple[int, str]) -> list[tuple[str, int]]:
        """One reviewer's tool: claims of 3 through one worker until the queue is empty."""
        index, token = args
        worker = Worker(service.url, pids[index % 2])
        claimed: list[tuple[str, int]] = []
        try:
            while True:
                response = worker.request(
                    "GET", "/v1/queue/next", params={"n": 3}, headers={"Authorization": f"Bearer {token}"}
                )
                assert response.status_code == 200, response.text
                items = response.json()["items"]
                if not items:
                    return claimed
                claimed += [(item["decision_id"], worker.pid) for item in items]
        finally:
            worker.close()

    with ThreadPoolExecutor(reviewers) as pool:
        claims = [claim for reviewer in pool.map(claim_until_empty, enumerate(tokens)) for claim in reviewer]
    ids = [decision_id for decision_id, _ in claims]
    assert len(ids) == len(set(ids)), "an item was handed out twice"
    assert expected <= set(ids)
    assert {pid for decision_id, pid in claims if decision_id in expected} == set(pids)  # both workers claimed
