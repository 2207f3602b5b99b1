"""The shadow report: agreement, confusion, workload difference and each model's errors on verdicts;
`triage shadow-report` prints it from the service's store as a table or JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from serving.shadow import report_lines, shadow_report
from serving.store import create_store
from serving.store.shadow import ShadowDecision
from tests.serving.conftest import make_decision


def _pair(champion: str, shadow: str, verdict: str | None = None) -> dict[str, object]:
    return {
        "champion_decision": champion,
        "shadow_decision": shadow,
        "verdict": verdict,
        "champion_model": "v1",
        "shadow_model": "v2",
    }


def test_the_report_counts_agreement_workload_and_each_models_errors() -> None:
    pairs = [
        _pair("auto_pass", "auto_pass"),
        _pair("auto_pass", "human_review"),
        _pair("human_review", "auto_pass", "reject"),  # the shadow would have missed it
        _pair("human_review", "auto_block", "approve"),  # ... and wrongly blocked this one
        _pair("auto_block", "auto_block", "reject"),
    ]
    report = shadow_report(pairs)

    assert report["pairs"] == 5 and report["agreement"] == pytest.approx(2 / 5)
    assert report["confusion"]["human_review"] == {"auto_pass": 1, "human_review": 0, "auto_block": 1}
    assert report["champion"]["human_review"] == pytest.approx(0.4)
    assert report["shadow"]["human_review"] == pytest.approx(0.2)
    assert report["review_share_difference"] == pytest.approx(-0.2)
    assert report["labelled"] == 3
    assert report["errors"] == {
        "champion": {"misses": 0, "wrongful_blocks": 0, "estimated_misses": 0.0, "estimated_wrongful_blocks": 0.0},
        "shadow": {"misses": 1, "wrongful_blocks": 1, "estimated_misses": 1.0, "estimated_wrongful_blocks": 1.0},
    }
    assert "agreement 40.0%" in report_lines(report)[0]
    assert shadow_report([])["agreement"] is None and "no shadow decisions" in report_lines(shadow_report([]))[0]


def test_errors_are_estimated_over_every_pair_by_the_audit_inclusion_probabilities() -> None:
    """Every champion review gets a verdict, its auto-passes only when audited: counted as they come, the
    errors favoured the model that reviews more ("champion 1 misses, shadow 0" where the champion missed
    15). Each verdict counts 1 / pi pairs."""
    audited_miss = {**_pair("auto_pass", "human_review", "reject"), "inclusion_prob": 0.1}
    reviewed_miss = {**_pair("human_review", "auto_pass", "reject"), "inclusion_prob": 1.0}
    older = _pair("auto_pass", "auto_pass", "reject")  # logged before inclusion probabilities: counts once
    report = shadow_report([audited_miss, reviewed_miss, older, _pair("auto_pass", "auto_pass")])

    assert report["errors"]["champion"]["misses"] == 2 and report["errors"]["champion"]["estimated_misses"] == 11.0
    assert report["errors"]["shadow"]["misses"] == 2 and report["errors"]["shadow"]["estimated_misses"] == 2.0
    assert "champion 11.0 misses" in report_lines(report)[-1]


def test_the_estimated_errors_are_unbiased_over_audit_draws() -> None:
    """The Horvitz-Thompson count: averaged over many audit draws it equals the true number of misses."""
    import numpy as np

    rng = np.random.default_rng(0)
    truth = rng.random(2_000) < 0.05  # violations among the champion's auto-passes
    totals = []
    for _ in range(400):
        drawn = rng.random(truth.size) < 0.1
        pairs = [
            {**_pair("auto_pass", "human_review", "reject" if bad else "approve"), "inclusion_prob": 0.1}
            for bad in truth[drawn]
        ]
        totals.append(shadow_report(pairs)["errors"]["champion"]["estimated_misses"])
    assert abs(np.mean(totals) - truth.sum()) < 3 * np.std(totals) / np.sqrt(len(totals))


def test_pairs_where_the_champion_could_not_score_are_left_out_and_counted() -> None:
    """A champion timeout sends the listing to review without a model: comparing that with the shadow
    would count the outage as the champion's workload."""
    timed_out = {**_pair("human_review", "auto_pass"), "champion_fallback": "scoring_timeout"}
    report = shadow_report([_pair("auto_pass", "auto_pass"), timed_out, {**timed_out, "verdict": "reject"}])

    assert report["pairs"] == 1 and report["champion_fallbacks"] == 2
    assert report["agreement"] == 1.0 and report["champion"]["human_review"] == 0.0
    assert report["labelled"] == 0 and report["errors"]["shadow"]["misses"] == 0
    assert "2 more left out: the champion could not score them" in report_lines(report)[0]
    only = shadow_report([timed_out])
    assert only["pairs"] == 0 and report_lines(only) == [
        "no comparable shadow decisions (1 more left out: the champion could not score them and sent them to review)"
    ]


def test_triage_shadow_report_reads_the_services_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.settings import get_settings
    from triage.cli import app

    url = f"sqlite:///{tmp_path / 'service.db'}"
    store = create_store(url, group_commit=False)
    store.init_schema()
    decisions = [
        make_decision(decision="human_review"),
        make_decision(decision="auto_pass", automated=True),
        make_decision(decision="human_review", risk=None, fallback_reason="scoring_timeout"),
    ]
    store.record_decisions(decisions)
    store.record_review(decisions[0].decision_id, "r", "reject", "counterfeit")
    at = datetime(2025, 6, 1, tzinfo=UTC)
    store.record_shadow_decisions(
        [
            ShadowDecision(decisions[0].decision_id, at, "v2", "p", 0.01, "auto_pass"),
            ShadowDecision(decisions[1].decision_id, at, "v2", "p", 0.02, "auto_pass"),
            ShadowDecision(decisions[2].decision_id, at, "v2", "p", 0.03, "auto_pass"),
        ]
    )
    store.close()
    monkeypatch.setenv("TRIAGE_DATABASE_URL", url)
    get_settings.cache_clear()
    try:
        table = CliRunner().invoke(app, ["shadow-report"])
        as_json = CliRunner().invoke(app, ["shadow-report", "--json", "--model-version", "v2"])
    finally:
        get_settings.cache_clear()

    assert table.exit_code == 0, table.output
    assert "agreement 50.0%" in table.output and "shadow 1 misses" in table.output
    report = json.loads(as_json.output)
    assert report["pairs"] == 2 and report["errors"]["shadow"]["misses"] == 1
    assert report["champion_fallbacks"] == 1 and "1 more left out" in table.output
