"""Routing policy and rules: rules before thresholds, fail-safe on unscorable risk, validation, one matcher."""

from __future__ import annotations

import json
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from decision.audit import AuditPlan
from decision.policy import AUTO_BLOCK, AUTO_PASS, DECISIONS, HUMAN_REVIEW, Policy, decision_names, route
from decision.rules import Rule, match_rules


def test_decision_codes() -> None:
    assert DECISIONS == (AUTO_PASS, HUMAN_REVIEW, AUTO_BLOCK) == ("auto_pass", "human_review", "auto_block")
    assert route(np.array([0.1]), 0.2, 0.8).dtype == np.int8


def test_thresholds_route_by_risk() -> None:
    risk = np.array([0.0, 0.19999, 0.2, 0.5, 0.79999, 0.8, 1.0])
    assert route(risk, 0.2, 0.8).tolist() == [0, 0, 1, 1, 1, 2, 2]


def test_unscorable_risk_goes_to_human_review() -> None:
    risk = np.array([np.nan, np.inf, -np.inf, 0.01, 0.99])
    assert decision_names(route(risk, 0.2, 0.8)).tolist() == [
        HUMAN_REVIEW,
        HUMAN_REVIEW,
        HUMAN_REVIEW,
        AUTO_PASS,
        AUTO_BLOCK,
    ]


def test_rules_come_first_and_block_wins_over_review() -> None:
    risk = np.array([0.01, 0.01, 0.99, 0.01, np.nan])
    block = np.array([True, False, False, True, True])
    review = np.array([False, True, True, True, False])
    assert route(risk, 0.2, 0.8, block, review).tolist() == [2, 1, 1, 2, 1]  # unscored: review, block rule or not


def test_per_segment_thresholds() -> None:
    policy = Policy(
        version="p",
        t_pass=0.1,
        t_block=0.9,
        segment_by="category",
        segments={"toys": (0.3, 0.6), "pharmacy": (0.01, 0.99)},
    )
    segments = np.array(["toys", "pharmacy", "unknown", "toys"])
    t_pass, t_block = policy.thresholds_for(segments)
    assert t_pass.tolist() == [0.3, 0.01, 0.1, 0.3] and t_block.tolist() == [0.6, 0.99, 0.9, 0.6]
    risk = np.array([0.2, 0.2, 0.2, 0.7])
    assert route(risk, t_pass, t_block).tolist() == [0, 1, 1, 2]


def test_match_rules_terms_whole_words_case_insensitive_and_categories() -> None:
    listings = pd.DataFrame(
        {
            "title": ["Vintage SWITCHBLADE knife", "switchblades set", "brass   knuckles", None, "ok"],
            "description": ["", "", "", "contains a Taser!", ""],
            "category": ["Toys", "toys", "Health & Supplements", "pharmacy", "PHARMACY"],
        }
    )
    rules: list[Rule | dict[str, Any]] = [
        Rule(
            "prohibited_term",
            "block",
            "term",
            terms=["switchblade", "brass knuckles", "taser"],
            fields=["title", "description", "missing_field"],
        ),
        {
            "name": "regulated",
            "action": "review",
            "kind": "category",
            "column": "category",
            "values": ["pharmacy", "health supplements"],
        },
    ]
    block, review, matched = match_rules(listings, rules)
    assert block.tolist() == [True, False, True, True, False]
    assert review.tolist() == [False, False, True, True, True]
    assert matched == [
        ["prohibited_term"],
        [],
        ["prohibited_term", "regulated"],
        ["prohibited_term", "regulated"],
        ["regulated"],
    ]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"t_pass": 0.9, "t_block": 0.5}, "t_block"),
        ({"t_pass": -0.1}, "t_pass"),
        ({"t_block": 1.5}, "t_block"),
        ({"t_pass": float("nan")}, "t_pass"),
        ({"qa_sample_rate": 1.5}, "qa_sample_rate"),
        ({"qa_sample_rate": 0.0}, "qa_sample_rate"),  # never zero: every automated decision can be audited
        ({"audit": {"near_rate": 0.0}}, "audit.near_rate"),
        ({"audit": {"block_rate": 1.5}}, "audit.block_rate"),
        ({"audit": {"near_fraction": 0.0}}, "audit.near_fraction"),
        ({"audit": {"max_age_hours": -1}}, "audit.max_age_hours"),
        ({"audit": {"max_age_hours": True}}, "audit.max_age_hours"),
        ({"audit": {"rate": 0.1}}, "audit: unknown fields"),
        ({"audit": [0.1]}, "audit"),
        ({"segment_by": "category", "segments": {"toys": [0.7, 0.2]}}, "segments['toys'].t_block"),
        ({"segments": {"toys": [0.1, 0.2]}}, "segment_by"),
        (
            {"rules": [{"name": "x", "action": "delete", "kind": "term", "terms": ["a"], "fields": ["title"]}]},
            "rules[0].action",
        ),
        (
            {"rules": [{"name": "x", "action": "review", "kind": "category", "values": ["a"]}]},
            "rules[0].column",
        ),
        ({"version": ""}, "version"),
    ],
)
def test_validation_names_the_field(change: dict, field: str) -> None:
    raw = {**Policy(version="p1", t_pass=0.1, t_block=0.9).to_dict(), **change}
    with pytest.raises(ValueError, match="^" + re.escape(field)):
        Policy.from_dict(raw)


