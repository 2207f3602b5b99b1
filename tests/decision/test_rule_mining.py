"""Rule suggestions mined from verdicts: a planted pattern is found, the certified precision is a valid
simultaneous lower bound (coverage simulation), mining never changes a policy, and the reported effects
equal what a backtest of the suggested rule says."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from decision.backtest import backtest
from decision.policy import Policy
from decision.rule_mining import (
    MiningOptions,
    SuggestionReport,
    certify_together,
    mine_candidates,
    split_history,
    suggest_rules,
)
from decision.rules import Rule
from decision.thresholds import default_rules
from features.config import DataConfig
from training.generate import generate

CONFIG = DataConfig()
PLANTED = "zorbex"  # a made-up prohibited word: on 160 listings, 95% of them rejected


@pytest.fixture(scope="module")
def history() -> pd.DataFrame:
    """Generated verdicts with the generator's exact risk standing in for a model's, and a planted term."""
    reviews, oracle = generate(24_000, seed=11)
    rng = np.random.default_rng(11)
    rows = rng.choice(len(reviews), size=160, replace=False)
    reviews.loc[rows, "title"] = reviews.loc[rows, "title"] + f" {PLANTED} kit"
    reviews.loc[rows, "label"] = (rng.random(len(rows)) < 0.95).astype(np.int64)
    reviews["risk"] = oracle["true_risk"].to_numpy()
    reviews.loc[rows, "risk"] = 0.3  # the model does not know the word: these rows sit in the queue
    return reviews


def _policy() -> Policy:
    return Policy(
        version="p",
        t_pass=0.03,
        t_block=0.9,
        rules=default_rules(CONFIG),
        targets={"block_precision": 0.8, "confidence": 0.95},
    )


@pytest.fixture(scope="module")
def report(history: pd.DataFrame) -> SuggestionReport:
    return suggest_rules(history, _policy(), CONFIG, MiningOptions(min_support=15), limit=40)


def test_the_planted_term_is_suggested_as_a_certified_block_rule(report: SuggestionReport) -> None:
    found = [s for s in report.suggestions if s.rule.kind == "term" and PLANTED in s.rule.terms]
    assert found, [s.description for s in report.suggestions]
    best = found[0]
    assert best.certificate["certified"] and best.rule.action == "block"
    assert best.certificate["lower"] <= best.certificate["precision"]
    assert best.as_block["hits_in_queue"] > 0 and best.as_block["reviewer_hours_removed"] > 0
    assert report.candidates_certified >= len(report.suggestions)
    assert report.alpha_each == pytest.approx(report.alpha / report.candidates_certified)
    lowers = [s.certificate["lower"] for s in report.suggestions]
    assert lowers == sorted(lowers, reverse=True)  # ranked by certified precision


def test_candidates_are_mined_on_older_rows_and_certified_on_newer_ones(
    history: pd.DataFrame, report: SuggestionReport
) -> None:
    mining, holdout = split_history(history, CONFIG, 0.5)
    assert mining["created_at"].max() <= holdout["created_at"].min()
    assert report.mining_rows == len(mining) and report.holdout_rows == len(holdout)
    for suggestion in report.suggestions:  # the certificate counts held-out rows only
        assert suggestion.certificate["hits"] == int(suggestion.rule.match(holdout).sum())


def test_mining_never_enables_or_adds_a_rule(history: pd.DataFrame) -> None:
    policy = _policy()
    before = policy.to_dict()

    found = suggest_rules(history, policy, CONFIG, MiningOptions(min_support=15), limit=10, with_backtest=False)

    assert policy.to_dict() == before
    assert {r.name for r in policy.rules} == {r.name for r in default_rules(CONFIG)}
    assert found.suggestions and all(not s.enabled and not s.to_dict()["enabled"] for s in found.suggestions)
    assert all(s.rule.to_dict().get("enabled", False) is False for s in found.suggestions)
    assert found.to_dict()["enabled"] is False
    assert not {s.rule.name for s in found.suggestions} & {r.name for r in policy.rules}


def test_a_rule_already_in_force_is_not_suggested_again(history: pd.DataFrame, report: SuggestionReport) -> None:
    first = report.suggestions[0].rule
    policy = _policy()
    added = {**first.condition_dict(), "name": "added_by_a_person", "action": first.action}  # enabled, enforced
    policy.rules.append(Rule.from_dict(added))

    again = suggest_rules(history, policy, CONFIG, MiningOptions(min_support=15), limit=40, with_backtest=False)

    assert all(s.rule.condition_dict() != first.condition_dict() for s in again.suggestions)
    assert report.suggestions[1].rule.condition_dict() in [s.rule.condition_dict() for s in again.suggestions]


def test_reported_effects_equal_the_backtest_of_the_suggested_rule(
    history: pd.DataFrame, report: SuggestionReport
) -> None:
    _, holdout = split_history(history, CONFIG, 0.5)
    policy = _policy()
    for suggestion in report.suggestions[:8]:
        assert suggestion.backtest is not None
        as_block = Rule.from_dict({**suggestion.rule.to_dict(), "action": "block"})
        as_review = Rule.from_dict({**suggestion.rule.to_dict(), "action": "review"})
        block_delta = backtest(holdout, policy, as_block)["delta"]
        review_delta = backtest(holdout, policy, as_review)["delta"]
        assert block_delta["counts"]["human_review"] == -suggestion.as_block["hits_in_queue"]
        assert block_delta["reviewer_hours"] == pytest.approx(-suggestion.as_block["reviewer_hours_removed"])
        assert review_delta["counts"]["auto_pass"] == -suggestion.as_review["workload_added_items"]
        assert review_delta["missed_violations"] == -suggestion.as_review["extra_violations_caught"]
        assert suggestion.backtest["delta"] == (block_delta if suggestion.rule.action == "block" else review_delta)


def test_every_family_yields_rules_the_matcher_runs(history: pd.DataFrame) -> None:
    found = suggest_rules(
        history,
        _policy(),
        CONFIG,
        MiningOptions(min_support=10, merchant_support=5, min_mined_precision=0.3, max_candidates=200),
        limit=200,
        with_backtest=False,
    )
    families = {s.family for s in found.suggestions}
    assert {"term", "term_set", "brand_price", "merchant", "tree"} <= families, families
    for suggestion in found.suggestions:
        again = Rule.from_dict(suggestion.to_dict()["rule"])  # what a person would PUT
        assert again == suggestion.rule
    brand = next(s for s in found.suggestions if s.family == "brand_price")
    kinds = [c.kind for c in brand.rule.all]
    assert brand.rule.kind == "all" and kinds[0] == "term" and kinds[-1] == "range"
    merchant = next(s for s in found.suggestions if s.family == "merchant")
    assert merchant.rule.kind == "category" and merchant.rule.column == "merchant_id"


def test_category_and_market_conditions_are_candidates(history: pd.DataFrame) -> None:
    mining, _ = split_history(history, CONFIG, 0.5)
    labels = mining["label"].to_numpy()
    everything = MiningOptions(min_support=10, min_mined_precision=0.0, per_family=1000)
    candidates = [c for c in mine_candidates(mining, labels, CONFIG, everything) if c.family == "category"]
    singles = {c.rule.values[0] for c in candidates if c.rule.kind == "category" and c.rule.column == "category"}
    assert "pharmacy" in singles and "tobacco accessories" in singles
    pairs = [c for c in candidates if c.rule.kind == "all"]
    assert pairs and all([x.column for x in c.rule.all] == ["category", "market"] for c in pairs)
    for candidate in candidates[:20]:  # the mined hits are what the rule matches
        assert (candidate.rule.match(mining) == candidate.mask).all(), candidate.description


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (MiningOptions(mine_share=1.0), "mine_share"),
        (MiningOptions(alpha=0.0), "alpha"),
        (MiningOptions(min_support=0), "min_support"),
    ],
)
def test_bad_options_are_refused_naming_the_field(history: pd.DataFrame, options: MiningOptions, field: str) -> None:
    with pytest.raises(ValueError, match=rf"^{field}:"):
        suggest_rules(history, _policy(), CONFIG, options)


def test_history_without_risk_or_labels_is_refused(history: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"history: missing columns \['risk'\]"):
        suggest_rules(history.drop(columns=["risk"]), _policy(), CONFIG)
    with pytest.raises(ValueError, match=r"sort: 'best'"):
        suggest_rules(history, _policy(), CONFIG, sort="best")


def _simulated_holdout(rng: np.random.Generator, sizes: np.ndarray, precision: np.ndarray) -> pd.DataFrame:
    group = np.repeat(np.arange(len(sizes)), sizes)
    label = (rng.random(len(group)) < precision[group]).astype(np.int64)
    return pd.DataFrame({"group": [f"g{g}" for g in group], "label": label, "risk": 0.5})


def test_certified_precisions_hold_together_with_the_stated_confidence() -> None:
    """Coverage simulation: K rules with known precisions, certified on fresh held-out rows at alpha/K.
    All K lower bounds hold at once in at least 1 - alpha of the runs; bounds at alpha each (no
    correction) fail together far more often, which is why the correction is there."""
    rng = np.random.default_rng(0)
    k, alpha, runs = 12, 0.2, 300
    sizes = rng.integers(20, 150, size=k)
    precision = rng.uniform(0.7, 0.99, size=k)
    rules = [Rule(f"r{j}", "block", "category", column="group", values=[f"g{j}"]) for j in range(k)]
    together = uncorrected = 0
    for _ in range(runs):
        holdout = _simulated_holdout(rng, sizes, precision)
        lowers = np.array([c.lower for c in certify_together(holdout, rules, 0.9, alpha)])
        together += bool((lowers <= precision).all())
        single = np.array([c.lower for c in certify_together(holdout, rules[:1], 0.9, alpha)] + [0.0] * (k - 1))
        raw = np.array([c.lower for c in certify_together(holdout, rules, 0.9, alpha * k)])
        uncorrected += bool((raw <= precision).all())
        assert single[0] >= lowers[0]  # one rule alone is certified at the full alpha: a higher bound
    # 1 - alpha = 0.8; a run of 300 at the edge would show >= 0.75 with probability above 0.98
    assert together / runs >= 0.75, together / runs
    assert uncorrected / runs < together / runs - 0.15, (uncorrected / runs, together / runs)


def test_bounds_on_the_rows_that_chose_the_rules_are_biased_and_held_out_rows_fix_it() -> None:
    """Why mining and certifying use disjoint rows: pick the 5 best-looking of 200 equally good rules (true
    precision 0.8) on some rows; their bounds at alpha/5 on those same rows fail far more often than
    alpha (the winner's curse), on fresh rows they hold."""
    rng = np.random.default_rng(1)
    k, chosen, alpha, runs = 200, 5, 0.1, 60
    sizes, precision = np.full(k, 40), np.full(k, 0.8)
    rules = [Rule(f"r{j}", "block", "category", column="group", values=[f"g{j}"]) for j in range(k)]
    same_rows_held = fresh_rows_held = 0
    for _ in range(runs):
        mining, fresh = _simulated_holdout(rng, sizes, precision), _simulated_holdout(rng, sizes, precision)
        observed = mining.groupby("group")["label"].mean()
        best = [rules[int(g[1:])] for g in observed.sort_values(ascending=False).index[:chosen]]
        same_rows_held += all(c.lower <= 0.8 for c in certify_together(mining, best, 0.9, alpha))
        fresh_rows_held += all(c.lower <= 0.8 for c in certify_together(fresh, best, 0.9, alpha))
    assert same_rows_held / runs < 1 - 2 * alpha, same_rows_held / runs
    assert fresh_rows_held / runs >= 1 - 2 * alpha, fresh_rows_held / runs


def test_the_workload_sort_ranks_review_rules_by_what_they_catch_not_by_block_hours() -> None:
    """Review rules were ranked by the reviewer-hours they would remove as block rules, which they never do."""
    from decision.rule_mining import Suggestion, ranked

    def suggestion(name: str, action: str, hours_removed: float, caught: int, hours_added: float) -> Suggestion:
        return Suggestion(
            rule=Rule(name=name, action=action, kind="term", terms=[name], fields=["title"]),
            family="term",
            description=name,
            mined={},
            certificate={"lower": 0.9, "certified": action == "block"},
            as_block={"reviewer_hours_removed": hours_removed},
            as_review={"extra_violations_caught": caught, "reviewer_hours_added": hours_added},
        )

    suggestions = [
        suggestion("r_many_hours", "review", 50.0, 3, 9.0),
        suggestion("b_small", "block", 2.0, 0, 0.0),
        suggestion("r_cheap", "review", 0.0, 3, 1.0),
        suggestion("b_big", "block", 8.0, 0, 0.0),
        suggestion("r_best", "review", 1.0, 7, 4.0),
    ]
    names = [s.rule.name for s in ranked(suggestions, "workload", 0.5, 10)]
    assert names == ["b_big", "b_small", "r_best", "r_cheap", "r_many_hours"]
