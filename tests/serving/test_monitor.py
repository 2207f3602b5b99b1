"""Production monitoring from the decision log: the store's window read, `GET /v1/monitor` (200, 4xx naming
the parameter, scopes), drift against the bundle's reference (and a bundle without one), the gauges and
the threshold log, and `triage monitor` (table and --json)."""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from bundle.manifest import write_manifest
from decision.estimates import production_estimates
from serving.monitor import MonitorError, MonitorRequest, ThresholdLog, report
from serving.settings import get_settings
from serving.store import Store, create_store
from tests.serving.conftest import make_decision
from triage.cli import app as cli_app

NOW = datetime.now(UTC).replace(microsecond=0)


def _log_window(store: Store, seed: int = 0, n: int = 300, when: datetime | None = None) -> dict[str, np.ndarray]:
    """n decisions in the hour before `when`, logged with their inclusion probabilities, and verdicts on
    every review but a few (pending) and on the drawn audits; returns the arrays the estimates should see."""
    rng = np.random.default_rng(seed)
    when = when or NOW
    decisions = rng.choice(["auto_pass", "human_review", "auto_block"], n, p=[0.6, 0.35, 0.05])
    pi = np.where(decisions == "human_review", 1.0, np.where(decisions == "auto_pass", 0.2, 0.5))
    audited = (decisions != "human_review") & (rng.random(n) < pi)
    truth = rng.random(n) < np.where(decisions == "auto_pass", 0.05, np.where(decisions == "auto_block", 0.9, 0.4))
    records = [
        make_decision(
            decision=str(decision),
            automated=decision != "human_review",
            qa_sample=bool(audited[i]),
            inclusion_prob=float(pi[i]),
            decided_at=when - timedelta(minutes=float(rng.uniform(1, 59))),
            risk=float(rng.beta(0.5, 4)),
        )
        for i, decision in enumerate(decisions)
    ]
    store.record_decisions(records)
    label = np.full(n, np.nan)
    for i, record in enumerate(records):
        if (record.decision == "human_review" and i % 10 != 0) or (audited[i] and i % 7 != 0):
            store.record_review(record.decision_id, "ann", "reject" if truth[i] else "approve", "counterfeit")
            label[i] = float(truth[i])
    codes = np.array([{"auto_pass": 0, "human_review": 1, "auto_block": 2}[d] for d in decisions], dtype=np.int8)
    return {"codes": codes, "pi": pi, "label": label}


def test_window_estimates_equal_the_estimator_on_the_logged_arrays(store: Store) -> None:
    logged = _log_window(store)
    # a decision logged before inclusion probabilities were: a review counts (pi 1), an automated one cannot
    store.record_decisions(
        [
            make_decision(decision="auto_pass", automated=True, decided_at=NOW - timedelta(minutes=5)),
            make_decision(decision="human_review", decided_at=NOW - timedelta(minutes=5)),
            make_decision(decision="auto_pass", automated=True, inclusion_prob=0.2, decided_at=NOW - timedelta(days=3)),
        ]
    )
    result = report(store, None, None, MonitorRequest(since=NOW - timedelta(hours=2), until=NOW))
    codes = np.r_[logged["codes"], 1]
    expected = production_estimates(codes, np.r_[logged["pi"], 1.0], np.r_[logged["label"], np.nan])
    for key, estimate in expected.items():
        assert result["estimates"][key] == pytest.approx(estimate.to_dict()), key
    labels = result["labels"]
    assert labels["decisions"] == 302  # the one three days old is outside the window
    assert labels["skipped_automated"] == 1 and labels["in_estimates"] == 301
    assert labels["pending_review"] == int(((logged["codes"] == 1) & np.isnan(logged["label"])).sum()) + 1
    assert labels["pending_audit"] > 0
    assert result["expected"] is None and result["drift"]["reference"] == "no bundle loaded"


def test_limit_reads_the_most_recent_and_says_so(store: Store) -> None:
    _log_window(store, n=50)
    result = report(store, None, None, MonitorRequest(since=NOW - timedelta(hours=2), until=NOW, limit=20))
    assert result["truncated"] is True and result["labels"]["decisions"] == 20


