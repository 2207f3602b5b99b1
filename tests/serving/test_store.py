"""Decision log, review queue, labels and policy audit on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import pandas as pd
import pytest
from sqlalchemy import create_engine

from features.config import DataConfig
from serving.store import ConflictError, DecisionRecord, NotFoundError, Store, create_store
from serving.store.writer import GroupCommitWriter
from tests.serving.conftest import FakeClock, make_decision

REPO = Path(__file__).resolve().parents[2]


def run_together(n: int, work: Callable[[int], object]) -> list[object]:
    """Run work(0..n-1) on n threads released at the same moment."""
    barrier = threading.Barrier(n)

    def start(i: int) -> object:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(start, range(n)))


def queue_some(store: Store, n: int) -> list[DecisionRecord]:
    return store.record_decisions([make_decision(priority=float(i)) for i in range(n)])


# -- decision log -------------------------------------------------------------------------------


def test_recorded_decisions_are_readable_after_reopening(store_factory: Callable[..., Store]) -> None:
    store = store_factory()
    written = [make_decision(decision="auto_pass", automated=True, request_id=f"r{i}") for i in range(20)]
    written.append(make_decision(decision="auto_block", risk=None, fallback_reason="model_unavailable"))
    written.append(
        make_decision(
            decision="auto_block",
            automated=True,
            statement_of_reasons={
                "puid": "x",
                "decision_ground": "illegal_content",
                "automated_decision": True,
            },
        )
    )
    for start in range(0, len(written), 5):
        store.record_decisions(written[start : start + 5])
    store.close()

    reopened = store_factory()
    assert reopened.count_decisions() == len(written)
    for record in written:
        assert reopened.get_decision(record.decision_id) == record


def test_human_review_and_qa_samples_are_queued_auto_decisions_are_not(store: Store) -> None:
    store.record_decisions(
        [
            make_decision(decision="human_review"),
            make_decision(decision="human_review", would_have_been="auto_pass", qa_sample=True),
            make_decision(decision="auto_pass", automated=True),
            make_decision(decision="auto_block", automated=True),
        ]
    )
    assert store.queue_counts() == {"pending": 2, "claimed": 0, "done": 0}


def test_a_retried_request_returns_the_stored_decision(store: Store) -> None:
    first = store.record_decisions([make_decision(listing_id="L1", request_id="req-1", decision="auto_block")])[0]
    retry = make_decision(listing_id="L1", request_id="req-1", decision="auto_pass", risk=0.01)

    stored = store.record_decisions([retry, retry])

    assert [s.decision_id for s in stored] == [first.decision_id] * 2
    assert stored[0].decision == "auto_block"
    assert store.count_decisions() == 1
    assert store.find_decision("L1", "req-1") == first


def test_a_retried_batch_returns_each_stored_decision_and_stores_only_the_new_ones(store: Store) -> None:
    first = store.record_decisions([make_decision(request_id=f"req-{i}", priority=float(i)) for i in range(600)])
    retried = [make_decision(listing_id=r.listing_id, request_id=r.request_id, decision="auto_pass") for r in first]
    new = [make_decision(request_id="req-new") for _ in range(300)]
    batch = [record for pair in zip(retried[:300], new, strict=True) for record in pair] + retried[300:]

    stored = store.record_decisions(batch)

    expected = [record for pair in zip(first[:300], new, strict=True) for record in pair] + first[300:]
    assert stored == expected
    assert store.count_decisions() == 900
    assert store.queue_counts()["pending"] == 900  # a retry is never queued twice


@pytest.mark.parametrize("size", [1, 255, 256, 257, 1000])
def test_batches_of_any_size_are_stored_and_queued_in_order(store: Store, size: int) -> None:
    records = [
        make_decision(decision="auto_pass", automated=True, qa_sample=i % 3 == 0, request_id=f"r{i}" if i % 2 else None)
        for i in range(size)
    ]
    assert store.record_decisions(records) == records
    assert store.count_decisions() == size
    assert store.queue_counts()["pending"] == len(range(0, size, 3))  # the QA samples
    assert store.get_decision(records[-1].decision_id) == records[-1]


def test_concurrent_retries_of_one_request_store_one_decision(store: Store) -> None:
    def attempt(_: int) -> str:
        return store.record_decisions([make_decision(listing_id="L7", request_id="req-7")])[0].decision_id

    decision_ids = run_together(16, attempt)

    assert len(set(decision_ids)) == 1
    assert store.count_decisions() == 1
    assert store.queue_counts()["pending"] == 1


def test_decisions_without_request_id_are_never_merged(store: Store) -> None:
    store.record_decisions([make_decision(listing_id="L2"), make_decision(listing_id="L2")])
    assert store.count_decisions() == 2


def test_a_reused_decision_id_is_refused_without_losing_concurrent_writes(store: Store) -> None:
    taken = store.record_decisions([make_decision()])[0]

    def write(i: int) -> str:
        if i == 0:
            with pytest.raises(ConflictError):
                store.record_decisions([make_decision(decision_id=taken.decision_id)])
            return ""
        return store.record_decisions([make_decision()])[0].decision_id

    written = [d for d in run_together(8, write) if d]

    assert all(store.get_decision(str(d)) is not None for d in written)
    assert store.count_decisions() == 1 + len(written)


def test_iter_decisions_pages_in_time_order(store: Store, clock: FakeClock) -> None:
    for _ in range(25):
        clock.advance(1)
        store.record_decisions([make_decision(decided_at=clock.now)])
    everything = list(store.iter_decisions(page_size=10))
    recent = store.decisions_since(everything[20].decided_at)

    assert [r.decided_at for r in everything] == sorted(r.decided_at for r in everything)
    assert len({r.decision_id for r in everything}) == 25
    assert [r.decision_id for r in recent] == [r.decision_id for r in everything[20:]]
    assert len(store.decisions_since(limit=7)) == 7


def test_records_refuse_invalid_values() -> None:
    with pytest.raises(ValueError, match="decision"):
        make_decision(decision="maybe")
    with pytest.raises(ValueError, match="risk"):
        make_decision(risk=float("nan"))


# -- review queue -------------------------------------------------------------------------------


def test_claims_hand_out_the_highest_priority_first(store: Store) -> None:
    queue_some(store, 5)
    claimed = store.claim("alice", n=3)
    assert [item.priority for item in claimed] == [4.0, 3.0, 2.0]
    assert all(item.claimed_by == "alice" and item.status == "claimed" for item in claimed)
    assert claimed[0].decision.listing["category"] == "health"


def test_concurrent_claimers_never_share_an_item(store: Store) -> None:
    queued = {r.decision_id for r in queue_some(store, 60)}

    def drain(worker: int) -> list[str]:
        mine: list[str] = []
        while items := store.claim(f"reviewer-{worker}", n=2):
            mine.extend(item.decision_id for item in items)
        return mine

    per_reviewer = run_together(8, drain)
    handed_out = [decision_id for ids in per_reviewer for decision_id in ids]  # type: ignore[attr-defined]

    assert len(handed_out) == len(set(handed_out)), "an item went to two reviewers"
    assert set(handed_out) == queued


def test_an_expired_lease_comes_back(store: Store, clock: FakeClock) -> None:
    (item,) = queue_some(store, 1)
    assert [c.decision_id for c in store.claim("alice", lease_seconds=60)] == [item.decision_id]
    assert store.claim("bob") == []
    assert store.queue_counts() == {"pending": 0, "claimed": 1, "done": 0}
    assert store.oldest_pending_age_seconds("review") is None

    clock.advance(61)
    # waiting again: a supervisor sees it in the backlog, with its age since it was queued
    assert store.queue_counts() == {"pending": 1, "claimed": 0, "done": 0}
    assert store.queue_counts("review") == {"pending": 1, "claimed": 0, "done": 0}
    assert store.oldest_pending_age_seconds("review") == pytest.approx(61, abs=1)
    reclaimed = store.claim("bob", lease_seconds=0)

    assert [c.decision_id for c in reclaimed] == [item.decision_id]
    assert reclaimed[0].claimed_by == "bob"
    assert [c.decision_id for c in store.claim("carol")] == [item.decision_id]  # lease 0: free at once


def test_record_review_closes_the_item(store: Store) -> None:
    (item,) = queue_some(store, 1)
    store.claim("alice")
    review = store.record_review(item.decision_id, "alice", "reject", "counterfeit", 42.0)

    assert store.get_review(item.decision_id) == review
    assert store.queue_counts() == {"pending": 0, "claimed": 0, "done": 1}
    assert store.claim("bob") == []


def test_record_review_refuses_unknown_unqueued_double_and_foreign_verdicts(store: Store, clock: FakeClock) -> None:
    leased, free = queue_some(store, 2)
    (automatic,) = store.record_decisions([make_decision(decision="auto_pass", automated=True)])
    store.claim("alice", n=1, lease_seconds=60)  # the higher priority: `free`
    store.claim("alice", n=1, lease_seconds=60)  # now `leased`

    with pytest.raises(NotFoundError):
        store.record_review("no-such-decision", "alice", "approve")
    with pytest.raises(KeyError):  # NotFoundError is a KeyError for callers that expect one
        store.record_review("no-such-decision", "alice", "approve")
    with pytest.raises(ConflictError, match="not in the review queue"):
        store.record_review(automatic.decision_id, "alice", "approve")
    with pytest.raises(ConflictError, match="leased to another reviewer"):
        store.record_review(leased.decision_id, "bob", "approve")
    with pytest.raises(ValueError, match="verdict"):
        store.record_review(leased.decision_id, "alice", "maybe")

    store.record_review(leased.decision_id, "alice", "approve")
    with pytest.raises(ConflictError, match="already reviewed"):
        store.record_review(leased.decision_id, "alice", "reject")

    clock.advance(61)  # alice's lease on `free` ran out: anyone may decide it now
    assert store.record_review(free.decision_id, "bob", "reject", "prohibited_item").reviewer == "bob"


def test_concurrent_verdicts_on_one_item_record_one(store: Store) -> None:
    (item,) = queue_some(store, 1)

    def review(i: int) -> str:
        try:
            store.record_review(item.decision_id, f"reviewer-{i}", "approve")
        except ConflictError:
            return "conflict"
        return "recorded"

    outcomes = run_together(8, review)
    assert outcomes.count("recorded") == 1


def test_export_labels_gives_labelled_outcomes_in_the_data_contract(store: Store) -> None:
    queued = queue_some(store, 4)
    store.record_review(queued[0].decision_id, "alice", "reject", "counterfeit", 30.0)
    store.record_review(queued[1].decision_id, "alice", "approve", None, 12.0)
    store.record_review(queued[2].decision_id, "bob", "reject", "prohibited_item", 55.5)

    labels = store.export_labels()

    config = DataConfig()
    assert set(config.required_columns) <= set(labels.columns)
    assert {"violation_reason", "review_seconds", "reviewed_at", "decision_id", "qa_sample"} <= set(labels.columns)
    by_id = labels.set_index("decision_id")
    assert by_id.loc[queued[0].decision_id, "label"] == 1
    assert by_id.loc[queued[1].decision_id, "label"] == 0
    assert by_id.loc[queued[2].decision_id, "violation_reason"] == "prohibited_item"
    assert queued[3].decision_id not in by_id.index
    assert labels["created_at"].iloc[0] == pd.Timestamp("2025-05-01T10:00:00Z")
    assert isinstance(labels["reviewed_at"].dtype, pd.DatetimeTZDtype)


def test_export_labels_of_an_empty_log_has_the_contract_columns(store: Store) -> None:
    labels = store.export_labels()
    assert labels.empty
    assert {"listing_id", "created_at", "label"} <= set(labels.columns)


# -- policy audit -------------------------------------------------------------------------------


def test_policy_changes_are_audited_newest_first(store: Store) -> None:
    assert store.policy_in_force("b1") is None
    first, second, third = ({"version": v, "t_pass": t} for v, t in (("1", 0.1), ("2", 0.05), ("3", 0.07)))
    store.put_policy_in_force("b1", "admin-key", "r1", first, second)
    store.put_policy_in_force("b1", "admin-key", "r2", second, third)

    history = store.policy_history()

    assert [(c.old_version, c.new_version) for c in history] == [("2", "3"), ("1", "2")]
    assert history[0].actor == "admin-key" and history[0].reason == "r2"
    assert store.policy_in_force("b1") == {"version": "3", "t_pass": 0.07}


# -- SQLite durability --------------------------------------------------------------------------


def test_sqlite_runs_in_wal_with_full_sync(tmp_path: Path) -> None:
    with create_store(f"sqlite:///{tmp_path / 'x.db'}") as store:
        store.init_schema()
        pragmas = store._write(  # noqa: SLF001 - the connection the writer commits on
            lambda conn: (
                conn.exec_driver_sql("PRAGMA journal_mode").scalar(),
                conn.exec_driver_sql("PRAGMA synchronous").scalar(),
            )
        )
    assert pragmas == ("wal", 2)  # 2 = FULL


def test_sqlite_built_with_a_low_parameter_limit_still_takes_large_batches(tmp_path: Path) -> None:
    with create_store(f"sqlite:///{tmp_path / 'x.db'}", group_commit=True) as store:
        store.init_schema()
        store._write(  # noqa: SLF001 - on the writer's connection: the limit of SQLite before 3.32
            lambda conn: cast(sqlite3.Connection, conn.connection.driver_connection).setlimit(
                sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999
            )
        )
        records = [make_decision(request_id=f"r{i}") for i in range(300)]
        assert store.record_decisions(records) == records
        assert store.record_decisions(records[::-1]) == records[::-1]  # retries
        assert store.count_decisions() == 300
        assert store.queue_counts()["pending"] == 300


def test_a_full_group_commits_without_waiting_out_the_window(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'w.db'}")
    writer = GroupCommitWriter(engine, window_s=60.0, full_items=3)
    calls: list[list[int]] = []

    def write_many(_conn: object, items: list[int]) -> list[int]:
        calls.append(items)
        return [i * 10 for i in items]

    try:
        started = time.monotonic()
        small = writer.submit_many_nowait(write_many, [1])
        rest = writer.submit_many_nowait(write_many, [2, 3])
        assert (small.result(timeout=30), rest.result(timeout=30)) == ([10], [20, 30])
        assert time.monotonic() - started < 30  # far less than the 60 s window
        assert calls == [[1, 2, 3]]  # one group: the small write waited for company
    finally:
        writer.close()
        engine.dispose()


CHILD = """
import sys, threading
from serving.store import create_store
from tests.serving.conftest import make_decision

store = create_store(sys.argv[1], group_commit_ms=1)
store.init_schema()
lock = threading.Lock()

def write(worker):
    n = 0
    while True:
        n += 1
        record = make_decision(request_id=f"{worker}-{n}")
        stored = store.record_decisions([record])[0]
        with lock:
            sys.stdout.write(stored.decision_id + "\\n")
            sys.stdout.flush()

for worker in range(8):
    threading.Thread(target=write, args=(worker,), daemon=True).start()
threading.Event().wait()
"""


def test_acknowledged_decisions_survive_sigkill(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'crash.db'}"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acknowledged: list[str] = []
    try:
        for line in child.stdout:
            acknowledged.append(line.strip())
            if len(acknowledged) >= 400:
                break
        child.send_signal(signal.SIGKILL)
        acknowledged.extend(line.strip() for line in child.stdout)  # acks already in the pipe
    finally:
        child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    acknowledged = [a for a in acknowledged if a]
    assert len(acknowledged) >= 400

    with create_store(url) as store:
        missing = [a for a in acknowledged if store.get_decision(a) is None]
        assert missing == []
        assert store.count_decisions() >= len(acknowledged)
