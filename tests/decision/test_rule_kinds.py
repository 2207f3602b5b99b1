"""Rule kinds "range" (a number in [min, max)) and "all" (a conjunction of conditions): what they match,
the same answers one listing at a time (Python) and over whole columns (RE2 + numpy), validation that
names the field, and the dict round trip a policy is stored as."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import pytest

from decision.policy import Policy
from decision.rules import COLUMNAR_RULES_MIN, Rule, check_new_rule, match_rules
from serving.engine import DecisionEngine

CHEAP_ROLEX = {
    "name": "cheap_rolex",
    "action": "block",
    "kind": "all",
    "all": [
        {"kind": "category", "column": "brand", "values": ["Rolex"]},
        {"kind": "range", "column": "price", "max": 900.0},
    ],
}
ODD_NUMBERS: list[Any] = [
    0,
    5,
    9.999,
    10,
    10.0,
    "10",
    "1e1",
    " 10",
    "10 ",
    "1_0",
    "ten",
    "",
    None,
    float("nan"),
    float("inf"),
    float("-inf"),
    "inf",
    "nan",
    "1e999",
    -3,
    "-3",
    "+4",
    ".5",
    "7.",
    19.99,
    20,
    20.0000001,
    True,
    "٣",
    1e20,
]


def _price_rule(low: float | None, high: float | None) -> Rule:
    return Rule(name="band", action="review", kind="range", column="price", min=low, max=high)


def test_range_matches_min_inclusive_max_exclusive_and_never_missing_values() -> None:
    prices = [None, float("nan"), float("inf"), -1.0, 0.0, 9.99, 10.0, 15.0, 19.99, 20.0, 25.0]
    listings = pd.DataFrame({"price": prices})

    both = _price_rule(10.0, 20.0).match(listings)
    at_least = _price_rule(10.0, None).match(listings)
    below = _price_rule(None, 10.0).match(listings)

    assert both.tolist() == [False, False, False, False, False, False, True, True, True, False, False]
    assert at_least.tolist() == [False, False, False, False, False, False, True, True, True, True, True]
    assert below.tolist() == [False, False, False, True, True, True, False, False, False, False, False]
    # a listing without the column matches nothing, whatever the bounds
    assert not _price_rule(None, 1e9).match(pd.DataFrame({"title": ["x"] * 3})).any()


def test_all_matches_only_when_every_condition_matches() -> None:
    listings = pd.DataFrame(
        {
            "brand": ["Rolex", "rolex", "Rolex", "Casio", None, "Rolex"],
            "price": [500.0, 899.99, 900.0, 100.0, 100.0, None],
        }
    )
    rule = Rule.from_dict(CHEAP_ROLEX)

    mask = rule.match(listings)

    assert mask.tolist() == [True, True, False, False, False, False]
    parts = [condition.match(listings) for condition in rule.all]
    assert (mask == np.logical_and.reduce(parts)).all()
    assert rule.columns == ["brand", "price"]


def _random_listings(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    brands = ["Rolex", "ROLEX", "Rolex ", "Casio", "", None, "Omega"]
    titles = ["rolex watch", "a switchblade", "Switchblade!", "", None, "watch"]
    return [
        {
            "listing_id": f"L{i}",
            "brand": brands[rng.integers(len(brands))],
            "title": titles[rng.integers(len(titles))],
            "price": ODD_NUMBERS[rng.integers(len(ODD_NUMBERS))],
        }
        for i in range(n)
    ]


RULES = [
    _price_rule(5.0, 20.0),
    _price_rule(None, 0.0),
    _price_rule(10.0, None),
    Rule.from_dict(CHEAP_ROLEX),
    Rule.from_dict(
        {
            "name": "cheap_blade",
            "action": "review",
            "kind": "all",
            "all": [
                {"kind": "term", "terms": ["switchblade"], "fields": ["title", "description"]},
                {"kind": "range", "column": "price", "min": -5, "max": 10},
            ],
        }
    ),
]


@pytest.mark.parametrize("n", [COLUMNAR_RULES_MIN - 1, 500])
def test_range_and_all_agree_one_by_one_and_columnar(n: int) -> None:
    """A batch (RE2 over columns, numpy conversion) and each listing alone (Python re and float) give the
    same answers, from a DataFrame and from the service's listing dicts, on odd numbers and texts."""
    listings = _random_listings(np.random.default_rng(n), n)
    engine = DecisionEngine(bundle=None, policy=Policy(version="p", t_pass=0.1, t_block=0.9, rules=RULES))
    frame = pd.DataFrame(listings)

    block, review, matched = match_rules(frame, RULES)
    dict_block, dict_review, dict_matched = engine.match_rules(listings)

    assert (block == dict_block).all() and (review == dict_review).all() and matched == dict_matched
    assert block.any() and review.any()
    for i, listing in enumerate(listings):
        one = match_rules(pd.DataFrame([listing]), RULES)
        one_dict = engine.match_rules([listing])
        assert (one[0][0], one[1][0], one[2][0]) == (block[i], review[i], matched[i]), listing
        assert (one_dict[0][0], one_dict[1][0], one_dict[2][0]) == (block[i], review[i], matched[i]), listing


