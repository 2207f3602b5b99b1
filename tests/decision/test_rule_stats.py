"""Rule analytics equal a hand count on a small log; the precision interval covers; the Hajek estimate
corrects the selection of a shadow rule's reviewed hits; rules carry mode, enabled and version."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from decision.policy import Policy, versioned_rules
from decision.rule_stats import clopper_pearson, rule_stats
from decision.rules import Rule, match_rule_masks, match_rules, match_rules_split

NAN = float("nan")


def _at(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC) if day > 2 else datetime(2026, 12, day, hour, tzinfo=UTC)


# decided_at, decision, model_decision, rules_matched, rules_shadow, inclusion_prob, verdict, review_seconds
HAND_LOG: list[tuple[Any, ...]] = [
    (_at(30, 10), "human_review", "auto_pass", ["A"], ["S"], 1.0, "reject", 60.0),  # 0
    (_at(30, 11), "human_review", "human_review", ["A"], [], 1.0, "approve", 120.0),  # 1
    (_at(30, 12), "auto_block", "auto_pass", ["B"], ["S"], 0.5, "reject", 30.0),  # 2: block audited
    (_at(30, 13), "auto_pass", "auto_pass", [], ["S"], 0.1, None, NAN),  # 3: not drawn for audit
    (_at(30, 14), "auto_pass", "auto_pass", [], [], 0.1, None, NAN),  # 4
    (_at(1, 9), "human_review", "auto_block", ["A"], ["S"], 1.0, None, NAN),  # 5: review pending
    (_at(1, 10), "human_review", "human_review", [], ["S"], 1.0, "approve", 90.0),  # 6
    (_at(1, 11), "human_review", None, ["A"], [], 1.0, "reject", 200.0),  # 7: unscored
    (datetime(2026, 11, 29, 23, tzinfo=UTC), "auto_pass", "auto_pass", [], [], 0.1, None, NAN),  # 8: a week before
]
ACTIONS = {"A": "review", "B": "block", "S": "review"}


def hand_log() -> pd.DataFrame:
    columns = ["decided_at", "decision", "model_decision", "rules_matched", "rules_shadow"]
    frame = pd.DataFrame(HAND_LOG, columns=[*columns, "inclusion_prob", "verdict", "review_seconds"])
    frame.insert(0, "decision_id", [f"d{i}" for i in range(len(frame))])
    return frame


def rows_by(result: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(r["period"], r["rule"], r["mode"]): r for r in result["rules"]}


def test_the_whole_window_equals_a_hand_count() -> None:
    result = rule_stats(hand_log(), "all", 0.95, ACTIONS)
    rows = rows_by(result)
    a, b, s = rows["all", "A", "enforce"], rows["all", "B", "enforce"], rows["all", "S", "shadow"]

    assert result["decisions"] == 9 and result["decisions_per_period"] == {"all": 9}
    # A: rows 0, 1, 5, 7; reviewed 0, 1, 7; rejected 0, 7; the model alone: pass 0, review 1, block 5, 7 unscored
    assert (a["hits"], a["share"], a["reviewed"], a["rejects"]) == (4, 4 / 9, 3, 2)
    assert a["precision"] == pytest.approx(2 / 3) and a["representative"] and a["note"] is None
    assert (a["precision_low"], a["precision_high"]) == pytest.approx(clopper_pearson(2, 3, 0.95))
    assert a["precision_weighted"] == pytest.approx(2 / 3)
    assert (a["model_pass"], a["model_review"], a["model_block"], a["model_unscored"]) == (1, 1, 1, 1)
    # reviews added: rows 0 (own 60 s) and 5 (pending: the window's mean of 60, 120, 30, 90, 200 = 100 s)
    assert (a["added_reviews"], a["added_hours_from_mean"]) == (2, 1)
    assert a["added_reviewer_hours"] == pytest.approx((60 + 100) / 3600)
    # B: a block rule adds no review; its one hit was an audited auto-block
    assert (b["hits"], b["reviewed"], b["rejects"], b["precision"], b["model_pass"]) == (1, 1, 1, 1.0, 1)
    assert b["added_reviews"] is None and b["added_reviewer_hours"] is None
    assert not b["representative"] and b["precision_weighted"] == pytest.approx(1.0)
    # S (shadow): rows 0, 2, 3, 5, 6; reviewed 0 (pi 1), 2 (pi 0.5), 6 (pi 1); rejected 0, 2
    assert (s["hits"], s["share"], s["reviewed"], s["rejects"]) == (5, 5 / 9, 3, 2)
    assert s["precision"] == pytest.approx(2 / 3)
    assert not s["representative"] and "inclusion_prob" in s["note"]
    assert s["precision_weighted"] == pytest.approx((1 + 2) / (1 + 2 + 1))
    assert (s["model_pass"], s["model_review"], s["model_block"]) == (3, 1, 1)
    # added: rows 0 (60 s), 2 (30 s), 3 and 5 without a verdict (100 s each)
    assert (s["added_reviews"], s["added_hours_from_mean"]) == (4, 2)
    assert s["added_reviewer_hours"] == pytest.approx((60 + 30 + 100 + 100) / 3600)
    assert result["co_occurrence"] == {"rules": ["A", "B", "S (shadow)"], "counts": [[4, 0, 2], [0, 1, 1], [2, 1, 5]]}


def test_per_day_and_week_figures_equal_a_hand_count() -> None:
    daily = rule_stats(hand_log(), "day", 0.95, ACTIONS)
    weekly = rule_stats(hand_log(), "week", 0.95, ACTIONS)
    days, weeks = rows_by(daily), rows_by(weekly)

    assert daily["decisions_per_period"] == {"2026-11-29": 1, "2026-11-30": 5, "2026-12-01": 3}
    a30, a01 = days["2026-11-30", "A", "enforce"], days["2026-12-01", "A", "enforce"]
    assert (a30["hits"], a30["share"], a30["reviewed"], a30["rejects"], a30["added_reviews"]) == (2, 2 / 5, 2, 1, 1)
    assert a30["added_reviewer_hours"] == pytest.approx(60 / 3600)
    # row 5 has no verdict yet: the mean review of its day (90 and 200 s) stands in
    assert (a01["hits"], a01["share"], a01["reviewed"], a01["rejects"], a01["added_reviews"]) == (2, 2 / 3, 1, 1, 1)
    assert a01["added_reviewer_hours"] == pytest.approx(145 / 3600)
    s30 = days["2026-11-30", "S", "shadow"]
    assert (s30["hits"], s30["added_reviews"]) == (3, 3)
    assert s30["added_reviewer_hours"] == pytest.approx((60 + 30 + 70) / 3600)  # row 3: the day's mean, 70 s
    assert weekly["decisions_per_period"] == {"2026-11-23": 1, "2026-11-30": 8}  # weeks start on Monday
    assert weeks["2026-11-30", "S", "shadow"]["hits"] == 5 and weeks["2026-11-30", "A", "enforce"]["share"] == 4 / 8


def test_a_rule_the_policy_no_longer_names_has_no_workload_figure() -> None:
    result = rows_by(rule_stats(hand_log(), "all", 0.95, {}))
    assert result["all", "A", "enforce"]["action"] is None
    assert result["all", "A", "enforce"]["added_reviews"] is None


def test_an_empty_log_and_bad_arguments() -> None:
    empty = rule_stats(hand_log().iloc[:0], "day", 0.95, ACTIONS)
    assert empty["rules"] == [] and empty["co_occurrence"] == {"rules": [], "counts": []}
    with pytest.raises(ValueError, match="period"):
        rule_stats(hand_log(), "month")
    with pytest.raises(ValueError, match="confidence"):
        rule_stats(hand_log(), "day", 1.0)
    with pytest.raises(ValueError, match="verdict"):
        rule_stats(hand_log().drop(columns="verdict"))


def test_clopper_pearson_has_its_closed_forms_at_the_edges() -> None:
    assert clopper_pearson(0, 10, 0.95) == pytest.approx((0.0, 1 - 0.025 ** (1 / 10)))
    assert clopper_pearson(10, 10, 0.95) == pytest.approx((0.025 ** (1 / 10), 1.0))
    assert clopper_pearson(2, 3, 0.95)[1] == pytest.approx(0.975 ** (1 / 3))  # Beta(3, 1): CDF x^3
    assert clopper_pearson(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("n", [5, 20, 60])
def test_the_precision_interval_covers_at_least_its_confidence(n: int) -> None:
    """Exact coverage over a grid of true precisions: sum of Bin(n, p) probabilities of the k whose
    interval holds p; never below the confidence (Clopper-Pearson is conservative)."""
    intervals = np.array([clopper_pearson(k, n, 0.95) for k in range(n + 1)])
    for p in np.linspace(0.01, 0.99, 99):
        covers = (intervals[:, 0] <= p) & (p <= intervals[:, 1])
        coverage = stats.binom.pmf(np.arange(n + 1), n, p)[covers].sum()
        assert coverage >= 0.95 - 1e-9, (n, p, coverage)


def test_the_hajek_precision_corrects_what_the_model_chose_to_review() -> None:
    """A shadow rule whose violating hits the model mostly sends to review: the plain precision over
    reviewed hits overstates the precision over all hits; weighting by 1 / inclusion_prob recovers it."""
    rng = np.random.default_rng(7)
    n, true_precision = 20_000, 0.3
    violation = rng.random(n) < true_precision
    to_review = np.where(violation, rng.random(n) < 0.8, rng.random(n) < 0.1)
    pi = np.where(to_review, 1.0, 0.05)  # automated decisions audited at 5 %
    reviewed = to_review | (rng.random(n) < 0.05)
    log = pd.DataFrame(
        {
            "decision_id": [f"d{i}" for i in range(n)],
            "decided_at": pd.Timestamp("2026-12-01", tz="UTC"),
            "decision": np.where(to_review, "human_review", "auto_pass"),
            "model_decision": np.where(to_review, "human_review", "auto_pass"),
            "rules_matched": [[] for _ in range(n)],
            "rules_shadow": [["S"] for _ in range(n)],
            "inclusion_prob": pi,
            "verdict": pd.Series(np.where(violation, "reject", "approve")).where(reviewed),
            "review_seconds": 60.0,
        }
    )
    row = rule_stats(log, "all", 0.95, {"S": "review"})["rules"][0]
    assert row["precision"] > 0.7  # biased: the model picked the violations
    assert row["precision_weighted"] == pytest.approx(violation.mean(), abs=0.03)


# -- rules: mode, enabled, version --------------------------------------------------------------------

TERM = {"name": "r", "action": "review", "kind": "term", "terms": ["replica"], "fields": ["title"]}


@pytest.mark.parametrize(
    ("field", "bad"),
    [("mode", {"mode": "watch"}), ("enabled", {"enabled": "yes"}), ("version", {"version": 0}), ("rule", {"x": 1})],
)
def test_a_bad_mode_enabled_or_version_is_refused_naming_the_field(field: str, bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=field):
        Rule.from_dict({**TERM, **bad})


def test_rules_default_to_enforced_enabled_version_one_and_round_trip() -> None:
    rule = Rule.from_dict(TERM)
    assert (rule.mode, rule.enabled, rule.version, rule.acts, rule.shadows) == ("enforce", True, 1, True, False)
    shadow = Rule.from_dict({**TERM, "mode": "shadow", "enabled": False, "version": 3})
    assert Rule.from_dict(shadow.to_dict()) == shadow and not shadow.acts and not shadow.shadows


def test_shadow_and_disabled_rules_never_set_a_mask_and_shadow_hits_are_split_out() -> None:
    titles = ["replica watch", "leather wallet", "replica bag"]
    listings = pd.DataFrame({"title": titles})
    rules = [
        Rule.from_dict({**TERM, "name": "live", "action": "block"}),
        Rule.from_dict({**TERM, "name": "watching", "mode": "shadow", "action": "block"}),
        Rule.from_dict({**TERM, "name": "off", "enabled": False}),
    ]
    for texts in ({"title": titles}, {"title": titles * 20}):  # Python's re, then RE2 over the column
        n = len(texts["title"])
        split = match_rules_split(texts, n, rules)
        assert split.matched[:3] == [["live"], [], ["live"]] and split.shadow[:3] == [["watching"], [], ["watching"]]
        assert split.block[:3].tolist() == [True, False, True] and not split.review.any()
    block, review, matched = match_rules(listings, rules)
    assert block.tolist() == [True, False, True] and matched == [["live"], [], ["live"]]
    only_shadow = [r for r in rules if r.name != "live"]
    block, review, matched = match_rules(listings, only_shadow)
    assert not block.any() and not review.any() and matched == [[], [], []]


def test_a_rule_version_moves_only_when_that_rule_changes() -> None:
    policy = Policy(
        "p1", 0.1, 0.9, rules=[Rule.from_dict({**TERM, "version": 4}), Rule.from_dict({**TERM, "name": "q"})]
    )
    changed = versioned_rules(
        policy.rules,
        [
            {**TERM, "version": 99},  # unchanged (the client's version is ignored)
            {**TERM, "name": "q", "mode": "shadow"},  # changed
            {**TERM, "name": "new"},  # added
        ],
    )
    assert [r["version"] for r in changed] == [4, 2, 1]


def test_rule_masks_equal_match_rules_and_names_keep_policy_order() -> None:
    titles = ["replica watch", "leather wallet", "replica bag", "vape pen replica"] * 30
    listings = pd.DataFrame({"title": titles})
    rules = [
        Rule.from_dict({**TERM, "name": "second", "action": "review", "terms": ["vape"]}),
        Rule.from_dict({**TERM, "name": "first", "action": "block"}),
        Rule.from_dict({**TERM, "name": "watching", "mode": "shadow", "action": "review"}),
    ]
    block, review, matched = match_rules(listings, rules)
    mask_block, mask_review = match_rule_masks(listings, rules)
    assert mask_block.tolist() == block.tolist() and mask_review.tolist() == review.tolist()
    assert matched[:4] == [["first"], [], ["first"], ["second", "first"]]
    split = match_rules_split({"title": titles}, len(titles), rules)
    assert split.shadow[:4] == [["watching"], [], ["watching"], ["watching"]]