@pytest.mark.parametrize(
    ("options", "field"),
    [
        ({"since": NOW, "until": NOW - timedelta(hours=1)}, "since"),
        ({"group_by": ("week",)}, "group_by"),
        ({"confidence": 1.0}, "confidence"),
        ({"group_by": ("segment",)}, "segment"),  # no bundle to name a default segment
    ],
)
def test_bad_requests_name_the_field(store: Store, options: dict[str, Any], field: str) -> None:
    values: dict[str, Any] = {"since": NOW - timedelta(hours=1), "until": NOW, **options}
    with pytest.raises(MonitorError) as caught:
        report(store, None, None, MonitorRequest(**values))
    assert caught.value.field == field


def test_api_reports_estimates_groups_expectation_and_drift(serve) -> None:
    with serve(monitor_refresh_seconds=0) as api:
        logged = _log_window(api.store, n=400)
        params = {"hours": 2, "group_by": ["day", "segment"], "segment": "category"}
        response = api.client.get("/v1/monitor", params=params, headers=api.headers("read"))
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["labels"]["decisions"] == 400
        expected = production_estimates(logged["codes"], logged["pi"], logged["label"])
        assert body["estimates"]["recall"] == pytest.approx(expected["recall"].to_dict())
        assert list(body["groups"]["segment"]["values"]) == ["health"]  # make_decision's category
        assert set(body["groups"]["day"]) <= {NOW.date().isoformat(), (NOW - timedelta(hours=1)).date().isoformat()}
        simulated = body["expected"]
        assert simulated is not None and math.isclose(sum(simulated["routing"].values()), 1.0)
        drift = body["drift"]
        assert drift["reference"] == "test split"
        assert {"price", "category", "market"} <= set(drift["features"])
        # every logged listing is the same health-category listing: far from the test split's mix
        assert drift["features"]["category"]["status"] == "alarm"
        # make_decision's decisions are another model's: routing reads the bundle in force's own only
        assert drift["routing"]["n"] == 0 and drift["routing"]["other_models_left_out"] == 400
        assert drift["status"] == "alarm" == body["status"]


def test_routing_is_judged_on_what_the_thresholds_decided_not_on_rules_the_simulator_cannot_replay(serve) -> None:
    """A re-post rule (a product-match rule: the simulator's reference set has no matches to replay it on)
    turned the model's auto-passes into reviews, and the routing check raised an alarm on the bundle's own,
    untouched policy. Routing now compares what the thresholds alone decided (`model_decision`) with what
    the simulator expects of the thresholds alone, on the bundle in force's own decisions only (right after
    a promotion, the previous model's mix read as routing drift)."""
    with serve(monitor_refresh_seconds=0) as api:
        engine = api.app.state.engine
        window = MonitorRequest(since=NOW - timedelta(hours=2), until=NOW)
        shares = report(api.store, engine.bundle, engine.policy, window)["expected"]["thresholds_routing"]
        counts = {d: round(1000 * share) for d, share in shares.items()}
        model_decisions = [d for d, n in counts.items() for _ in range(n)]
        assert counts["auto_pass"] > 100
        api.store.record_decisions(
            [
                make_decision(  # every auto-pass of the thresholds sent to review by the re-post rule
                    decision="human_review" if d == "auto_pass" else d,
                    model_decision=d,
                    rules_matched=["repost_of_rejected"] if d == "auto_pass" else [],
                    automated=d == "auto_block",
                    inclusion_prob=1.0 if d != "auto_block" else 0.5,
                    decided_at=NOW - timedelta(minutes=30),
                    model_version=engine.bundle.version,
                )
                for d in model_decisions
            ]
            + [  # the model before a promotion, with another policy: everything passed
                make_decision(
                    decision="auto_pass",
                    model_decision="auto_pass",
                    automated=True,
                    inclusion_prob=0.1,
                    decided_at=NOW - timedelta(minutes=50),
                    model_version="the-model-before",
                )
                for _ in range(500)
            ]  # fmt: skip
        )
        drift = report(api.store, engine.bundle, engine.policy, window)["drift"]

    assert drift["routing"]["status"] == "ok" and drift["routing"]["psi"] < 0.01
    assert drift["routing"]["n"] == len(model_decisions) and drift["routing"]["basis"].startswith("thresholds alone")
    assert drift["routing"]["other_models_left_out"] == 500 and drift["routing"]["model"] == engine.bundle.version