def test_a_term_matches_the_same_texts_one_by_one_and_over_a_column_whatever_i_it_is_written_with() -> None:
    """Python's re takes i, I, İ and ı for one another; RE2 folded only i and I, so "İvory carving" matched
    'ivory' in a single request and not in a batch of 32 or more (nor in `triage score`)."""
    rule = Rule(name="t", action="review", kind="term", terms=["ivory", "ıphone case"], fields=["title"])
    texts = ["İvory carving", "IVORY", "ıvory", "Ivory", "iPHONE CASE", "İPHONE  case", "iphone", "ivoryx", "an ivory"]
    few = rule.match_texts({"title": texts}, len(texts))  # Python, text by text
    reps = -(-COLUMNAR_RULES_MIN // len(texts))
    many = rule.match_texts({"title": texts * reps}, len(texts) * reps)  # RE2 over the column (non-ASCII text)
    ascii_texts = [t for t in texts if t.isascii()]
    ascii_reps = -(-COLUMNAR_RULES_MIN // len(ascii_texts))
    ascii_many = rule.match_texts({"title": ascii_texts * ascii_reps}, len(ascii_texts) * ascii_reps)

    assert few.tolist() == [True, True, True, True, True, True, False, False, True]
    assert many.tolist() == few.tolist() * reps
    assert ascii_many.tolist() == [bool(few[texts.index(t)]) for t in ascii_texts] * ascii_reps


def test_range_reads_only_plain_decimal_finite_numbers() -> None:
    texts = [str(v) if not isinstance(v, str) else v for v in ODD_NUMBERS if v is not None]
    rule = _price_rule(-1e30, None)
    assert len(texts) < COLUMNAR_RULES_MIN <= 2 * len(texts)
    few = rule.match_texts({"price": texts}, len(texts))  # Python, text by text
    many = rule.match_texts({"price": texts * 2}, len(texts) * 2)  # RE2 and numpy over the column

    numbers = {"0", "5", "9.999", "10", "10.0", "1e1", "-3", "+4", ".5", "7.", "19.99", "20", "20.0000001", "1e+20"}
    assert few.tolist() == [t in numbers for t in texts]
    assert many.tolist() == few.tolist() * 2


def test_rules_round_trip_through_dicts_and_a_policy() -> None:
    for rule in RULES:
        again = Rule.from_dict(rule.to_dict())
        assert again == rule and again.to_dict() == rule.to_dict()
    stored = Rule.from_dict(CHEAP_ROLEX).to_dict()
    assert stored["all"] == CHEAP_ROLEX["all"]  # conditions keep no name, action or empty keys
    named = [dataclasses.replace(rule, name=f"{rule.name}_{i}") for i, rule in enumerate(RULES)]  # names are unique
    policy = Policy(version="p", t_pass=0.1, t_block=0.9, rules=named)
    assert Policy.from_dict(policy.to_dict()).rules == named
    only_rolex = Policy(version="p", t_pass=0.1, t_block=0.9, rules=[RULES[3]])
    with pytest.raises(ValueError, match=r"rules\[0\]: rule 'cheap_rolex' reads columns \['price'\]"):
        only_rolex.validate(columns=["brand", "title", "description"])


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"kind": "range", "max": 3}, r"rule\.column"),
        ({"kind": "range", "column": "price"}, r"rule\.min: a range rule needs min, max or both"),
        ({"kind": "range", "column": "price", "min": "3"}, r"rule\.min: '3' is not a finite number"),
        ({"kind": "range", "column": "price", "max": float("inf")}, r"rule\.max: inf is not a finite number"),
        ({"kind": "range", "column": "price", "min": True}, r"rule\.min"),
        ({"kind": "range", "column": "price", "min": 5, "max": 5}, r"rule\.max: 5 must be greater than min 5"),
        ({"kind": "all"}, r"rule\.all: an 'all' rule needs a non-empty list"),
        ({"kind": "all", "all": {"kind": "term"}}, r"rule\.all: expected a list"),
        ({"kind": "all", "all": ["x"]}, r"rule\.all\[0\]: expected a mapping"),
        (
            {"kind": "all", "all": [{"kind": "range", "column": "price", "max": 3, "action": "block"}]},
            r"rule\.all\[0\]: unknown keys \['action'\]",
        ),
        ({"kind": "all", "all": [{"kind": "term", "terms": ["a"]}]}, r"rule\.all\[0\]\.fields"),
        ({"kind": "all", "all": [{"kind": "range", "column": "p", "min": 2, "max": 1}]}, r"rule\.all\[0\]\.max"),
        (
            {"kind": "all", "all": [{"kind": "all", "all": [{"kind": "range"}]}]},
            r"rule\.all\[0\]: unknown keys \['all'\]",
        ),
        ({"kind": "all", "all": [CHEAP_ROLEX["all"][0], {"kind": "nope"}]}, r"rule\.all\[1\]\.kind: 'nope'"),
    ],
)
def test_bad_range_and_all_rules_are_refused_naming_the_field(raw: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        Rule.from_dict({"name": "r", "action": "review", **raw})


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        # what the kind does not read is refused, not stored to mislead ("foo in pharmacy" that matches anywhere)
        (
            {"kind": "term", "terms": ["foo"], "fields": ["title"], "column": "category", "values": ["pharmacy"]},
            r"rule\.column: a term rule does not read column",
        ),
        ({"kind": "category", "column": "category", "values": ["x"], "min": 3}, r"rule\.min: a category rule"),
        ({"kind": "all", "all": CHEAP_ROLEX["all"], "terms": ["x"]}, r"rule\.terms: a all rule does not read"),
        ({"kind": "match", "values": ["repost"], "fields": ["title"]}, r"rule\.fields: a match rule"),
        (
            {"kind": "all", "all": [{"kind": "range", "column": "price", "max": 3, "terms": ["x"]}]},
            r"rule\.all\[0\]\.terms: a range rule does not read",
        ),
        # a name /v1/policy/rules/{name} could not address
        ({"name": "a/b", "kind": "match", "values": ["repost"]}, r"rule\.name: 'a/b' must be at most 128"),
        ({"name": "x" * 129, "kind": "match", "values": ["repost"]}, r"rule\.name"),
        ({"name": " lead", "kind": "match", "values": ["repost"]}, r"rule\.name"),
        ({"kind": "term", "terms": [f"t{i}" for i in range(1_001)], "fields": ["title"]}, r"rule\.terms: 1,001"),
    ],
)
def test_a_rule_being_written_or_tested_is_refused_what_a_stored_one_is_not(raw: dict[str, Any], field: str) -> None:
    """A rule a change writes (or a backtest tests) must also have an addressable name, nothing its kind does
    not read, and at most MAX_RULE_TERMS terms; a stored policy with such a rule still loads (these checks
    came later, and a policy that does not load leaves its bundle unservable)."""
    rule = Rule.from_dict({"name": "r", "action": "review", **raw})  # loads
    roles = {"title": ["text"], "price": ["numeric"], "category": ["categorical"]}
    with pytest.raises(ValueError, match=field):
        check_new_rule(rule, "rule", roles, {})