def test_round_trip() -> None:
    policy = Policy(
        version="p1",
        t_pass=0.05,
        t_block=0.97,
        segment_by="market",
        segments={"de": (0.04, 0.9)},
        rules=[Rule("r", "review", "category", column="category", values=["pharmacy"])],
        targets={"recall": 0.99},
        provisional=True,
        guarantee={"n": 10},
        audit=AuditPlan(near_rate=0.2, block_rate=0.05, near_fraction=0.4, max_age_hours=12),
    )
    again = Policy.from_dict(json.loads(json.dumps(policy.to_dict())))
    assert again == policy
    assert again.to_dict()["audit"] == {"near_rate": 0.2, "block_rate": 0.05, "near_fraction": 0.4, "max_age_hours": 12}


def test_a_policy_saved_before_audit_plans_gets_the_default_plan() -> None:
    raw = Policy(version="p1", t_pass=0.1, t_block=0.9).to_dict()
    del raw["audit"]
    assert Policy.from_dict(raw).audit == AuditPlan()


@pytest.mark.parametrize("ascii_only", [False, True], ids=["mixed-text", "ascii-text"])
def test_column_rule_matching_equals_the_python_pattern_on_odd_text(ascii_only: bool):
    """Rule.match (RE2 over whole columns) and `_term_pattern` (Python re, per listing) agree, both with
    the Unicode pattern (a column with any non-ASCII text) and the ASCII one (an all-ASCII column)."""
    import random

    from decision.rules import Rule, _term_pattern

    terms = ["switchblade", "brass knuckles", "c++", "ivory", "stun gun"]
    pieces = [
        "switchblade",
        "Switchblade",
        "brass  knuckles",
        "brass\tknuckles",
        "brass\u00a0knuckles",
        "c++",
        "ivory",
        "ivoryx",
        "xivory",
        "_ivory",
        "élivory",
        "ivoryé",
        "ivory-color",
        "stun gun",
        "stungun",
        "😀ivory",
        "ivory😀",
        "\n",
        " ",
        ".",
        "1ivory",
        "ivory2",
        "ｉｖｏｒｙ",
        "STUN GUN",
        "stun\x0bgun",
        "brass\x1cknuckles",
        "\x1f",
        "\x0b",
        "\x00",
        "a",
        "b",
    ]
    rng = random.Random(0)
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 5))) for _ in range(3000)]
    texts = [t for t in texts if t.isascii()] if ascii_only else texts
    assert all(t.isascii() for t in texts) or not ascii_only
    rule = Rule(name="t", action="review", kind="term", terms=terms, fields=["title"])
    vectorised = rule.match(pd.DataFrame({"title": texts}))
    pattern = _term_pattern(tuple(terms))
    per_text = np.array([pattern.search(t) is not None for t in texts])
    mismatched = [t for t, a, b in zip(texts, vectorised, per_text, strict=True) if a != b]
    assert not mismatched, mismatched[:5]


def test_default_rules_read_only_the_columns_the_config_has() -> None:
    from decision.thresholds import default_rules
    from features.config import DataConfig

    assert {r.name: r.columns for r in default_rules(DataConfig())} == {
        "prohibited_term": ["title", "description", "brand"],
        "repost_of_rejected": ["product_match"],  # derived by product identification, from the text
        "catalogue_prohibited": ["product_match"],
        "regulated_category": ["category"],
    }
    unrelated = DataConfig(text=(), categorical=("video",), segments=())
    assert default_rules(unrelated) == []  # never attached to the first categorical column


def test_a_rule_reading_a_column_listings_lack_is_refused() -> None:
    rule = Rule(name="regulated", action="review", kind="category", column="category", values=["pharmacy"])
    policy = Policy(version="p1", t_pass=0.1, t_block=0.9, rules=[rule])
    assert policy.validate(["title", "category"]) is policy
    with pytest.raises(ValueError, match=r"rules\[0\]: rule 'regulated' reads columns \['category'\]"):
        policy.validate(["title", "video"])