def test_risk_drift_reads_only_the_bundle_in_forces_own_decisions(serve) -> None:
    """After a promotion the window holds the old model's risks too: read against the new bundle's
    reference they showed as drift (PSI 3.1 on a real export's window)."""
    with serve(monitor_refresh_seconds=0) as api:
        version = api.app.state.engine.model_version
        rng = np.random.default_rng(3)
        old = [make_decision(model_version="an-older-model", risk=float(r)) for r in rng.uniform(0.9, 1, 300)]
        own = [make_decision(model_version=version, risk=float(r)) for r in rng.beta(0.5, 4, 250)]
        api.store.record_decisions(old + own)
        body = api.client.get("/v1/monitor", params={"hours": 2}, headers=api.headers("read")).json()

    risk = body["drift"]["risk"]
    assert risk["model"] == version and risk["n"] == 250 and risk["other_models_left_out"] == 300


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"hours": 0}, "hours"),
        ({"group_by": "week"}, "group_by.0"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2025-06-02T00:00:00Z", "until": "2025-06-01T00:00:00Z"}, "since"),
        ({"group_by": "segment", "segment": "colour"}, "segment"),
        ({"group_by": "segment", "segment": "title"}, "segment"),  # a text: one group per listing (1.3 MB)
        ({"group_by": "segment", "segment": "listing_id"}, "segment"),
        ({"confidence": 1.5}, "confidence"),
        ({"bogus": 1}, "bogus"),
    ],
)
def test_api_bad_parameters_are_422_naming_them(serve, params: dict[str, Any], field: str) -> None:
    with serve(monitor_refresh_seconds=0) as api:
        response = api.client.get("/v1/monitor", params=params, headers=api.headers("read"))
    assert response.status_code == 422, response.text
    assert field in [d["field"] for d in response.json()["detail"]], response.json()


def test_api_needs_a_read_key(serve) -> None:
    with serve(monitor_refresh_seconds=0) as api:
        assert api.client.get("/v1/monitor").status_code == 401
        assert api.client.get("/v1/monitor", headers=api.headers("score")).status_code == 403


def test_a_bundle_without_reference_reports_no_reference(serve, own_bundle: Path) -> None:
    (own_bundle / "reference.json").unlink()
    write_manifest(own_bundle)
    with serve(bundle=str(own_bundle), monitor_refresh_seconds=0) as api:
        _log_window(api.store, n=50)
        body = api.client.get("/v1/monitor", headers=api.headers("read")).json()
    assert body["drift"]["reference"] == "no reference"
    assert "risk" not in body["drift"] and "routing" in body["drift"]
    assert body["estimates"]["queue_share"]["estimate"] is not None


def test_gauges_are_refreshed_in_the_background(serve) -> None:
    with serve(monitor_refresh_seconds=0.2) as api:
        _log_window(api.store, n=300)
        deadline = time.monotonic() + 20
        text = ""
        while time.monotonic() < deadline:
            text = api.client.get("/metrics").text
            # a refresh may run while the window is still being logged: wait for one that saw all of it
            if 'triage_monitor_status{check="overall"} 2.0' in text:
                break
            time.sleep(0.1)
    assert 'triage_production_estimate{bound="estimate",quantity="recall"}' in text
    assert 'triage_drift_psi{variable="risk"}' in text
    assert 'triage_monitor_status{check="overall"} 2.0' in text  # the category alarm above


