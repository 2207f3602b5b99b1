"""A decision log that cannot take writes (disk full, I/O error): 503 + Retry-After, not ready, then recovery.

Nothing is acknowledged that was not logged: a scoring request whose decision could not be written fails
with 503 (the client retries; nothing is auto-passed), and so do queue claims and verdicts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

from serving.store import Store
from tests.serving.conftest import listing_json

DISK_FULL = "database or disk is full"


class FullDisk:
    """Makes every commit on `store` fail as SQLite does on a full disk, until `free()` is called."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.full = False
        self.writes_refused = 0

    def refuse(self, conn: Any) -> None:
        if self.full:
            self.writes_refused += 1
            raise sqlite3.OperationalError(DISK_FULL)

    @contextmanager
    def filled(self) -> Iterator[FullDisk]:
        engine = self.store._write_engine
        event.listen(engine, "commit", self.refuse)
        self.full = True
        try:
            yield self
        finally:
            self.full = False
            event.remove(engine, "commit", self.refuse)

    def free(self) -> None:
        self.full = False


def assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert "decision log is unavailable" in body["detail"]
    assert DISK_FULL in body["cause"]


def assert_not_ready_then_ready_after(api: Any, free: Any) -> None:
    ready = api.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["decision_log_writable"] is False
    assert any(DISK_FULL in cause for cause in ready.json()["causes"])
    free()
    api.store.write_health._last_probe = 0.0  # the probe runs at most once a second: let this check run it
    ready = api.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() | {"causes": []} == ready.json() and ready.json()["decision_log_writable"] is True


@pytest.mark.parametrize("group_commit", [None, False], ids=["group-commit", "commit-per-call"])
def test_single_and_batch_scoring_answer_503_while_the_disk_is_full_and_log_nothing(
    serve, group_commit: bool | None, caplog: pytest.LogCaptureFixture
) -> None:
    with serve(group_commit=group_commit) as api:
        assert api.client.get("/readyz").status_code == 200
        before = api.store.count_decisions()
        with FullDisk(api.store).filled() as disk, caplog.at_level("ERROR"):
            assert_unavailable(api.score(listing_json(1, title="Rolex watch replica")))
            assert_unavailable(api.batch([listing_json(i) for i in range(5)]))
            assert disk.writes_refused >= 2
            assert api.store.count_decisions() == before  # no decision was acknowledged, none half-written
            assert_not_ready_then_ready_after(api, disk.free)
        assert any("NOT READY" in r.getMessage() and DISK_FULL in r.getMessage() for r in caplog.records)

        assert api.score(listing_json(1)).status_code == 200
        assert api.batch([listing_json(i) for i in range(5)]).status_code == 200
        assert api.store.count_decisions() == before + 6


def test_a_successful_write_alone_clears_the_failure(serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a readiness probe, the next request's committed write makes the service ready again."""
    with serve() as api:
        original = api.store._insert_decisions

        def full(conn: Any, rows: Any) -> Any:
            raise OperationalError("INSERT INTO decisions ...", {}, sqlite3.OperationalError(DISK_FULL))

        monkeypatch.setattr(api.store, "_insert_decisions", full)
        assert_unavailable(api.score(listing_json(2)))
        assert not api.store.write_health.ok

        monkeypatch.setattr(api.store, "_insert_decisions", original)
        assert api.score(listing_json(2)).status_code == 200
        assert api.store.write_health.ok
        assert api.client.get("/readyz").status_code == 200


def test_queue_claims_and_verdicts_answer_503_while_the_disk_is_full(serve) -> None:
    with serve() as api:
        queued = [i for i in api.batch([listing_json(i) for i in range(20)]).json()["items"]]
        decision_id = next(i["decision_id"] for i in queued if i["decision"] == "human_review")
        review = api.headers("review")
        with FullDisk(api.store).filled() as disk:
            assert_unavailable(api.client.get("/v1/queue/next", headers=review))
            verdict = {"verdict": "approve", "review_seconds": 30}
            assert_unavailable(api.client.post(f"/v1/reviews/{decision_id}", json=verdict, headers=review))
            assert api.store.get_review(decision_id) is None
            assert_not_ready_then_ready_after(api, disk.free)

        claimed = api.client.get("/v1/queue/next", params={"n": 100}, headers=review).json()["items"]
        assert decision_id in {item["decision_id"] for item in claimed}
        verdict = {"verdict": "approve", "review_seconds": 30}
        assert api.client.post(f"/v1/reviews/{decision_id}", json=verdict, headers=review).status_code == 200


def test_readiness_stays_503_while_the_probe_write_still_fails(serve) -> None:
    with serve() as api, FullDisk(api.store).filled() as disk:
        assert_unavailable(api.score(listing_json(3)))
        api.store.write_health._last_probe = 0.0
        refused = disk.writes_refused
        assert api.client.get("/readyz").status_code == 503
        assert disk.writes_refused > refused  # the probe did try a write
        assert api.client.get("/healthz").status_code == 200  # alive: do not restart, just stop routing
