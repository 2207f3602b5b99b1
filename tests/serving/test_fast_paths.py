"""The service's fast paths give the same answers as the plain ones they replace.

SQLite decision log written with prepared statements (vs SQLAlchemy), single listings micro-batched
(vs one request at a time), and two uvicorn workers sharing one SQLite log (idempotency across
processes rests on the UNIQUE constraint).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from serving.store import DecisionRecord, create_store, schema
from serving.store.records import new_ids
from tests.serving.conftest import listing_json, make_decision

REPO = Path(__file__).resolve().parents[2]


def odd_records() -> list[DecisionRecord]:
    """Records that exercise every value conversion: offsets, whole seconds, None, JSON, booleans."""
    berlin = timezone(timedelta(hours=2))
    return [
        make_decision(received_at=datetime(2025, 6, 1, 14, 0, 0, 0, tzinfo=berlin)),
        make_decision(
            decision="auto_block",
            automated=True,
            request_id="req-1",
            statement_of_reasons={"puid": "x", "redress": ["internal_complaint_handling"], "ü": "ß"},
            received_at=datetime(2025, 6, 1, 12, 0, 0, 123456, tzinfo=UTC),
        ),
        make_decision(
            decision="auto_pass", automated=True, risk=None, t_pass=None, t_block=None, qa_sample=False, reasons=[]
        ),
        make_decision(qa_sample=True, would_have_been="auto_pass", fallback_reason="scoring_timeout", priority=0.0),
        make_decision(decision="auto_pass", automated=True, qa_sample=True, inclusion_prob=0.1234567890123),
        make_decision(inclusion_prob=1.0),
    ]


def raw_rows(path: Path, table: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY decision_id").fetchall()  # noqa: S608


def test_the_sqlite_fast_path_stores_the_bytes_sqlalchemy_stores(tmp_path: Path) -> None:
    records = odd_records()
    now = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
    fast = create_store(f"sqlite:///{tmp_path / 'fast.db'}", clock=lambda: now)
    plain = create_store(f"sqlite:///{tmp_path / 'plain.db'}", clock=lambda: now)
    with fast, plain:
        fast.init_schema()
        plain.init_schema()
        fast.record_decisions(records)
        plain._write(lambda conn: plain._insert_new(conn, records, now))  # the SQLAlchemy path
        assert fast.get_decision(records[1].decision_id) == records[1]
    for table in ("decisions", "review_queue"):
        assert raw_rows(tmp_path / "fast.db", table) == raw_rows(tmp_path / "plain.db", table)
    queued = raw_rows(tmp_path / "fast.db", "review_queue")
    assert len(queued) == 4  # the two human_reviews, the old QA sample and the audit
    lane = [column.name for column in schema.queue.columns].index("lane")
    assert sorted(str(row[lane]) for row in queued) == ["audit", "review", "review", "review"]


@pytest.mark.parametrize("group_commit", [True, False], ids=["group-commit", "commit-per-call"])
def test_a_batch_mixing_retries_and_new_decisions(tmp_path: Path, group_commit: bool) -> None:
    with create_store(f"sqlite:///{tmp_path / 'log.db'}", group_commit=group_commit) as store:
        store.init_schema()
        (first,) = store.record_decisions([make_decision(listing_id="A", request_id="r1")])
        retry, new = make_decision(listing_id="A", request_id="r1"), make_decision(listing_id="B", request_id="r1")

        stored = store.record_decisions([new, retry])

        assert [s.decision_id for s in stored] == [new.decision_id, first.decision_id]
        assert store.count_decisions() == 2
        assert store.queue_counts()["pending"] == 2  # the retry is not queued twice


def test_decision_ids_are_unique_time_ordered_uuids() -> None:
    ids = new_ids(1000)
    later = new_ids(1)[0]
    parsed = [uuid.UUID(i) for i in ids]
    assert len(set(ids)) == 1000 and all(p.version == 7 and p.variant == uuid.RFC_4122 for p in parsed)
    assert max(i[:13] for i in ids) <= later[:13]  # the millisecond prefix never goes backwards


def test_concurrent_single_requests_keep_their_own_decisions(serve) -> None:
    with serve() as api:
        bodies = [{**listing_json(i % 10), "request_id": f"req-{i % 20}"} for i in range(60)]

        with ThreadPoolExecutor(16) as pool:
            answers = [r.json() for r in pool.map(api.score, bodies)]

        for body, answer in zip(bodies, answers, strict=True):
            assert (answer["listing_id"], answer["request_id"]) == (body["listing_id"], body["request_id"])
        by_key: dict[tuple[object, object], set[str]] = {}
        for answer in answers:
            by_key.setdefault((answer["listing_id"], answer["request_id"]), set()).add(answer["decision_id"])
        assert all(len(ids) == 1 for ids in by_key.values())  # a retry, even a concurrent one, gets the first
        assert api.store.count_decisions() == len(by_key) == 20
        single = api.score(listing_json(3)).json()
        assert single["risk"] == answers[3]["risk"]  # scored alone or with others: the same risk


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_workers_share_one_sqlite_log_and_stay_idempotent(bundle_dir: Path, tmp_path: Path) -> None:
    from serving.keys import create_key

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    with create_store(url) as store:
        store.init_schema()
        token = create_key(store, "workers", "score")
    port = free_port()
    env = {**os.environ, "TRIAGE_BUNDLE": str(bundle_dir), "TRIAGE_DATABASE_URL": url, "TRIAGE_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "uvicorn", "serving.app:create_app", "--factory", "--port", str(port)]
    server = subprocess.Popen([*command, "--workers", "2", "--log-level", "warning"], cwd=REPO, env=env)
    try:
        wait_ready(port)
        headers = {"Authorization": f"Bearer {token}"}

        def post(i: int) -> dict[str, object]:
            body = {**listing_json(i % 5), "request_id": f"req-{i % 5}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as client:  # new connection
                response = client.post("/v1/score", json=body)
            assert response.status_code == 200, response.text
            return response.json()

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(post, range(80)))
    finally:
        server.terminate()
        server.wait(timeout=30)
    ids = {(a["listing_id"], a["decision_id"]) for a in answers}
    assert len(ids) == 5
    with create_store(url) as store:
        assert store.count_decisions() == 5


def wait_ready(port: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("the service did not become ready")
