"""A backtest of a rule reading a column history lacks names the rule's field that asks for it."""

from __future__ import annotations

import re

import pandas as pd
import pytest

from decision.backtest import backtest, mixed_history
from decision.policy import Policy
from decision.rules import Rule

HISTORY = pd.DataFrame(
    {"title": ["replica watch", "bag"], "price": [10.0, 900.0], "risk": [0.5, 0.1], "label": [1, 0], "id": ["a", "b"]}
)
POLICY = Policy(version="p1", t_pass=0.2, t_block=0.9, rules=[])


@pytest.mark.parametrize(
    ("rule", "field"),
    [
        ({"kind": "term", "terms": ["x"], "fields": ["title", "nope"]}, "rule.fields"),
        ({"kind": "category", "column": "nope", "values": ["a"]}, "rule.column"),
        ({"kind": "range", "column": "nope", "max": 100}, "rule.column"),
        ({"kind": "match", "values": ["repost"]}, "rule.kind"),
        (
            {
                "kind": "all",
                "all": [{"kind": "range", "column": "price", "max": 100}, {"kind": "range", "column": "n", "min": 1}],
            },
            "rule.all[1].column",
        ),
        (
            {
                "kind": "all",
                "all": [{"kind": "term", "terms": ["a"], "fields": ["nope"]}, {"kind": "match", "values": ["repost"]}],
            },
            "rule.all[0].fields",
        ),
    ],
)
def test_a_missing_column_names_the_rule_field_that_reads_it(rule: dict[str, object], field: str) -> None:
    candidate = Rule.from_dict({"name": "r", "action": "review", **rule})
    with pytest.raises(ValueError, match=rf"^{re.escape(field)}: history has no column"):
        backtest(HISTORY, POLICY, candidate)


def test_mixed_history_keeps_a_listing_in_both_sources_once_from_history() -> None:
    log = pd.DataFrame({"title": ["bag", "new"], "risk": [0.7, 0.3], "label": [1, 1], "id": ["b", "c"]})
    mixed = mixed_history(HISTORY, log, "id")
    assert mixed["id"].tolist() == ["a", "b", "c"]
    assert mixed["row_source"].tolist() == ["history", "history", "log"]
    assert mixed.loc[1, "risk"] == 0.1  # the bundle's own row
    assert mixed_history(None, log, "id")["row_source"].tolist() == ["log", "log"]
    with pytest.raises(ValueError, match="^source:"):
        mixed_history(None, None, "id")
