"""Threshold choice: the finite-sample guarantees hold, the optimiser is optimal, the modes behave."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from decision.alpha_split import AlphaSplit
from decision.guarantees import RankedScores, certify_block, group_starts, sequence_start
from decision.policy import Policy, route
from decision.segment_thresholds import threshold_for
from decision.thresholds import choose_by_cost, choose_for_capacity, choose_policy_thresholds, choose_thresholds
from features.calibration import fit_calibrator

# Calibrated risk: a mixture of Beta distributions, label ~ Bernoulli(risk).
MIXTURE = ((0.85, 0.5, 6.0), (0.15, 6.0, 0.25))  # (weight, a, b)


def draw(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    component = rng.random(n) < MIXTURE[0][0]
    risk = np.where(component, rng.beta(MIXTURE[0][1], MIXTURE[0][2], n), rng.beta(MIXTURE[1][1], MIXTURE[1][2], n))
    return pd.DataFrame(
        {
            "risk": risk,
            "label": (rng.random(n) < risk).astype(np.int64),
            "review_seconds": rng.gamma(2.0, 30.0, n),
        }
    )


def population_recall(t_pass: float) -> float:
    """Exact share of violations with risk >= t_pass: E[r; r >= t] / E[r] (I_t is the Beta CDF)."""
    caught = sum(w * a / (a + b) * (1 - special.betainc(a + 1, b, t_pass)) for w, a, b in MIXTURE)
    return caught / sum(w * a / (a + b) for w, a, b in MIXTURE)


def population_block_precision(t_block: float) -> float:
    blocked = sum(w * (1 - special.betainc(a, b, t_block)) for w, a, b in MIXTURE)
    bad = sum(w * a / (a + b) * (1 - special.betainc(a + 1, b, t_block)) for w, a, b in MIXTURE)
    return bad / blocked if blocked > 0 else 1.0


def ranked(frame: pd.DataFrame) -> RankedScores:
    return RankedScores.build(frame["risk"].to_numpy(), frame["label"].to_numpy(), frame["review_seconds"].to_numpy())


def test_guarantees_hold_on_new_data_in_at_least_1_minus_delta_of_repetitions() -> None:
    """300 calibration sets from one calibrated distribution; the recall and block precision the
    chosen thresholds give on the distribution itself (exact, i.e. on unlimited new data) must meet
    the targets in >= 95% of them. A point-estimate choice fails far more often: the check has power."""
    recall, precision, delta, reps = 0.95, 0.95, 0.05, 300
    recall_ok, precision_ok, both_ok, naive_recall_ok = [], [], [], []
    for seed in range(reps):
        frame = draw(3000, seed)
        result = choose_thresholds(ranked(frame), recall, precision, delta)
        assert result.feasible and result.point.auto_blocked > 0
        recall_ok.append(population_recall(result.t_pass) >= recall)
        precision_ok.append(population_block_precision(result.t_block) >= precision)
        both_ok.append(recall_ok[-1] and precision_ok[-1])
        positives = np.sort(frame.loc[frame["label"] == 1, "risk"].to_numpy())
        naive_t_pass = positives[int(np.floor((1 - recall) * len(positives)))]  # empirical recall = target
        naive_recall_ok.append(population_recall(naive_t_pass) >= recall)
    assert np.mean(recall_ok) >= 1 - delta
    assert np.mean(precision_ok) >= 1 - delta
    assert np.mean(both_ok) >= 1 - delta
    assert np.mean(naive_recall_ok) < 0.8


def test_guarantee_holds_on_fresh_draws() -> None:
    """Same check counted on fresh finite samples (the guarantee is about the rate; a large fresh
    sample adds little noise)."""
    recall = 0.95
    ok = []
    for seed in range(60):
        result = choose_thresholds(ranked(draw(3000, seed)), recall, 0.95, 0.05)
        fresh = draw(100_000, 10_000 + seed)
        violating = fresh["label"].to_numpy() == 1
        ok.append((fresh["risk"].to_numpy()[violating] >= result.t_pass).mean() >= recall - 0.002)
    assert np.mean(ok) >= 0.95


def _brute_force_min_queue(frame: pd.DataFrame, recall: float, precision: float, delta: float) -> int:
    """Every pair (a, b), a <= b, from {0, every risk value, 1}: feasible when the number of violating
    rows below a has BinomCDF(m; n1, 1-R) <= delta/2, and b lies in the fixed-sequence valid set (every
    tested candidate c from the sequence start down to b has P(Binom(n(c), 1-P) <= wrong(c)) <= delta/2;
    b = 1 blocks nothing and is always allowed). Returns the least queue size."""
    risk, label = frame["risk"].to_numpy(), frame["label"].to_numpy()
    n1, alpha = int(label.sum()), delta / 2
    values = np.unique(risk)
    starts = group_starts(np.sort(risk))
    first = sequence_start(ranked(frame), starts, precision, alpha)
    block_ok = {1.0: True}
    still_valid = True
    for c in values[: first + 1][::-1]:
        above = risk >= c
        p = stats.binom.cdf(int((above & (label == 0)).sum()), int(above.sum()), 1 - precision)
        still_valid = still_valid and p <= alpha
        block_ok[float(c)] = still_valid
    best = None
    for a in [0.0, *values, 1.0]:
        misses = int(((risk < a) & (label == 1)).sum())
        if stats.binom.cdf(misses, n1, 1 - recall) > alpha:
            continue
        for b in [*values, 1.0]:
            if b < a or not block_ok.get(float(b), False):
                continue
            queue = int(((risk >= a) & (risk < b)).sum())
            best = queue if best is None else min(best, queue)
    assert best is not None
    return best


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_optimiser_matches_brute_force(seed: int) -> None:
    frame = draw(220, seed)
    recall, precision, delta = 0.85, 0.85, 0.2
    result = choose_thresholds(ranked(frame), recall, precision, delta)
    assert result.point.queue_items == _brute_force_min_queue(frame, recall, precision, delta)
    risk = frame["risk"].to_numpy()
    assert result.point.queue_items == int(((risk >= result.t_pass) & (risk < result.t_block)).sum())


def test_raising_the_recall_target_never_lowers_workload() -> None:
    scores = ranked(draw(20_000, 5))
    queues = [choose_thresholds(scores, r, 0.98, 0.05).point.queue_items for r in (0.9, 0.95, 0.98, 0.99, 0.995)]
    assert queues == sorted(queues)


def test_capacity_mode_never_exceeds_capacity_and_more_capacity_never_lowers_recall() -> None:
    scores, volume = ranked(draw(20_000, 6)), 50_000
    recalls = []
    for capacity in (0.0, 10.0, 50.0, 100.0, 200.0, 400.0, 2000.0):
        result = choose_for_capacity(scores, capacity, volume, recall=0.99)
        hours_per_day = result.point.reviewer_hours / result.point.n * volume
        assert hours_per_day <= capacity + 1e-9
        recalls.append(result.point.recall)
        assert result.feasible == (1 - result.point.miss_rate_upper >= 0.99)
    assert recalls == sorted(recalls)
    tight = choose_for_capacity(scores, 10.0, volume, recall=0.99)
    assert not tight.feasible and tight.message.startswith("Infeasible") and "reviewer-hours/day" in tight.message
    assert tight.closest is not None


def test_infeasible_targets_give_a_plain_message_not_a_crash() -> None:
    frame = draw(300, 9)  # ~ 45 violating rows: recall 0.999 would need > 3,600
    result = choose_policy_thresholds(frame, recall=0.999, block_precision=0.999, delta=0.05)
    assert not result.feasible
    assert result.message.startswith("Infeasible: recall >= 0.999 cannot be certified")
    assert result.t_pass == 0.0  # fail safe: nothing auto-passed
    assert result.closest is not None and result.closest.t_pass > 0
    policy = result.to_policy()
    assert policy.provisional and policy.t_pass == 0.0
    json.dumps(result.to_dict())
    empty = choose_policy_thresholds(frame.assign(label=0), recall=0.99)
    assert not empty.feasible and empty.closest is None


def test_an_infeasible_target_is_named_as_given() -> None:
    """0.99999 is not rounded to "recall >= 1" (a target no one asked for, and not one the CLI accepts)."""
    result = choose_policy_thresholds(draw(300, 9), recall=0.99999, block_precision=0.98, delta=0.05)
    assert not result.feasible
    assert result.message.startswith("Infeasible: recall >= 0.99999 cannot be certified")


def test_a_planned_split_is_kept_when_no_segment_earns_its_own_thresholds() -> None:
    """--segment-by with no segment large enough certifies the one global pair on all of delta: the same
    certificate as without --segment-by, so the split of delta planned for it applies too."""
    frame = draw(3000, 5).assign(market=np.where(np.arange(3000) % 2 == 0, "US", "DE"))
    planned = AlphaSplit(0.25, (0.75,))
    segmented = choose_policy_thresholds(
        frame, recall=0.9, block_precision=0.9, segment_by="market", alpha_split=planned
    )
    plain = choose_policy_thresholds(frame, recall=0.9, block_precision=0.9, alpha_split=planned)
    assert any("not used: no segment has" in note for note in segmented.notes)
    assert segmented.targets["alpha_split"] == planned.to_dict() == plain.targets["alpha_split"]
    assert (segmented.t_pass, segmented.t_block) == (plain.t_pass, plain.t_block)


def test_cost_mode_is_chows_rule() -> None:
    scores = ranked(draw(5000, 3))
    result = choose_by_cost(scores, cost_review=1.0, cost_miss=50.0, cost_wrong_block=20.0)
    assert result.t_pass == pytest.approx(1 / 50) and result.t_block == pytest.approx(1 - 1 / 20)
    crossing = choose_by_cost(scores, cost_review=10.0, cost_miss=20.0, cost_wrong_block=20.0)
    assert crossing.t_pass < crossing.t_block and crossing.point.queue_items == 0


def test_result_to_dict_is_json_and_carries_bounds() -> None:
    result = choose_policy_thresholds(draw(5000, 4), recall=0.95, block_precision=0.95)
    out = json.loads(json.dumps(result.to_dict()))
    assert out["bounds"]["recall_lower"] >= 0.95 and out["bounds"]["block_precision_lower"] >= 0.95
    for key in (
        "recall",
        "block_precision",
        "auto_pass_share",
        "auto_block_share",
        "queue_share",
        "reviewer_hours",
    ):
        assert key in out["achieved"]
    assert out["n"] == 5000 and out["n_violating"] > 0


# --- per-segment thresholds ------------------------------------------------------------------------------


def segmented_reference(n: int, seed: int) -> pd.DataFrame:
    """Globally calibrated risk that is miscalibrated inside each category (true rate = risk x factor)."""
    rng = np.random.default_rng(seed)
    factors = {"toys": 0.25, "books": 0.5, "phones": 1.5, "watches": 2.5}
    category = rng.choice(list(factors), n, p=[0.3, 0.3, 0.3, 0.1])
    risk = rng.beta(0.4, 3.0, n)
    true = np.clip(risk * pd.Series(category).map(factors).to_numpy(), 0, 1)
    return pd.DataFrame(
        {
            "risk": risk,
            "label": (rng.random(n) < true).astype(np.int64),
            "review_seconds": rng.gamma(2.0, 30.0, n),
            "category": category,
            "market": rng.choice(["de", "fr"], n),
        }
    )


def test_per_segment_thresholds_win_where_risk_is_miscalibrated_within_segments() -> None:
    frame = segmented_reference(60_000, 0)
    result = choose_policy_thresholds(frame, recall=0.95, block_precision=0.9, segment_by="category")
    assert result.mode == "segmented" and result.feasible
    assert result.segment_report is not None and result.segment_report["relative_saving"] > 0.05
    assert set(result.segments) == {"toys", "books", "phones", "watches"}
    # expressed on the ORIGINAL risk: low-rate segments pass more
    assert result.segments["toys"][0] > result.segments["watches"][0]
    policy = result.to_policy()
    assert policy.segment_by == "category"
    t_pass, t_block = policy.thresholds_for(frame["category"].to_numpy())
    fresh = segmented_reference(200_000, 1)
    fp, fb = policy.thresholds_for(fresh["category"].to_numpy())
    codes = route(fresh["risk"].to_numpy(), fp, fb)
    violating = fresh["label"].to_numpy() == 1
    assert (codes[violating] != 0).mean() >= 0.95  # recall on new data


def test_thin_segments_fall_back_and_no_winner_keeps_the_global_pair() -> None:
    frame = segmented_reference(60_000, 2)
    frame.loc[frame.index[:300], "category"] = "rare"
    result = choose_policy_thresholds(frame, recall=0.95, block_precision=0.9, segment_by="category")
    assert "rare" not in result.segments
    assert (
        Policy(
            version="x",
            t_pass=result.t_pass,
            t_block=result.t_block,
            segment_by="category",
            segments=result.segments,
        ).thresholds_for(np.array(["rare"]))[0][0]
        == result.t_pass
    )
    calibrated = draw(40_000, 3).assign(category=lambda f: np.where(np.arange(len(f)) % 2, "a", "b"))
    plain = choose_policy_thresholds(calibrated, recall=0.95, block_precision=0.95, segment_by="category")
    assert plain.mode == "guarantee" and not plain.segments
    assert any("not used" in note for note in plain.notes)


def test_segment_map_inverts_exactly_to_thresholds_on_original_risk() -> None:
    rng = np.random.default_rng(0)
    risk = rng.beta(0.5, 3, 5000)
    calibrator = fit_calibrator(risk, (rng.random(5000) < np.clip(2 * risk, 0, 1)).astype(int))
    probe = rng.random(50_000)
    for tau in (0.0, 0.01, 0.05, 0.2, 0.5, 0.9, 1.0):
        t = threshold_for(calibrator, tau)
        mismatch = (calibrator(probe) >= tau) != (probe >= t)
        assert mismatch.sum() <= 1  # at most the boundary point itself (floating rounding)


# --- MAPIE cross-check (test-only dependency) ------------------------------------------------------------


def _mapie_controller(mapie, risk_name: str, target: float, alpha: float, grid: np.ndarray, frame: pd.DataFrame):
    controller = mapie.BinaryClassificationController(
        predict_function=lambda X: np.c_[1 - X[:, 0], X[:, 0]],
        risk=risk_name,
        target_level=target,
        confidence_level=1 - alpha,
        list_predict_params=grid,
        fwer_method="fixed_sequence",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empirical precision/recall is not exactly monotone in the grid
        controller.calibrate(frame[["risk"]].to_numpy(), frame["label"].to_numpy())
    return controller


def test_block_threshold_matches_mapie_fixed_sequence_precision_control(monkeypatch) -> None:
    """MAPIE's BinaryClassificationController(risk="precision", fwer_method="fixed_sequence") tests the
    same hypotheses on the same grid (every risk value from our label-free sequence start down). Its
    p-value is the binary Hoeffding-Bentkus one: the exact binomial tail, except that MAPIE computes
    ceil(n * (1 - precision)), which float rounding sometimes lifts one count above the true number of
    wrong blocks (more conservative). So: (1) our exact p-values never exceed MAPIE's and equal them
    whenever MAPIE's count is exact; (2) with MAPIE's p-value function plugged into our procedure,
    the certified t_block is identical to MAPIE's; (3) MAPIE never certifies a lower t_block than ours."""
    mapie = pytest.importorskip("mapie.risk_control")
    from mapie.risk_control.methods import compute_hoeffding_bentkus_p_value

    import decision.guarantees as guarantees

    precision, alpha = 0.95, 0.025
    for seed in range(3):
        frame = draw(2000, seed)
        scores = ranked(frame)
        starts = group_starts(scores.risk)
        grid = scores.risk[starts[: sequence_start(scores, starts, precision, alpha) + 1]]
        ours = certify_block(scores, precision, alpha)
        controller = _mapie_controller(mapie, "precision", precision, alpha, grid, frame)
        assert ours is not None and len(controller.valid_predict_params) > 0
        assert float(np.min(controller.valid_predict_params)) >= ours

        risk, label = frame["risk"].to_numpy(), frame["label"].to_numpy()
        n = np.array([(risk >= t).sum() for t in grid])
        wrong = np.array([((risk >= t) & (label == 0)).sum() for t in grid])
        exact = guarantees.block_p_values(n, wrong, precision)
        mapie_p = controller.p_values[:, 0]
        assert np.all(exact <= mapie_p + 1e-12)
        rounded_exactly = np.ceil(n * (1 - (n - wrong) / n)) == wrong
        assert rounded_exactly.mean() > 0.5
        np.testing.assert_allclose(exact[rounded_exactly], mapie_p[rounded_exactly], rtol=1e-9)

        def mapie_p_values(n_blocked, n_wrong, block_precision):
            r_hat = 1 - (n_blocked - n_wrong) / n_blocked  # MAPIE's own arithmetic
            return compute_hoeffding_bentkus_p_value(r_hat, n_blocked.astype(float), 1 - block_precision, binary=True)[
                :, 0
            ]

        with monkeypatch.context() as patch:
            patch.setattr(guarantees, "block_p_values", mapie_p_values)
            assert certify_block(scores, precision, alpha) == float(np.min(controller.valid_predict_params))


