"""Sustained concurrent scoring: no 5xx, and every acknowledged decision is in the log (nothing lost)."""

from __future__ import annotations

import pytest

from tests.reliability.conftest import Load, decision_mix, logged_ids, queue_consistency, route_some_automatically

pytestmark = pytest.mark.reliability

DECISIONS = 6_000
CONCURRENCY = 32
MAX_SECONDS = 60.0


def test_load_at_concurrency_32_loses_no_decision_and_never_fails(make_service, report) -> None:
    service = make_service()
    route_some_automatically(service)

    load = Load(service, decisions=DECISIONS, concurrency=CONCURRENCY, max_seconds=MAX_SECONDS, retries=3).run()

    acknowledged = set(load.acknowledged)
    in_log = logged_ids(service)
    found = len(acknowledged & in_log)
    queue = queue_consistency(service)
    report(
        requests=load.requests,
        statuses=load.statuses,
        transport_errors=load.transport_errors,
        retried=load.retried,
        acknowledged=len(load.acknowledged),
        found_in_log=found,
        lost=len(acknowledged) - found,
        logged=len(in_log),
        fallback_human_review=load.fallback,
        seconds=round(load.seconds, 1),
        decisions_per_s=round(len(load.acknowledged) / load.seconds),
        **queue,
        mix=decision_mix(service),
    )
    assert load.server_errors == 0 and load.transport_errors == 0, load.statuses
    assert set(load.statuses) == {200}, load.statuses
    assert len(load.acknowledged) >= DECISIONS, f"only {len(load.acknowledged)} decisions in {MAX_SECONDS} s"
    assert len(acknowledged) == len(load.acknowledged), "a decision id was acknowledged twice"
    assert acknowledged == in_log  # none lost, and nothing logged that was not acknowledged
    assert queue["queue_duplicates"] == queue["review_without_queue_row"] == 0
    assert queue["queue_rows_without_review_decision"] == 0
    mix = decision_mix(service)
    assert mix.get("human_review", 0) > 0 and mix.get("auto_pass", 0) > 0  # both sides of the queue checks
