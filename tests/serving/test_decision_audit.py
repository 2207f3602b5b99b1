"""Corrections and the decision audit over HTTP and on the command line: who may amend which verdict, and
what an auditor reads about a decision (the why, rules and versions in force, verdicts in order)."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from tests.serving.conftest import Api, listing_json
from triage.cli import app as cli

Serve = Callable[..., AbstractContextManager[Api]]
MARKER = {"action": "block", "kind": "term", "terms": ["audit-trail-marker"], "fields": ["title"]}


def reviewed(api: Api, i: int, reviewer: dict[str, str], verdict: str = "approve") -> str:
    """A listing sent to review (regulated category), claimed and judged by `reviewer`."""
    scored = api.score(listing_json(i, category="health", created_at="2025-10-01T00:00:00Z")).json()
    assert scored["decision"] == "human_review", scored
    claimed = api.client.get("/v1/queue/next", headers=reviewer).json()["items"]
    assert [item["decision_id"] for item in claimed] == [scored["decision_id"]]
    body: dict[str, Any] = {"verdict": verdict} | ({"violation_reason": "counterfeit"} if verdict == "reject" else {})
    review = api.client.post(f"/v1/reviews/{scored['decision_id']}", json=body, headers=reviewer)
    assert review.status_code == 200, review.text
    return str(scored["decision_id"])


def correct(api: Api, decision_id: str, headers: dict[str, str], **body: Any) -> Any:
    payload = {"verdict": "reject", "violation_reason": "counterfeit", "reason": "a second look", **body}
    return api.client.post(f"/v1/reviews/{decision_id}/corrections", json=payload, headers=headers)


def corrections_counted(api: Api) -> dict[str, float]:
    text = api.client.get("/metrics").text
    return {
        line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("triage_verdict_corrections_total{")
    }


def test_a_reviewer_amends_only_their_own_verdict_a_supervisor_anyones(serve: Serve) -> None:
    with serve() as api:
        ana, ben = api.key("ana", "review"), api.key("ben", "review")
        lead = api.key("lead", "supervise")
        decision_id = reviewed(api, 1, ana)
        by_other = correct(api, decision_id, ben)
        own = correct(api, decision_id, ana)
        by_lead = correct(api, decision_id, lead, verdict="approve", violation_reason=None, note="photo was fine")
        audit = api.client.get(f"/v1/decisions/{decision_id}", headers=api.headers("audit")).json()
        counted = corrections_counted(api)

    assert by_other.status_code == 403 and "reviewed by 'ana'" in by_other.json()["detail"]
    assert "supervise" in by_other.json()["detail"]
    assert own.status_code == 201, own.text
    assert own.json()["previous_verdict"] == "approve" and own.json()["statement_of_reasons"]["category"]
    assert by_lead.status_code == 201 and by_lead.json()["corrected_by"] == "lead"
    assert by_lead.json()["statement_of_reasons"]["restriction"] == "restriction_lifted"
    assert [(v["kind"], v["by"], v["verdict"]) for v in audit["verdicts"]] == [
        ("review", "ana", "approve"),
        ("correction", "ana", "reject"),
        ("correction", "lead", "approve"),
    ]
    assert audit["verdict_in_force"]["by"] == "lead" and audit["verdicts"][2]["note"] == "photo was fine"
    assert [s["source"] for s in audit["statements_of_reasons"]] == ["correction", "correction"]
    assert "lead amended the verdict to approve" in audit["why"]
    assert counted == {'by="own",verdict="reject"': 1.0, 'by="supervisor",verdict="approve"': 1.0}


def test_corrections_refuse_unknown_unreviewed_and_incomplete_requests(serve: Serve) -> None:
    with serve() as api:
        ana = api.key("ana", "review")
        decision_id = reviewed(api, 3, ana)
        waiting = api.score(listing_json(2, category="health")).json()["decision_id"]
        unknown = correct(api, "no-such-decision", api.headers("supervise"))
        unreviewed = correct(api, waiting, api.headers("supervise"))
        no_reason = correct(api, decision_id, ana, violation_reason=None)
        unknown_reason = correct(api, decision_id, ana, violation_reason="looked odd")
        no_why = api.client.post(
            f"/v1/reviews/{decision_id}/corrections", json={"verdict": "approve", "reason": " "}, headers=ana
        )
        unchanged = correct(api, decision_id, ana, verdict="approve", violation_reason=None)
        reasoned_approval = correct(api, decision_id, ana, verdict="approve")
        score_key = correct(api, decision_id, api.headers("score"))

    assert unknown.status_code == 404
    assert unreviewed.status_code == 409 and "no verdict yet" in unreviewed.json()["detail"]
    assert no_reason.status_code == 422 and no_reason.json()["detail"][0]["field"] == "violation_reason"
    assert unknown_reason.status_code == 422 and "not a violation reason" in unknown_reason.text
    assert no_why.status_code == 422 and no_why.json()["detail"][0]["field"] == "reason"
    assert reasoned_approval.status_code == 422
    assert reasoned_approval.json()["detail"][0]["field"] == "violation_reason"
    assert unchanged.status_code == 409 and "nothing to amend" in unchanged.json()["detail"]
    assert score_key.status_code == 403


def test_an_auditor_reads_why_a_rule_blocked_a_listing_and_its_history(serve: Serve, tmp_path: Path) -> None:
    database = tmp_path / "audit.db"
    with serve(database_url=f"sqlite:///{database}") as api:
        put = api.client.put(
            "/v1/policy/rules/audit_marker",
            json={"rule": MARKER, "reason": "takedown campaign", "force": True},
            headers=api.headers("admin"),
        )
        assert put.status_code == 200, put.text
        policy_version = put.json()["policy"]["version"]
        first = api.score(listing_json(9, title="Wallet")).json()
        blocked = api.score(listing_json(9, title="Wallet audit-trail-marker")).json()
        audit = api.client.get(f"/v1/decisions/{blocked['decision_id']}", headers=api.headers("audit"))
        history = api.client.get("/v1/listings/L-9/history", headers=api.headers("audit"))
        denied = api.client.get(f"/v1/decisions/{blocked['decision_id']}", headers=api.headers("score"))
        unknown = api.client.get("/v1/decisions/nothing", headers=api.headers("audit"))
        never = api.client.get("/v1/listings/never-scored/history", headers=api.headers("audit"))
        slashed = api.score(listing_json(10, listing_id="L 1/ü")).json()  # an id with a slash, encoded
        slashed_history = api.client.get("/v1/listings/L%201%2F%C3%BC/history", headers=api.headers("audit"))

    assert slashed_history.status_code == 200, slashed_history.text
    assert [d["decision_id"] for d in slashed_history.json()["decisions"]] == [slashed["decision_id"]]
    assert blocked["decision"] == "auto_block"
    assert audit.status_code == 200, audit.text
    document = audit.json()
    why = document["why"]
    assert why.startswith("Blocked by rule audit_marker (block rule version 1, enforced since policy version")
    assert blocked["model_version"] in why and policy_version in why
    assert document["rules_matched"] == [
        {"name": "audit_marker", "action": "block", "mode": "enforce", "version": 1, "in_force_since": policy_version}
    ]
    policy = document["policy_in_force"]
    assert (policy["source"], policy["put_in_force_by"]) == ("api", "admin-key")
    assert policy["change_reason"].startswith("takedown campaign")
    assert document["statements_of_reasons"][0]["source"] == "decision"
    assert [e["event"] for e in document["timeline"]][:2] == ["received", "decided"]
    assert "started on its configured bundle" in document["model_in_force"]["note"]
    assert history.status_code == 200
    assert [d["decision_id"] for d in history.json()["decisions"]] == [first["decision_id"], blocked["decision_id"]]
    assert denied.status_code == 403 and unknown.status_code == 404 and never.status_code == 404

    runner = CliRunner()
    shown = runner.invoke(cli, ["decisions", "show", blocked["decision_id"], "--db", f"sqlite:///{database}"])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[1] == why and lines[3] == "timeline:"
    listed = runner.invoke(cli, ["decisions", "show", "--listing", "L-9", "--db", f"sqlite:///{database}", "--json"])
    assert [d["decision"] for d in json.loads(listed.output)["decisions"]] == [first["decision"], "auto_block"]
    missing = runner.invoke(cli, ["decisions", "show", "nothing", "--db", f"sqlite:///{database}"])
    assert missing.exit_code == 1 and "no decision nothing in the decision log" in missing.output


def test_a_rule_blocks_statement_of_reasons_does_not_claim_the_model_reached_the_threshold() -> None:
    """A rule auto-block with risk 0.146 read 'model risk 0.146 >= block threshold 1.000': a false fact in
    a statement of reasons."""
    from serving.engine import statement_of_reasons
    from tests.serving.conftest import make_decision

    by_rule = make_decision(decision="auto_block", automated=True, risk=0.146, t_block=1.0, rules_matched=["blockme"])
    by_model = make_decision(decision="auto_block", automated=True, risk=0.995, t_block=0.98, rules_matched=[])
    assert statement_of_reasons(by_rule)["facts_and_circumstances"].startswith(
        "rules matched: blockme; model risk 0.146, below the block threshold 1.000; "
    )
    assert "model risk 0.995 >= block threshold 0.980; " in statement_of_reasons(by_model)["facts_and_circumstances"]


def test_the_statement_category_follows_what_a_rule_is_about_not_that_one_matched() -> None:
    """Any matched rule used to make the category "unsafe and prohibited products": a re-post of a
    rejected listing, or a rule a team wrote, says nothing of the kind of violation, so the model's
    strongest signal (or the reviewer's violation reason) decides, as without a rule."""
    from serving.engine import review_statement_of_reasons, statement_of_reasons
    from tests.serving.conftest import make_decision

    signal = [{"feature": "luxury_brand_hits", "value": 1.0, "contribution": 2.0}]

    def category(rules: list[str], reasons: list[dict[str, object]] | None = None) -> str:
        record = make_decision(decision="auto_block", automated=True, rules_matched=rules, reasons=reasons or [])
        return statement_of_reasons(record)["category"]

    assert category(["prohibited_term"]) == "unsafe_and_prohibited_products"
    assert category(["repost_of_rejected", "regulated_category"]) == "unsafe_and_prohibited_products"
    assert category(["repost_of_rejected"]) == "scope_of_platform_service"
    assert category(["repost_of_rejected"], signal) == "intellectual_property_infringements"
    assert category(["teams_own_rule"], signal) == "intellectual_property_infringements"
    reviewed = make_decision(decision="human_review", rules_matched=["repost_of_rejected"], reasons=[])
    assert review_statement_of_reasons(reviewed, "other")["category"] == "scope_of_platform_service"
    assert review_statement_of_reasons(reviewed, "counterfeit")["category"] == "intellectual_property_infringements"
