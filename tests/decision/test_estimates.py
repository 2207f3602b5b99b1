"""Production estimates: exact on a fully reviewed log, unbiased and covering at their stated confidence
on simulated logs with known truth (Poisson audit sampling as the service draws it), and refusing bad
input by name."""

from __future__ import annotations

import math

import numpy as np
import pytest

from decision.audit import AuditPlan, draw_audits, inclusion_probabilities, pass_margin
from decision.estimates import Estimate, grouped_estimates, production_estimates

T_PASS, T_BLOCK, FLOOR = 0.03, 0.45, 0.02
TRUTH_KEYS = ("miss_rate", "recall", "block_precision", "violation_rate")


def _traffic(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decision codes, inclusion probabilities and true labels of n decisions: ~40% auto-passed (misses
    ~1%), ~5% auto-blocked, the rest reviewed; audits at 2% far below t_pass, 10% near it and of blocks."""
    risk = rng.beta(0.4, 3.0, n)
    truth = (rng.random(n) < risk).astype(np.float64)
    codes = np.where(risk < T_PASS, 0, np.where(risk >= T_BLOCK, 2, 1)).astype(np.int8)
    pi = inclusion_probabilities(codes, pass_margin(risk, T_PASS), FLOOR, AuditPlan())
    return codes, pi, truth


def _logged_labels(
    rng: np.random.Generator, codes: np.ndarray, pi: np.ndarray, truth: np.ndarray, pending: float = 0.0
) -> np.ndarray:
    """Labels as the log holds them: a verdict for every review and every drawn audit, except a share
    `pending` (at random) whose verdict has not arrived; NaN elsewhere."""
    seen = draw_audits(codes, pi, rng) | (codes == 1)
    seen &= rng.random(len(codes)) >= pending
    return np.where(seen, truth, np.nan)


def _true_values(codes: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    return {
        "miss_rate": truth[codes == 0].mean(),
        "recall": 1.0 - truth[codes == 0].sum() / truth.sum(),
        "block_precision": truth[codes == 2].mean(),
        "violation_rate": truth.mean(),
    }


def test_fully_reviewed_log_gives_exact_values_with_point_intervals() -> None:
    codes = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2], dtype=np.int8)
    truth = np.array([0, 0, 0, 1, 1, 0, 1, 1, 1, 0], dtype=np.float64)
    result = production_estimates(codes, np.ones(10), truth)
    assert result["miss_rate"].estimate == pytest.approx(0.25)
    assert result["recall"].estimate == pytest.approx(1 - 1 / 5)
    assert result["block_precision"].estimate == pytest.approx(2 / 3)
    assert result["violation_rate"].estimate == pytest.approx(0.5)
    for key in TRUTH_KEYS:  # everything was looked at: nothing left to estimate
        assert result[key].low == pytest.approx(result[key].estimate)
        assert result[key].high == pytest.approx(result[key].estimate)
    assert result["queue_share"].estimate == pytest.approx(0.3)
    assert result["queue_share"].low < 0.3 < result["queue_share"].high  # a rate of the traffic: Wilson on 10


def test_audited_rows_stand_for_one_over_pi_rows() -> None:
    # 100 auto-passes audited at 10%: the 10 audited ones hold 1 miss -> 10% of the 100 estimated missed
    codes = np.zeros(120, dtype=np.int8)
    codes[100:] = 1
    pi = np.where(codes == 0, 0.1, 1.0)
    label = np.full(120, np.nan)
    label[:10] = [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    label[100:] = np.r_[np.ones(10), np.zeros(10)]  # 10 violations reviewed
    result = production_estimates(codes, pi, label)
    assert result["miss_rate"].estimate == pytest.approx(0.1)
    assert result["recall"].estimate == pytest.approx(10 / (10 + 10))
    assert result["miss_rate"].n_labelled == 10
    assert 0 < result["miss_rate"].low < 0.1 < result["miss_rate"].high < 0.5


def test_no_miss_seen_still_gives_an_upper_bound() -> None:
    codes = np.r_[np.zeros(1000), np.ones(50)].astype(np.int8)
    pi = np.where(codes == 0, 0.05, 1.0)
    label = np.full(len(codes), np.nan)
    label[:50] = 0.0  # 50 audits, no miss
    label[1000:] = 1.0
    result = production_estimates(codes, pi, label)
    assert result["miss_rate"].estimate == 0.0
    assert result["miss_rate"].high > 0.03  # about 3.8/50: no observed miss is not proof of none
    assert result["recall"].estimate == 1.0
    assert result["recall"].low < 0.5


def test_missing_decisions_or_verdicts_give_nan_not_an_error() -> None:
    codes = np.array([1, 1, 0], dtype=np.int8)
    result = production_estimates(codes, np.array([1.0, 1.0, 0.1]), np.array([1.0, 0.0, np.nan]))
    assert math.isnan(result["block_precision"].estimate)  # no blocks
    assert math.isnan(result["miss_rate"].estimate)  # a pass without any audit yet
    assert math.isnan(result["recall"].estimate)
    assert result["miss_rate"].to_dict() == {
        "estimate": None,
        "low": None,
        "high": None,
        "n_labelled": 0,
        "why": (
            "none of the 1 auto-passed decisions has a verdict yet (none was drawn for audit, or its audits are "
            "pending)"
        ),
    }
    assert result["block_precision"].to_dict()["why"] == "no auto-blocked decisions in the window"
    assert result["recall"].to_dict()["why"] == result["miss_rate"].why  # the pass share is missing
    assert result["queue_share"].to_dict()["why"] is None  # known: an estimate says nothing


def test_recall_says_why_it_is_missing_while_auto_blocks_await_their_audit() -> None:
    # every pass audited and every review done, but the blocks' audits are still pending
    codes = np.array([0, 0, 1, 1, 2, 2], dtype=np.int8)
    label = np.array([0.0, 0.0, 1.0, 0.0, np.nan, np.nan])
    result = production_estimates(codes, np.array([1.0, 1.0, 1.0, 1.0, 0.5, 0.5]), label)
    assert result["recall"].to_dict()["estimate"] is None
    assert result["recall"].why == (
        "none of the 2 auto-blocked decisions has a verdict yet (none was drawn for audit, or its audits are pending)"
    )
    assert result["violation_rate"].why == result["recall"].why
    no_violation = production_estimates(codes[:4], np.ones(4), np.zeros(4))
    assert no_violation["recall"].why == "no violation among the verdicts: recall has no denominator"
    assert no_violation["miss_rate"].to_dict()["why"] is None
    empty = production_estimates(np.array([], dtype=np.int8), np.array([]), np.array([]))
    assert {k: e.why for k, e in empty.items()}["queue_share"] == "no decisions in the window"


def test_grouped_estimates_split_by_value() -> None:
    codes = np.array([0, 1, 0, 1], dtype=np.int8)
    label = np.array([0.0, 1.0, 1.0, 1.0])
    by_group = grouped_estimates(codes, np.ones(4), label, np.array(["toys", "toys", "books", None], dtype=object))
    assert list(by_group) == ["books", "none", "toys"]
    assert by_group["books"]["miss_rate"].estimate == 1.0
    assert by_group["toys"]["miss_rate"].estimate == 0.0
    assert isinstance(by_group["none"]["queue_share"], Estimate)


@pytest.mark.parametrize(
    ("codes", "pi", "label", "field"),
    [
        ([0, 3], [1.0, 1.0], [0.0, 1.0], "codes"),
        ([0, 1], [0.0, 1.0], [0.0, 1.0], "pi"),
        ([0, 1], [np.nan, 1.0], [0.0, 1.0], "pi"),
        ([0, 1], [1.0, 1.0], [0.5, 1.0], "label"),
        ([0, 1], [1.0], [0.0, 1.0], "one length"),
    ],
)
def test_bad_input_is_refused_by_name(codes: list[int], pi: list[float], label: list[float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        production_estimates(np.array(codes), np.array(pi), np.array(label))


REPS = 600  # Monte-Carlo standard error of a 95% coverage: sqrt(0.95 * 0.05 / 600) = 0.0089
N_DECISIONS = 5000


@pytest.fixture(scope="module")
def simulated_logs() -> list[tuple[dict[str, float], dict[str, Estimate]]]:
    """REPS simulated windows of N_DECISIONS decisions, each a fresh population (the truth) and one audit
    draw from it, 20% of verdicts still pending (missing at random): (truth, estimates) per window."""
    rng = np.random.default_rng(2026)
    logs = []
    for _ in range(REPS):
        codes, pi, truth = _traffic(rng, N_DECISIONS)
        label = _logged_labels(rng, codes, pi, truth, pending=0.2)
        logs.append((_true_values(codes, truth), production_estimates(codes, pi, label)))
    return logs


@pytest.mark.parametrize("key", TRUTH_KEYS)
def test_estimates_are_unbiased_on_simulated_logs(
    key: str, simulated_logs: list[tuple[dict[str, float], dict[str, Estimate]]]
) -> None:
    errors = np.array([est[key].estimate - truth[key] for truth, est in simulated_logs])
    standard_error = errors.std(ddof=1) / math.sqrt(len(errors))
    # mean error within 3 Monte-Carlo standard errors of 0 (recall, a ratio, has an O(1/n) bias far below that)
    assert abs(errors.mean()) < 3 * standard_error, (errors.mean(), standard_error)


@pytest.mark.parametrize("key", TRUTH_KEYS)
def test_intervals_cover_at_their_stated_confidence(
    key: str, simulated_logs: list[tuple[dict[str, float], dict[str, Estimate]]]
) -> None:
    covered = np.mean([est[key].low <= truth[key] <= est[key].high for truth, est in simulated_logs])
    # at least 95% within 3 Monte-Carlo standard errors (0.027), and not vacuous: below 99.5%
    assert 0.95 - 0.027 <= covered <= 0.995, covered


def test_without_weights_the_naive_miss_rate_is_biased() -> None:
    """The audit oversamples passes near t_pass, where misses are likelier: the plain mean of audited
    labels overstates the miss rate, which the 1/pi weighting corrects."""
    rng = np.random.default_rng(5)
    codes, pi, truth = _traffic(rng, 200_000)
    label = _logged_labels(rng, codes, pi, truth)
    passed = codes == 0
    naive = np.nanmean(label[passed])
    weighted = production_estimates(codes, pi, label)["miss_rate"]
    true_rate = truth[passed].mean()
    assert weighted.low <= true_rate <= weighted.high
    assert not weighted.low <= naive <= weighted.high