def test_drift_gauges_are_nan_until_there_are_decisions_enough_to_judge() -> None:
    """An alert on `triage_drift_psi > 0.25` must not fire on a service that has decided nothing yet (or
    too little to judge): the gauge is NaN until the check's status is judged."""
    from serving.metrics import MONITOR_QUANTITIES, Metrics

    metrics = Metrics()
    report = {
        "estimates": {q: {"estimate": None, "low": None, "high": None} for q in MONITOR_QUANTITIES},
        "drift": {
            "status": "ok",
            "risk": {"psi": None, "status": "insufficient_data", "n": 0},
            "routing": {"psi": 3.2, "status": "insufficient_data", "n": 12},
            "features": {"price": {"psi": 0.4, "status": "alarm", "n": 500}},
        },
    }
    metrics.observe_monitor(report, {})
    text = metrics.render().decode()
    assert 'triage_drift_psi{variable="risk"} NaN' in text
    assert 'triage_drift_psi{variable="routing"} NaN' in text
    assert 'triage_drift_psi{variable="price"} 0.4' in text


def test_threshold_crossings_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    drift = {
        "risk": {"psi": 0.3, "status": "alarm", "n": 500},
        "recall": {"status": "ok", "estimate": 0.99, "low": 0.98, "high": 1.0, "target": 0.95},
        "features": {"price": {"psi": 0.12, "status": "warn", "n": 500}},
        "status": "alarm",
    }
    thresholds = ThresholdLog()
    with caplog.at_level(logging.WARNING, logger="serving.monitor"):
        assert thresholds.observe(drift) == ["risk", "feature:price"]
        assert thresholds.observe(drift) == []  # still in alarm: said once
        drift["recall"] = {"status": "alarm", "estimate": 0.9, "low": 0.86, "high": 0.93, "target": 0.95}
        assert thresholds.observe(drift) == ["recall"]
    messages = [r.getMessage() for r in caplog.records]
    assert any("risk is alarm (PSI 0.300" in m for m in messages)
    assert any("recall is alarm (recall 0.9 [0.86, 0.93] against target 0.95)" in m for m in messages)


@pytest.fixture
def cli_env(tmp_path: Path, bundle_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[], Store]]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("TRIAGE_DATABASE_URL", url)
    monkeypatch.setenv("TRIAGE_BUNDLE", str(bundle_dir))
    get_settings.cache_clear()

    def open_store() -> Store:
        store = create_store(url, group_commit=False)
        store.init_schema()
        return store

    open_store().close()  # the log the service made when it started: the CLI reads, it does not create one
    yield open_store
    get_settings.cache_clear()


def test_cli_table_and_json(cli_env: Callable[[], Store]) -> None:
    with cli_env() as store:
        logged = _log_window(store, n=300)
    runner = CliRunner()
    as_json = runner.invoke(cli_app, ["monitor", "--hours", "2", "--json", "--group-by", "day"])
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    expected = production_estimates(logged["codes"], logged["pi"], logged["label"])
    assert body["estimates"]["miss_rate"] == pytest.approx(expected["miss_rate"].to_dict())
    table = runner.invoke(cli_app, ["monitor", "--hours", "2", "--group-by", "segment", "--segment", "category"])
    assert table.exit_code == 0, table.output
    assert "per category" in table.stdout and "  health" in table.stdout  # make_decision's category
    recall = expected["recall"]
    assert f"{100 * recall.estimate:.2f}%" in table.stdout
    assert "recall" in table.stdout and "drift: ALARM (reference: test split)" in table.stdout
    assert "feature category" in table.stdout


def test_cli_says_why_recall_has_no_estimate_while_auto_blocks_await_their_audit(
    cli_env: Callable[[], Store],
) -> None:
    decisions = ["auto_pass", "human_review", "auto_block", "auto_block"]
    with cli_env() as store:
        records = [
            make_decision(decision=d, automated=d != "human_review", qa_sample=d != "human_review", inclusion_prob=1.0)
            for d in decisions
        ]
        store.record_decisions(records)
        for record in records[:2]:  # the pass's audit and the review are done; the blocks' audits are not
            store.record_review(record.decision_id, "ann", "reject", "counterfeit")
    runner = CliRunner()
    body = json.loads(runner.invoke(cli_app, ["monitor", "--hours", "2", "--json"]).stdout)
    why = "none of the 2 auto-blocked decisions has a verdict yet (none was drawn for audit, or its audits are pending)"
    assert body["estimates"]["recall"] == {"estimate": None, "low": None, "high": None, "n_labelled": 2, "why": why}
    assert body["estimates"]["miss_rate"]["why"] is None
    table = runner.invoke(cli_app, ["monitor", "--hours", "2"])
    assert table.exit_code == 0, table.output
    assert f"  recall: no estimate, {why}" in table.stdout


