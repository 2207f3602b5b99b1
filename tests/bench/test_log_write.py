"""The decision-log write benchmark measures a real write on each database (a fresh PostgreSQL database of
its own, dropped after) and reports every decision it wrote."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.log_write import decisions, measure
from tests.serving.conftest import POSTGRES_URL


def test_its_decisions_are_distinct_and_go_to_both_lanes() -> None:
    records = decisions(100, "t")
    assert len({r.decision_id for r in records}) == 100
    assert {r.lane for r in records if r.queued} == {"review", "audit"}


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_case_writes_its_groups_and_reports_costs(database: str, tmp_path: Path) -> None:
    found = measure(database, size=4, groups=5, server_url=POSTGRES_URL, tmp=tmp_path)
    assert found["written"] == 4 * 5 + 4  # the groups and the warm-up group
    assert found["client_us"] > 0 and found["group_ms"] > 0
    assert found["server_us"] >= 0  # the database's processes (none for SQLite); clock ticks of 10 ms
    if database == "sqlite":
        assert found["server_us"] == 0
