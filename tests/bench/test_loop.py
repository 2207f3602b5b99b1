"""The loop benchmark: what each arm logs, how a period is judged, and one tiny cycle end to end."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from bench.loop import (
    ALL,
    Deployed,
    LoopSettings,
    Period,
    exact_certificate_meets_target,
    gated_retrain,
    judge,
    live_period,
    logged_labels,
    pooled_coverage,
    pooled_failures,
    production_estimate_check,
    render,
    run_seed,
    split_periods,
    summarize,
    tier_true_risk,
)
from decision.audit import AuditPlan
from decision.policy import CODE_BLOCK, CODE_PASS, CODE_REVIEW
from features.config import INCLUSION_PROB, DataConfig
from training.generate import generate
from training.offline import decide

# a single target low enough that a tiny bundle auto-decides a good share (so audits are drawn)
TINY = LoopSettings(
    rows=12_000, cycles=1, arms=("weighted", "unweighted", "full-labels"), single_recall=0.9, block_precision=0.9
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    workdir = tmp_path_factory.mktemp("loop")
    return run_seed(3, TINY, workdir), workdir


# --- the labels each arm logs ---------------------------------------------------------------------------------


def _period(codes: list[int], pi: list[float], audited: list[bool]) -> Period:
    codes_arr = np.asarray(codes, dtype=np.int8)
    return Period(codes_arr, np.asarray(pi), np.asarray(audited))


def test_selective_arms_log_only_reviewed_and_audited_rows_with_their_probabilities():
    listings = pd.DataFrame({"listing_id": list("abcde"), "label": [0, 1, 0, 1, 0]})
    period = _period([0, 1, 0, 2, 0], [0.02, 1.0, 0.1, 0.1, 0.02], [False, False, True, True, False])
    weighted = logged_labels(listings, period, "weighted")
    assert list(weighted["listing_id"]) == ["b", "c", "d"]
    assert list(weighted[INCLUSION_PROB]) == [1.0, 0.1, 0.1]
    unweighted = logged_labels(listings, period, "unweighted")
    assert list(unweighted["listing_id"]) == ["b", "c", "d"] and INCLUSION_PROB not in unweighted
    full = logged_labels(listings, period, "full-labels")
    assert list(full["listing_id"]) == list("abcde") and (full[INCLUSION_PROB] == 1.0).all()


def test_periods_follow_the_history_in_calendar_order():
    reviews, _ = generate(3_000, seed=1, months=TINY.months)
    history, periods = split_periods(reviews, TINY)
    assert len(periods) == TINY.cycles + 1
    assert len(history) + sum(len(p) for p in periods) == len(reviews)
    edges = [history["created_at"].max()] + [p["created_at"].max() for p in periods]
    for before, period in zip(edges, periods, strict=False):
        assert period["created_at"].min() > before


# --- judging a period by every label ---------------------------------------------------------------------------


@dataclass
class _FakeBundle:
    config: DataConfig
    policy: Any = None


def _single_target(recall: float, certified: bool) -> Deployed:
    config = DataConfig().single_tier()
    policy = types.SimpleNamespace(t_pass=0.1, t_block=0.9, tier_pass={}, qa_sample_rate=0.02, audit=AuditPlan())
    deployed = Deployed(Path("."), _FakeBundle(config, policy), {ALL: recall}, {ALL: certified}, 0.9)  # type: ignore[arg-type]
    deployed.certified["block_precision"] = True
    return deployed


def test_judge_counts_misses_among_all_violations_and_only_certified_targets():
    listings = pd.DataFrame({"listing_id": [str(i) for i in range(10)], "label": [1, 1, 1, 1, 0, 0, 0, 0, 0, 1]})
    codes = [
        CODE_PASS,
        CODE_REVIEW,
        CODE_REVIEW,
        CODE_REVIEW,
        CODE_PASS,
        CODE_PASS,
        CODE_REVIEW,
        CODE_REVIEW,
        CODE_REVIEW,
        CODE_BLOCK,
    ]
    period = _period(codes, [0.02, 1, 1, 1, 0.02, 0.02, 1, 1, 1, 0.1], [False] * 10)
    oracle = pd.DataFrame({"true_risk": np.linspace(0.1, 0.9, 10)})
    judged = judge(_single_target(0.9, certified=True), listings, oracle, period)
    assert judged["recall"][ALL] == pytest.approx(0.8)  # 1 of 5 violations auto-passed
    assert judged["block_precision"] == 1.0
    assert judged["held"] == {ALL: False, "block_precision": True}
    assert judged["all_certified_held"] is False
    assert judged["auto_decided_share"] == pytest.approx(0.4)
    true_risk = oracle["true_risk"].to_numpy()
    passed = np.asarray(codes) == CODE_PASS
    assert judged["expected_recall"][ALL] == pytest.approx(1 - true_risk[passed].sum() / true_risk.sum())
    assert judged["expected_block_precision"] == pytest.approx(0.9)
    uncertified = judge(_single_target(0.9, certified=False), listings, oracle, period)
    assert uncertified["certified_held"] == {"block_precision": True} and uncertified["all_certified_held"]


def test_tier_true_risks_split_the_oracle_risk_by_the_configs_tiers():
    _, oracle = generate(2_000, seed=2)
    tiered = tier_true_risk(DataConfig(), oracle)
    assert set(tiered) == {"severe", "minor"}
    np.testing.assert_allclose(tiered["severe"] + tiered["minor"], oracle["true_risk"], atol=1e-9)
    np.testing.assert_allclose(tiered["minor"], oracle["true_risk_other"])
    np.testing.assert_array_equal(tier_true_risk(DataConfig().single_tier(), oracle)[ALL], oracle["true_risk"])


def test_production_estimates_are_reported_missing_or_checked_against_the_truth(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    codes = np.array([CODE_PASS, CODE_PASS, CODE_REVIEW, CODE_REVIEW], dtype=np.int8)
    period = Period(codes, np.array([0.5, 0.5, 1.0, 1.0]), np.array([True, False, False, False]))
    label = np.array([0, 1, 1, 0])
    monkeypatch.setitem(sys.modules, "decision.estimates", None)  # import fails: reported, not guessed
    assert "missing" in production_estimate_check(period, label)

    seen: dict[str, np.ndarray] = {}

    @dataclass(frozen=True)
    class Estimate:
        estimate: float
        low: float
        high: float
        n_labelled: int

        def to_dict(self) -> dict[str, float]:
            return {"estimate": self.estimate, "low": self.low, "high": self.high, "n_labelled": self.n_labelled}

    def production_estimates(codes: np.ndarray, pi: np.ndarray, label: np.ndarray) -> dict[str, Estimate]:
        seen["label"] = label
        return {"recall": Estimate(0.6, 0.4, 0.9, 3), "miss_rate": Estimate(0.0, 0.0, 0.2, 1)}

    monkeypatch.setitem(
        sys.modules, "decision.estimates", types.SimpleNamespace(production_estimates=production_estimates)
    )
    checked = production_estimate_check(period, label)
    # the estimator sees only verdicts of reviewed and audited listings
    np.testing.assert_array_equal(seen["label"], [0.0, np.nan, 1.0, 0.0])
    assert checked["recall"]["realized"] == pytest.approx(0.5) and checked["recall"]["covered"]
    assert checked["miss_rate"]["realized"] == pytest.approx(0.5) and checked["miss_rate"]["covered"] is False


# --- one tiny cycle end to end ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_tiny_loop_report_has_every_arm_and_cycle(tiny_run):
    run, _ = tiny_run
    assert set(run["arms"]) == set(TINY.arms)
    for judged in run["arms"].values():
        assert [("trained_on" in j) for j in judged] == [False] + [True] * TINY.cycles
        for j in judged:
            assert 0.0 <= j["auto_pass_share"] <= j["auto_decided_share"] <= 1.0
            assert j["auto_decided_share"] == pytest.approx(j["auto_pass_share"] + j["auto_block_share"])
            assert 1.0 - j["auto_decided_share"] <= j["labelled_share"] + 1e-12  # every review is labelled
            assert set(j["certified_held"]) <= set(j["held"])
            assert j["production_estimates"]  # checked, or said to be missing
    assert run["arms"]["weighted"][0] == run["arms"]["full-labels"][0]  # period 0: the same bundle and audit draw
    for judged in run["arms"].values():
        for before, now in zip(judged, judged[1:], strict=False):  # a refused retrain leaves the bundle in force
            gate = now["gate"]
            assert now["bundle"] == (gate["challenger"] if gate["promoted"] else before["bundle"])
            assert gate["promoted"] == (not gate["refusals"]) and gate["gate_rows"] > 0
            assert isinstance(gate["champion_lapsed"], list)
            assert set(gate["champion_failing"]) <= set(gate["champion_lapsed"])  # failing is one way to lapse
    # the full arm learns from every listing, the selective ones from what people looked at
    assert run["arms"]["full-labels"][1]["trained_on"] > run["arms"]["weighted"][1]["trained_on"]
    assert run["arms"]["weighted"][1]["trained_on"] == run["arms"]["unweighted"][1]["trained_on"]
    summary = summarize([run], TINY)
    assert set(summary["targets"]["auto_decided_share_vs_full"]["ratio"]) == {"weighted", "unweighted"}
    for judge_by in ("labels", "expected"):
        assert 0.0 <= summary["targets"][f"certified_targets_hold_{judge_by}"]["worst_share"] <= 1.0
    assert isinstance(summary["weighted_equals_unweighted"], bool)
    for cycles in summary["arms"].values():
        assert cycles[0]["champion_lapsed_share"] is None  # no retrain, no gate, before cycle 1
        assert all(0.0 <= c["champion_failing_share"] <= c["champion_lapsed_share"] <= 1.0 for c in cycles[1:])
    report = render({"settings": {}, "runs": [run], "summary": summary, "meta": _meta()})
    for arm in TINY.arms:
        assert f"| {arm} | {TINY.cycles} |" in report


@pytest.mark.slow
def test_deployed_bundle_audits_with_probabilities_in_0_1_and_labels_only_what_people_saw(tiny_run):
    _, workdir = tiny_run
    deployed = Deployed.load(workdir / "seed3" / "initial" / "latest")
    reviews, _ = generate(TINY.rows, seed=3, months=TINY.months)
    history, periods = split_periods(reviews, TINY)
    period = live_period(deployed, periods[0], history, np.random.default_rng(0), TINY)
    assert ((period.pi > 0) & (period.pi <= 1)).all()
    assert (period.pi[period.codes == CODE_REVIEW] == 1.0).all()
    assert (period.pi[period.codes != CODE_REVIEW] < 1.0).all()
    assert (period.codes == CODE_PASS).mean() > 0.1 and period.audited.any()  # the check is not vacuous
    assert not period.audited[period.codes == CODE_REVIEW].any()
    logged = logged_labels(periods[0], period, "weighted")
    expected = periods[0][(period.codes == CODE_REVIEW) | period.audited]
    assert list(logged["listing_id"]) == list(expected["listing_id"])
    audited_ids = set(periods[0]["listing_id"][period.audited])
    audited_rows = logged["listing_id"].isin(audited_ids).to_numpy()
    np.testing.assert_array_equal(logged[INCLUSION_PROB].to_numpy()[audited_rows], period.pi[period.audited])
    assert (logged[INCLUSION_PROB].to_numpy()[~audited_rows] == 1.0).all()
    # with every verdict arriving, which listings are audited cannot change what the merchant history holds
    every = live_period(deployed, periods[0], history, np.random.default_rng(0), TINY, every_verdict=True)
    raised = live_period(
        deployed, periods[0], history, np.random.default_rng(0), replace(TINY, audit_floor=0.3), every_verdict=True
    )
    np.testing.assert_array_equal(raised.codes, every.codes)  # same decisions, only the audit rates differ
    assert (raised.pi[raised.codes != CODE_REVIEW] >= 0.3).all()


@pytest.mark.slow
def test_a_period_is_scored_with_live_merchant_history_as_verdicts_arrive_day_by_day(tiny_run):
    """`live_period` scores each day's listings with the history plus the verdicts of the listings created
    on earlier days (all of them in the fully labelled arm, else the reviewed and audited ones), each
    counted point in time: the service's live merchant history, a day at a time. Checked against scoring
    the days one by one here, and against the snapshot alone (what the loop served before), which
    differs."""
    _, workdir = tiny_run
    deployed = Deployed.load(workdir / "seed3" / "initial" / "latest")
    bundle = deployed.bundle
    reviews, _ = generate(TINY.rows, seed=3, months=TINY.months)
    history, periods = split_periods(reviews, TINY)
    listings = periods[0]
    day = listings["created_at"].dt.floor("D").to_numpy()
    for every_verdict in (True, False):  # the fully labelled arm; the reviewed and audited listings only
        live = live_period(deployed, listings, history, np.random.default_rng(0), TINY, every_verdict=every_verdict)
        seen = np.ones(len(listings), dtype=bool) if every_verdict else live.labelled
        expected = np.zeros(len(listings))
        for value in np.unique(day):
            today = np.flatnonzero(day == value)
            earlier = listings.iloc[: today[0]][seen[: today[0]]]
            known = pd.concat([history, earlier], ignore_index=True)
            expected[today] = bundle.scores(listings.iloc[today], history=known)[0]
        np.testing.assert_allclose(live.risk, expected, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(live.codes, decide(bundle, listings, live.risk))  # an untiered policy
        snapshot_risk, _ = bundle.scores(listings)
        assert not np.allclose(live.risk, snapshot_risk)  # the period's verdicts moved some merchants' features
    with pytest.raises(ValueError, match="in time order"):
        live_period(deployed, listings.iloc[::-1], history, np.random.default_rng(0), TINY)


def test_pooled_failures_count_seed_cycles_that_certified_something_with_an_exact_interval():
    def judged(certified: bool, held: bool) -> dict[str, Any]:
        return {"certified": {ALL: certified, "block_precision": False}, "all_certified_held": held}

    runs = [
        {"arms": {"weighted": [judged(True, True), judged(True, False), judged(False, True)]}},
        {"arms": {"weighted": [judged(True, True), judged(True, True), judged(True, True)]}},
        {"arms": {"full-labels": [judged(True, False)]}},  # another arm's seed-cycles do not count
    ]
    pooled = pooled_failures(runs, "weighted", "all_certified_held")
    assert (pooled["failed"], pooled["seed_cycles"]) == (1, 5)  # the uncertified seed-cycle is left out
    assert pooled["rate"] == pytest.approx(0.2)
    # Clopper-Pearson for 1 of 5: the 2.5% and 97.5% Beta quantiles
    assert pooled["low"] == pytest.approx(0.005051, abs=1e-6) and pooled["high"] == pytest.approx(0.716417, abs=1e-6)
    assert (pooled["seeds_failed"], pooled["seeds"]) == (1, 2)
    # resampling seeds: the two seeds fail 1/2 and 0/3 of their cycles; every resample's rate is 0, 1/5 or 1/2
    assert pooled["seed_low"] == 0.0 and pooled["seed_high"] == 0.5
    none_failed = pooled_failures(runs[1:2], "weighted", "all_certified_held")
    assert none_failed["low"] == 0.0 and none_failed["high"] == pytest.approx(1 - 0.025 ** (1 / 3))
    assert none_failed["seed_low"] == none_failed["seed_high"] == 0.0
    all_failed = pooled_failures(runs[2:], "full-labels", "all_certified_held")
    assert all_failed["rate"] == 1.0 and all_failed["high"] == 1.0 and all_failed["low"] == pytest.approx(0.025)
    nothing = pooled_failures([{"arms": {"weighted": [judged(False, True)]}}], "weighted", "all_certified_held")
    assert nothing["seed_cycles"] == 0 and nothing["rate"] is None and (nothing["low"], nothing["high"]) == (0.0, 1.0)


def test_pooled_coverage_counts_every_seed_cycle_with_an_interval_and_a_realized_figure():
    def judged(recall: bool | None, miss_rate: bool | None = None) -> dict[str, Any]:
        checks = {"recall": {"covered": recall}}
        if miss_rate is not None:
            checks["miss_rate"] = {"covered": miss_rate}
        return {"production_estimates": checks}

    runs = [
        {"arms": {"weighted": [judged(True, True), judged(False), judged(None)]}},
        {"arms": {"weighted": [judged(True, False)]}},
    ]
    pooled = pooled_coverage(runs, "weighted")
    assert pooled["recall"] == {"covered": 2, "seed_cycles": 3}  # the one without an interval is left out
    assert pooled["miss_rate"] == {"covered": 1, "seed_cycles": 2}  # absent where nothing was auto-passed


def test_an_exact_95_percent_certificate_meets_the_20_seed_target_in_4_cycles_29_percent_of_the_time():
    # at most 1 of 20 seeds may fail a cycle: P = 0.95^20 + 20 * 0.05 * 0.95^19 per cycle, independently
    per_cycle = 0.95**20 + 20 * 0.05 * 0.95**19
    assert exact_certificate_meets_target(20, 4) == pytest.approx(per_cycle**4)
    assert exact_certificate_meets_target(20, 4) == pytest.approx(0.2931, abs=1e-4)
    assert exact_certificate_meets_target(20, 1, fail_rate=0.0) == 1.0


# --- the promotion gate between retrain and serving -----------------------------------------------------------


def _logged(n: int) -> pd.DataFrame:
    created = pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC")
    return pd.DataFrame(
        {"listing_id": [f"L{i}" for i in range(n)], "created_at": created, "label": [i % 2 for i in range(n)]}
    ).assign(**{INCLUSION_PROB: 0.5})


@pytest.mark.parametrize("refusals", [[], ["workload: the challenger auto-decides less"]])
def test_a_retrain_serves_only_when_the_gate_passes_it_trained_without_the_gates_rows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, refusals: list[str]
):
    """As `triage retrain` + `triage promote`: the newest 30% of the logged verdicts are the gate's and never
    trained on; a refused challenger leaves the bundle in force deciding."""
    import bench.loop as loop

    champion = _single_target(0.9, True)
    challenger = _single_target(0.9, True)
    challenger.path = tmp_path / "challenger"
    trained_on: list[pd.DataFrame] = []
    gated_on: list[pd.DataFrame] = []
    outcomes_of: list[pd.DataFrame | None] = []

    ends: list[Any] = []

    def fake_retrain(
        rows: pd.DataFrame,
        settings: LoopSettings,
        seed: int,
        out: Path,
        outcomes: pd.DataFrame | None = None,
        labelled_until: str | None = None,
    ) -> Path:
        trained_on.append(rows)
        outcomes_of.append(outcomes)
        ends.append(labelled_until)
        return challenger.path

    def fake_gate(new: Path, old: Path, labels: pd.DataFrame, history: pd.DataFrame) -> Any:
        assert (new, old) == (challenger.path, champion.path)
        gated_on.append(labels)
        return types.SimpleNamespace(refusals=refusals, champion=types.SimpleNamespace(lapsed=["all"], failing=[]))

    monkeypatch.setattr(loop, "retrain", fake_retrain)
    monkeypatch.setattr(loop, "run_gate", fake_gate)
    monkeypatch.setattr(loop.Deployed, "load", classmethod(lambda cls, path: challenger))
    history = _logged(20).assign(listing_id=lambda f: "H" + f["listing_id"], **{INCLUSION_PROB: 1.0})
    history["created_at"] -= pd.Timedelta(days=365)
    logged = _logged(100)

    serving, outcome = gated_retrain(history, logged, champion, TINY, 0, tmp_path)

    assert serving is (champion if refusals else challenger)
    assert outcome["promoted"] == (not refusals) and outcome["refusals"] == refusals
    held_out = set(gated_on[0]["listing_id"])
    assert held_out == {f"L{i}" for i in range(70, 100)}  # the newest 30% by creation time
    trained = set(trained_on[0]["listing_id"])
    assert not trained & held_out and trained == set(history["listing_id"]) | {f"L{i}" for i in range(70)}
    assert outcome["trained_on"] == 90 and outcome["gate_rows"] == 30
    assert outcome["champion_lapsed"] == ["all"]  # what the gate's re-test of the champion found
    assert outcome["champion_failing"] == []
    assert outcomes_of[0] is not None and set(outcomes_of[0]["listing_id"]) == held_out  # merchant history only
    assert pd.Timestamp(ends[0]) == history["created_at"].max()  # the fully labelled rows end with the history

    ungated, outcome = gated_retrain(history, logged, champion, replace(TINY, gate=False), 0, tmp_path)
    assert ungated is challenger and outcome["promoted"] and len(trained_on[1]) == 120  # every verdict, no gate
    assert len(gated_on) == 1


def test_settings_refuse_unknown_arms_and_audit_rates_outside_0_1():
    with pytest.raises(ValueError, match="--arms"):
        replace(TINY, arms=("weighted", "half")).validate()
    for rate in (0.0, 1.5):
        with pytest.raises(ValueError, match="--audit-floor"):
            replace(TINY, audit_floor=rate).validate()
    assert replace(TINY, audit_floor=0.05, near_rate=0.2).validate().audit_floor == 0.05
    with pytest.raises(ValueError, match="--holdout"):
        replace(TINY, holdout=0.9).validate()


def _meta() -> dict[str, Any]:
    return {"command": "test", "machine": "test", "seconds": 0.0, "finished_at": "now"}