def test_cli_bad_option_names_it(cli_env: Callable[[], Store]) -> None:
    result = CliRunner().invoke(cli_app, ["monitor", "--since", "2025-06-02", "--until", "2025-06-01"])
    assert result.exit_code == 2
    assert "--since" in result.output


def test_cli_without_a_bundle_still_estimates(cli_env: Callable[[], Store], tmp_path: Path) -> None:
    broken = tmp_path / "no-bundle"
    shutil.rmtree(broken, ignore_errors=True)
    result = CliRunner().invoke(cli_app, ["monitor", "--bundle", str(broken), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["drift"]["reference"] == "no bundle loaded"
    table = CliRunner().invoke(cli_app, ["monitor", "--bundle", str(broken)])
    assert "(reference: no bundle loaded; risk and features not checked)" in table.stdout


def test_per_tier_estimates_count_only_that_tiers_violations(store: Store, tiered_bundle_dir: Path) -> None:
    from bundle.load import Bundle

    bundle = Bundle.load(tiered_bundle_dir)
    tier_of = bundle.config.tier_of_reason()
    severe = tier_of["counterfeit"]  # every rejection `_log_window` records is a counterfeit
    logged = _log_window(store, n=200)
    request = MonitorRequest(since=NOW - timedelta(hours=2), until=NOW, group_by=("tier",))
    result = report(store, bundle, bundle.policy, request)
    tiers = result["groups"]["tier"]
    assert list(tiers) == bundle.config.tier_names
    assert tiers[severe]["violation_rate"] == pytest.approx(result["estimates"]["violation_rate"])
    for other in set(tiers) - {severe}:
        assert tiers[other]["violation_rate"]["estimate"] == 0.0  # none of its violations was seen
    severe_only = production_estimates(logged["codes"], logged["pi"], logged["label"])
    assert tiers[severe]["recall"] == pytest.approx(severe_only["recall"].to_dict())
    targets = bundle.policy.targets.get("recall")
    assert isinstance(targets, dict) and set(result["drift"]["tier_recall"]) == set(targets)
    assert "recall" not in result["drift"]  # no overall target: not a check reading "no_reference" (gauge -1)
    ungrouped = report(store, bundle, bundle.policy, MonitorRequest(since=request.since, until=request.until))
    assert "tier" not in ungrouped["groups"]
    assert ungrouped["drift"]["tier_recall"] == result["drift"]["tier_recall"]  # checked whatever the grouping
    assert ungrouped["drift"]["tier_recall"][severe]["estimate"] == tiers[severe]["recall"]["estimate"]


def test_gauge_refreshes_run_under_the_admin_lock_so_no_reload_swaps_a_bundle_they_hold() -> None:
    """A refresh holds the serving bundle; under the admin lock a reload (which takes the same lock, swaps
    the engine and re-freezes the garbage collector) waits for it, and a refresh waits for a reload."""
    import asyncio

    from serving.monitor import GaugeRefresher

    async def scenario() -> tuple[list[bool], int]:
        lock = asyncio.Lock()
        seen: list[bool] = []
        refresher = GaugeRefresher(None, lambda: (None, None), None, 0.01, timedelta(hours=1), lock=lock)  # type: ignore[arg-type]

        def refresh() -> dict[str, Any]:
            seen.append(lock.locked())
            return {}

        refresher.refresh = refresh  # type: ignore[method-assign]
        async with lock:  # a reload in progress: no refresh may start
            task = asyncio.create_task(refresher.run())
            await asyncio.sleep(0.1)
            during_reload = len(seen)
        await asyncio.sleep(0.1)
        task.cancel()
        return seen, during_reload

    seen, during_reload = asyncio.run(scenario())
    assert during_reload == 0
    assert seen and all(seen)