def test_an_all_rule_does_not_nest() -> None:
    inner = Rule(name="", action="", kind="range", column="price", max=3.0)
    nested = Rule(name="", action="", kind="all", all=[inner])
    with pytest.raises(ValueError, match=r"rule\.all\[0\]\.kind: an 'all' rule's conditions cannot nest"):
        Rule(name="r", action="review", kind="all", all=[nested]).validate()


def test_column_numbers_equal_python_floats_on_random_number_texts() -> None:
    """The columnar parse (RE2 pattern, arrow cast) gives exactly Python's float on every text the number
    pattern admits, and NaN on the rest, so a bound at a listed price decides alike in both dialects."""
    import random

    from decision.rules import _number, _numbers_columnar

    rng = random.Random(0)
    pieces = ["0", "1", "7", "9", ".", "e", "E", "+", "-", " ", "x"]
    texts = ["".join(rng.choice(pieces) for _ in range(rng.randint(0, 9))) for _ in range(20_000)]
    texts += [repr(rng.uniform(-1e6, 1e6)) for _ in range(5_000)]
    texts += [repr(rng.random() * 10 ** rng.randint(-320, 308)) for _ in range(5_000)]

    columnar = _numbers_columnar(texts)
    one_by_one = np.array([_number(t) for t in texts])

    assert np.array_equal(columnar, one_by_one, equal_nan=True)
    assert np.isfinite(columnar).sum() > 10_000  # the float reprs and some of the random texts
