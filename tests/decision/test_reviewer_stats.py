"""Reviewer quality figures from hand-made verdicts, checked by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from decision.reviewer_stats import resolved_labels, reviewer_quality
from serving.store.reviewer_activity import AMENDED_COLUMNS, GOLD_COLUMNS, PAIR_COLUMNS, VERDICT_COLUMNS

T0 = datetime(2025, 6, 1, 9, 0, tzinfo=UTC)


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_volume_handling_time_throughput_and_teams() -> None:
    verdicts = pd.DataFrame(
        [
            ("ann", "review", "reject", 10.0, _at(0), None),
            ("ann", "review", "approve", 20.0, _at(10), None),
            ("ann", "audit", "approve", 30.0, _at(70), None),  # a second active hour
            ("ann", "gold", "reject", 40.0, _at(80), True),  # left out of the reject rate
            ("ben", "second", "reject", None, _at(5), None),
        ],
        columns=VERDICT_COLUMNS,
    )
    pairs = pd.DataFrame([("d1", "ann", "reject", "ben", "reject", _at(5))], columns=PAIR_COLUMNS)
    gold = pd.DataFrame([("g1", "ann", "reject", "reject", True, _at(80))], columns=GOLD_COLUMNS)

    report = reviewer_quality(verdicts, pairs, gold, {"ann": "vendor-a", "ben": "vendor-a"})

    ann, ben = report["reviewers"]
    assert (ann["reviewer"], ann["team"], ann["verdicts"], ann["rejects"]) == ("ann", "vendor-a", 4, 1)
    assert ann["reject_rate"] == pytest.approx(1 / 3)
    assert ann["listing_verdicts"] == 3  # the reject rate's base: her gold answer is in verdicts, not here
    assert ann["handling_seconds_median"] == 25.0 and ann["handling_seconds_p90"] == pytest.approx(37.0)
    assert ann["active_hours"] == 2 and ann["verdicts_per_active_hour"] == 2.0
    assert ann["gold"]["accuracy"] == 1.0 and ann["gold"]["low"] == pytest.approx(0.025)
    assert ann["agreement"]["items"] == 1 and ann["agreement"]["raw"] == 1.0
    assert ben["handling_seconds_median"] is None and ben["gold"]["n"] == 0 and ben["gold"]["accuracy"] is None
    (team,) = report["teams"]
    assert (team["team"], team["reviewers"], team["verdicts"]) == ("vendor-a", 2, 5)
    assert team["agreement"]["items"] == 1  # a pair within one team counts once
    assert report["agreement"]["items"] == 1


def test_disagreements_are_resolved_towards_the_reviewer_gold_items_trust() -> None:
    pairs = pd.DataFrame(
        [("d1", "ann", "reject", "ben", "approve", _at(0)), ("d2", "ann", "approve", "ben", "approve", _at(1))],
        columns=PAIR_COLUMNS,
    )
    gold = pd.DataFrame(
        [(f"g{i}", "ann", "reject" if i % 2 else "approve", "reject" if i % 2 else "approve", True, _at(2))
         for i in range(20)]
        + [(f"g{i}", "ben", "approve", "reject" if i % 2 else "approve", i % 2 == 0, _at(2)) for i in range(20)],
        columns=GOLD_COLUMNS,
    )  # fmt: skip

    resolved = resolved_labels(pairs, gold)

    assert resolved["d2"] == (0.0, True)
    posterior, agreed = resolved["d1"]
    assert not agreed and posterior > 0.9  # ann is right on every gold item, ben misses every violation


def test_verdicts_amended_by_someone_else_count_against_their_reviewer() -> None:
    verdicts = pd.DataFrame(
        [("ann", "review", "reject", 10.0, _at(i), None) for i in range(4)]
        + [("ann", "gold", "reject", 10.0, _at(5), True), ("ben", "review", "approve", 10.0, _at(6), None)],
        columns=VERDICT_COLUMNS,
    )
    amended = pd.DataFrame(
        [
            ("ann", "reject", "approve", "lead"),  # a lead overruled ann
            ("ann", "reject", "approve", "ann"),  # ann amended her own verdict: not against her
            ("ann", "reject", "reject", "lead"),  # amended, then back to ann's verdict: it stands
            ("ben", "approve", "reject", "lead"),
        ],
        columns=AMENDED_COLUMNS,
    )
    empty_pairs, empty_gold = pd.DataFrame(columns=PAIR_COLUMNS), pd.DataFrame(columns=GOLD_COLUMNS)

    report = reviewer_quality(verdicts, empty_pairs, empty_gold, {"ann": "a", "ben": "a"}, amended=amended)

    ann, ben = report["reviewers"]
    assert ann["amended_by_others"]["n"] == 4 and ann["amended_by_others"]["amended"] == 1  # gold is no first verdict
    assert ann["amended_by_others"]["rate"] == 0.25 and 0 < ann["amended_by_others"]["low"] < 0.25
    assert (ben["amended_by_others"]["amended"], ben["amended_by_others"]["n"]) == (1, 1)
    assert report["teams"][0]["amended_by_others"]["amended"] == 2
    without = reviewer_quality(verdicts, empty_pairs, empty_gold, {})
    assert without["reviewers"][0]["amended_by_others"]["amended"] == 0