def test_pass_threshold_matches_mapie_fixed_sequence_recall_control() -> None:
    """Recall is expressible too: "predicted positive" = not auto-passed (risk >= t), and fixed-sequence
    testing from the lowest threshold up. Our closed form (the (k*+1)-th smallest violating risk) is the
    last threshold that walk certifies with exact p-values; MAPIE's p-values equal those except where
    its ceil() rounds a count up, so MAPIE's t_pass is never higher than ours and equal when rounding
    does not bite before the stop."""
    mapie = pytest.importorskip("mapie.risk_control")
    recall, alpha = 0.95, 0.025
    agree = 0
    for seed in range(5):
        frame = draw(2000, seed)
        result = choose_thresholds(ranked(frame), recall, 0.95, 2 * alpha)
        grid = np.unique(frame["risk"].to_numpy())
        controller = _mapie_controller(mapie, "recall", recall, alpha, grid, frame)
        risk, label = frame["risk"].to_numpy(), frame["label"].to_numpy()
        misses = np.searchsorted(np.sort(risk[label == 1]), grid, side="left")
        exact = stats.binom.cdf(misses, int(label.sum()), 1 - recall)
        walk = grid[: int(np.argmax(exact > alpha))]
        assert walk.max() == result.t_pass  # closed form == exact fixed-sequence walk
        mapie_max = float(np.max(controller.valid_predict_params))
        assert mapie_max <= result.t_pass
        assert np.all(exact <= controller.p_values[:, 0] + 1e-12)
        agree += mapie_max == result.t_pass
    assert agree >= 1


# --- CLI ----------------------------------------------------------------------------------------------------
