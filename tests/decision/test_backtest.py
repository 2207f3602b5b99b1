"""Backtests equal a hand count; the rule precision certificate covers at its stated level."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from decision.backtest import (
    backtest,
    block_target,
    certify_rule_precision,
    certify_shipped_rules,
    changed_rules,
    new_block_rules,
)
from decision.policy import Policy
from decision.rules import Rule

REPLICA = Rule("replica", "block", "term", terms=["replica"], fields=["title"])
REGULATED = Rule("regulated", "review", "category", column="category", values=["Health"])


def tiny_history() -> pd.DataFrame:
    """Eight listings; t_pass 0.2, t_block 0.9 below."""
    return pd.DataFrame(
        {
            "title": ["replica watch", "replica bag", "watch", "Replica!", "shoes", "vitamins", "replicas", "bag"],
            "category": ["Fashion", "Fashion", "Fashion", "Fashion", "Fashion", "Health", "Fashion", "Fashion"],
            "market": ["de", "de", "de", "fr", "fr", "fr", "de", "fr"],
            "risk": [0.10, 0.50, 0.05, 0.95, 0.10, 0.10, 0.50, 0.95],
            "label": [1, 1, 0, 0, 1, 0, 1, 1],
            "review_seconds": [60.0, 120.0, 30.0, 90.0, 60.0, 300.0, 45.0, 75.0],
        }
    )


def tiny_policy(*rules: Rule) -> Policy:
    return Policy(
        version="p1",
        t_pass=0.2,
        t_block=0.9,
        rules=list(rules),
        targets={"block_precision": 0.9, "confidence": 0.9},
    )


def test_backtest_equals_a_hand_count() -> None:
    # Before: regulated reviews row 5. Thresholds: pass rows 0, 2, 4; block rows 3, 7; review 1, 5, 6.
    # After adding "replica" (block): it matches rows 0, 1, 3 ("replicas" is another word), so rows 0
    # and 1 move to auto_block; row 3 was blocked already.
    out = backtest(tiny_history(), tiny_policy(REGULATED), REPLICA, segment_by=["market"])
    assert out["before"]["counts"] == {"auto_pass": 3, "human_review": 3, "auto_block": 2}
    assert out["after"]["counts"] == {"auto_pass": 2, "human_review": 2, "auto_block": 4}
    assert out["moved"] == {"auto_pass->auto_block": 1, "human_review->auto_block": 1}
    assert out["before"]["reviewer_hours"] == pytest.approx((120 + 300 + 45) / 3600)
    assert out["after"]["reviewer_hours"] == pytest.approx((300 + 45) / 3600)
    assert out["before"]["missed_violations"] == 2 and out["after"]["missed_violations"] == 1  # rows 0, 4 -> 4
    assert out["before"]["wrongful_blocks"] == 1 and out["after"]["wrongful_blocks"] == 1  # row 3
    rule = out["rule"]
    assert (rule["hits"], rule["labelled_hits"], rule["violations"]) == (3, 3, 2)
    assert rule["precision"]["value"] == pytest.approx(2 / 3)
    assert rule["recall"]["value"] == pytest.approx(2 / 5)
    # the two-sided 95% Clopper-Pearson interval of 2 out of 3
    assert rule["precision"]["lower"] == pytest.approx(stats.beta.ppf(0.025, 2, 2))
    assert rule["precision"]["upper"] == pytest.approx(stats.beta.ppf(0.975, 3, 1))
    assert rule["hits_otherwise"] == {"auto_pass": 1, "human_review": 1, "auto_block": 1}
    assert out["certificate"]["certified"] is False and out["certificate"]["target"] == 0.9
    de = out["segments"]["market"]["de"]
    assert de["rows"] == 4 and de["after"]["counts"] == {"auto_pass": 1, "human_review": 1, "auto_block": 2}
    assert de["rule"]["hits"] == 2 and de["rule"]["precision"]["value"] == 1.0


def test_removing_and_replacing_a_rule() -> None:
    history = tiny_history()
    removed = backtest(history, tiny_policy(REGULATED), remove="regulated")
    assert removed["moved"] == {"human_review->auto_pass": 1}
    assert removed["removed"]["hits"] == 1 and removed["after"]["missed_violations"] == 2
    wider = Rule("regulated", "review", "category", column="category", values=["Health", "Fashion"])
    replaced = backtest(history, tiny_policy(REGULATED, REPLICA), wider)
    assert replaced["change"]["kind"] == "replace"
    assert replaced["after"]["counts"] == {"auto_pass": 0, "human_review": 5, "auto_block": 3}


def test_bad_input_names_the_field() -> None:
    history, policy = tiny_history(), tiny_policy(REGULATED)
    with pytest.raises(ValueError, match="^remove:"):
        backtest(history, policy, remove="nope")
    with pytest.raises(ValueError, match="^rule.fields:"):
        backtest(history, policy, Rule("x", "block", "term", terms=["a"], fields=["nope"]))
    with pytest.raises(ValueError, match="^segment_by:"):
        backtest(history, policy, REPLICA, segment_by=["nope"])
    with pytest.raises(ValueError, match="^history: missing column 'risk'"):
        backtest(history.drop(columns="risk"), policy, REPLICA)
    with pytest.raises(ValueError, match="^rule:"):
        backtest(history, policy)


def test_unlabelled_rows_route_but_do_not_count_for_precision() -> None:
    history = tiny_history().astype({"label": "float64"})
    history.loc[0, "label"] = np.nan
    cert = certify_rule_precision(history, REPLICA, 0.5, 0.05)
    assert (cert.hits, cert.labelled_hits, cert.violations) == (3, 2, 1)


def test_weighted_rows_use_the_stratified_bound() -> None:
    history = tiny_history()
    history["inclusion_prob"] = [0.5, 1.0, 1.0, 0.5, 1.0, 1.0, 1.0, 1.0]
    cert = certify_rule_precision(history, REPLICA, 0.5, 0.05)
    assert "betting" in cert.method
    assert cert.precision == pytest.approx((1 / 0.5 + 1) / (1 / 0.5 + 1 + 1 / 0.5))  # rows 0, 1 bad; 3 good


def test_only_new_or_changed_block_rules_must_earn_it() -> None:
    old = tiny_policy(REPLICA, REGULATED)
    same = tiny_policy(REPLICA, REGULATED)
    assert new_block_rules(old, same) == []
    changed = Rule("replica", "block", "term", terms=["replica", "fake"], fields=["title"])
    assert [r.name for r in new_block_rules(old, tiny_policy(changed))] == ["replica"]
    to_block = Rule("regulated", "block", "category", column="category", values=["Health"])
    assert [r.name for r in new_block_rules(old, tiny_policy(REPLICA, to_block))] == ["regulated"]
    assert changed_rules([REPLICA, REGULATED], changed, None, None) == [changed, REGULATED]
    assert block_target(old) == (0.9, pytest.approx(0.05))


@pytest.mark.parametrize("precision,hits", [(0.9, 40), (0.97, 200), (0.5, 15)])
def test_certificate_covers_at_its_level(precision: float, hits: int) -> None:
    """Coverage simulation: over many draws of labelled history, the lower bound is at or below the
    rule's true precision at least 1 - alpha of the time."""
    alpha, draws = 0.05, 2000
    rng = np.random.default_rng(11)
    below = 0
    for _ in range(draws):
        n = hits + 60
        matched = np.zeros(n, dtype=bool)
        matched[:hits] = True
        label = np.where(matched, rng.random(n) < precision, rng.random(n) < 0.1).astype(int)
        history = pd.DataFrame({"title": np.where(matched, "replica item", "item"), "risk": 0.5, "label": label})
        cert = certify_rule_precision(history, REPLICA, precision, alpha)
        below += cert.lower <= precision
    assert below / draws >= 1 - alpha - 3 * np.sqrt(alpha * (1 - alpha) / draws)


def test_a_shipped_block_rule_that_does_not_certify_ships_as_review() -> None:
    shipped, report = certify_shipped_rules(tiny_history(), tiny_policy(REPLICA, REGULATED))
    assert [(r.name, r.action) for r in shipped.rules] == [("replica", "review"), ("regulated", "review")]
    first = report["rules"][0]
    assert (first["action_requested"], first["action_shipped"]) == ("block", "review")
    assert first["certificate"]["hits"] == 3 and not first["certificate"]["certified"]
    assert "ships as a review rule" in report["warnings"][0]
    # as a review rule it catches row 0's violation (passed below t_pass 0.2) and queues rows 0 and 3 (a
    # review rule wins over the threshold's block); row 1 was queued anyway
    assert first["adds"]["violations_caught"] == 1
    assert first["adds"]["queue_share"] == pytest.approx(2 / 8)
    assert first["adds"]["auto_block_share"] == pytest.approx(-1 / 8)
