"""Review quality over HTTP: the policy's quality plan, blind second reviews, gold items, reviewer stats,
teams on keys, and `triage reviewers stats`."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from serving.store import schema
from tests.serving.conftest import Api, listing_json
from tests.serving.test_api_policy import put_policy


def queued(api: Api, i: int) -> str:
    """A decision on the review lane (a regulated category always goes to a person)."""
    response = api.score(listing_json(i, category="health"))
    assert response.status_code == 200 and response.json()["decision"] == "human_review", response.text
    return str(response.json()["decision_id"])


def claim(api: Api, headers: dict[str, str]) -> list[dict[str, Any]]:
    response = api.client.get("/v1/queue/next", headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def gold_id_of(created: Any) -> str:
    return str(created.json()["gold_id"])


def verdict(api: Api, item_id: str, headers: dict[str, str], value: str = "approve") -> dict[str, Any]:
    body = {"verdict": value, "review_seconds": 20} | ({"violation_reason": "counterfeit"} if value == "reject" else {})
    response = api.client.post(f"/v1/reviews/{item_id}", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


VERDICT_KEYS = {
    "decision_id",
    "note",
    "reviewer",
    "verdict",
    "violation_reason",
    "review_seconds",
    "reviewed_at",
    "statement_of_reasons",
    "overturn",
}


def team_key(api: Api, name: str, team: str) -> dict[str, str]:
    body = {"name": name, "scopes": ["review"], "team": team}
    response = api.client.post("/v1/admin/keys", json=body, headers=api.headers("admin"))
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['token']}"}


def test_second_reviews_are_blind_and_measured_per_reviewer_and_team(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        alice = api.key("alice", "review")
        bob = team_key(api, "bob", "vendor-b")
        changed = put_policy(api, {"quality": {"second_review_rate": 1.0}})
        decision_id = queued(api, 1)
        (first,) = claim(api, alice)
        verdict(api, first["decision_id"], alice, "reject")

        assert claim(api, alice) == []  # never one's own second review
        (second,) = claim(api, bob)
        answer = verdict(api, decision_id, bob, "approve")
        again = api.client.post(f"/v1/reviews/{decision_id}", json={"verdict": "approve"}, headers=alice)
        stats = api.client.get("/v1/reviewers/stats", headers=api.headers("supervise")).json()
        queue = api.client.get("/v1/queue/stats", headers=api.headers("supervise")).json()

    assert changed.status_code == 200 and changed.json()["policy"]["quality"] == {
        "second_review_rate": 1.0,
        "gold_rate": 0.02,
    }
    assert second["decision_id"] == decision_id and second["lane"] == "second"
    assert "alice" not in json.dumps(second) and "reject" not in json.dumps(second)  # blind
    assert set(answer) == VERDICT_KEYS and "agrees" not in answer
    assert again.status_code == 409
    by_name = {row["reviewer"]: row for row in stats["reviewers"]}
    assert by_name["alice"]["agreement"]["items"] == 1 and by_name["alice"]["agreement"]["raw"] == 0.0
    assert by_name["bob"]["team"] == "vendor-b" and by_name["alice"]["team"] is None
    assert [team["team"] for team in stats["teams"]] == ["vendor-b"]
    assert stats["agreement"]["items"] == 1
    assert queue["lanes"]["second"] == {"pending": 0, "claimed": 0, "done": 1, "oldest_pending_age_seconds": None}


def test_the_decision_audit_keeps_both_reviewers_notes_and_when_the_item_was_first_queued(
    serve, own_bundle: Path
) -> None:
    """Compliance reads what each reviewer wrote: the first verdict's note and the blind second reviewer's
    (stored, not dropped), and the timeline keeps the decision's own queueing apart from its second one."""
    with serve(bundle=str(own_bundle)) as api:
        alice, bob = api.key("alice", "review"), api.key("bob", "review")
        put_policy(api, {"quality": {"second_review_rate": 1.0}})
        decision_id = queued(api, 2)
        claim(api, alice)
        first = {"verdict": "reject", "violation_reason": "counterfeit", "note": "Fake logo 假货 on the strap"}
        assert api.client.post(f"/v1/reviews/{decision_id}", json=first, headers=alice).status_code == 200
        (second,) = claim(api, bob)
        body = {"verdict": "approve", "note": "the seller's invoice is attached"}
        answer = api.client.post(f"/v1/reviews/{decision_id}", json=body, headers=bob)
        audit = api.client.get(f"/v1/decisions/{decision_id}", headers=api.headers("audit")).json()
        decided_at = api.store.get_decision(decision_id).decided_at

    assert answer.status_code == 200 and answer.json()["note"] == body["note"]
    notes = {v["kind"]: v["note"] for v in audit["verdicts"]}
    assert notes == {"review": first["note"], "second_review": body["note"]}
    events = {e["event"]: e for e in audit["timeline"]}
    assert events["review"]["text"].endswith('(note: "Fake logo 假货 on the strap")')
    assert events["second_review"]["text"].endswith('(note: "the seller\'s invoice is attached")')
    queued_at = datetime.fromisoformat(events["queued"]["at"].replace("Z", "+00:00"))
    assert queued_at == decided_at  # not the second enqueue, at the first verdict
    assert events["second_queued"]["at"] >= events["review"]["at"]
    order = [e["event"] for e in audit["timeline"]]
    assert order.index("queued") < order.index("review") < order.index("second_queued") < order.index("second_review")


def test_gold_items_are_answered_like_queue_items_and_kept_apart(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        source = queued(api, 2)
        lead = api.headers("supervise")
        body = {"decision_id": source, "expected_verdict": "reject", "expected_reason": "counterfeit"}
        created = api.client.post("/v1/gold", json=body, headers=lead)
        made_up = api.client.post("/v1/gold", json=body | {"expected_reason": "looked odd"}, headers=lead)
        refused = api.client.post(
            "/v1/gold",
            json={"decision_id": source, "expected_verdict": "approve", "expected_reason": "x"},
            headers=lead,
        )
        unknown = api.client.post("/v1/gold", json={"decision_id": "nope", "expected_verdict": "reject"}, headers=lead)
        # a second live copy of one decision could reach one reviewer beside the first
        twice = api.client.post("/v1/gold", json={"decision_id": source, "expected_verdict": "approve"}, headers=lead)
        put_policy(api, {"quality": {"gold_rate": 1.0}})
        carol = api.key("carol", "review")
        (item,) = claim(api, carol)
        with_note = {"verdict": "approve", "review_seconds": 20, "note": "invoice attached, looks genuine"}
        answer = api.client.post(f"/v1/reviews/{item['decision_id']}", json=with_note, headers=carol).json()
        with api.store._read_engine.connect() as conn:  # the note is kept with the gold answer, not dropped
            kept_note = conn.execute(
                select(schema.gold_assignments.c.note).where(
                    schema.gold_assignments.c.assignment_id == item["decision_id"]
                )
            ).scalar_one()
        listed = api.client.get("/v1/gold", headers=lead).json()
        gold_id = created.json()["gold_id"]
        retired = api.client.delete(f"/v1/gold/{gold_id}", headers=lead)
        retired_again = api.client.delete(f"/v1/gold/{gold_id}", headers=lead)
        after = claim(api, api.key("dave", "review"))
        once_retired = api.client.post(  # a retired copy no longer stands in the way
            "/v1/gold", json={"decision_id": source, "expected_verdict": "approve"}, headers=lead
        )
        stats = api.client.get("/v1/reviewers/stats", headers=api.headers("read")).json()
        labels = api.store.export_labels()

    assert created.status_code == 201 and refused.status_code == 422 and unknown.status_code == 404
    assert twice.status_code == 409 and gold_id_of(created) in twice.json()["detail"]
    assert once_retired.status_code == 201, once_retired.text
    assert made_up.status_code == 422 and "not a violation reason" in made_up.text
    assert "expected_reason" in refused.text
    assert item["decision_id"] not in (source, gold_id) and item["lane"] == "review"
    assert item["listing"]["listing_id"] == "L-2" and item["decision"]["decision"] == "human_review"
    assert answer["decision_id"] == item["decision_id"] and set(answer) == VERDICT_KEYS
    assert kept_note == with_note["note"] and answer["note"] == with_note["note"]
    assert [(g["assigned"], g["answered"], g["correct"]) for g in listed] == [(1, 1, 0)]
    assert retired.status_code == 200 and retired_again.status_code == 404
    assert [i["decision_id"] for i in after] == [source]  # no live gold item left: the queue item
    (carol_row,) = [row for row in stats["reviewers"] if row["reviewer"] == "carol"]
    assert carol_row["gold"] == {"n": 1, "correct": 0, "accuracy": 0.0, "low": 0.0, "high": pytest.approx(0.975)}
    assert labels.empty  # a gold verdict is no label


def test_quality_plan_changes_are_validated_and_keys_carry_teams(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        too_high = put_policy(api, {"quality": {"gold_rate": 1.5}})
        unknown = put_policy(api, {"quality": {"rate": 0.1}})
        partial = put_policy(api, {"quality": {"gold_rate": 0.1}})
        history = api.client.get("/v1/policy/history", headers=api.headers("read")).json()
        created = api.client.post(
            "/v1/admin/keys",
            json={"name": "eve", "scopes": ["review"], "team": "vendor-a"},
            headers=api.headers("admin"),
        )
        keys = api.client.get("/v1/admin/keys", headers=api.headers("admin")).json()
        bad_window = api.client.get(
            "/v1/reviewers/stats?since=2025-06-02T00:00:00Z&until=2025-06-01T00:00:00Z", headers=api.headers("read")
        )
        review_only = api.client.get("/v1/reviewers/stats", headers=api.headers("review"))

    assert too_high.status_code == 422 and "quality.gold_rate" in {e["field"] for e in too_high.json()["detail"]}
    assert unknown.status_code == 422 and "quality.rate" in {e["field"] for e in unknown.json()["detail"]}
    assert partial.json()["policy"]["quality"] == {"second_review_rate": 0.05, "gold_rate": 0.1}
    assert len(history) == 1 and history[0]["new"]["quality"]["gold_rate"] == 0.1
    assert created.status_code == 201 and created.json()["key"]["team"] == "vendor-a"
    assert {k["name"]: k["team"] for k in keys}["eve"] == "vendor-a"
    assert bad_window.status_code == 422 and "since" in bad_window.text
    assert review_only.status_code == 403


def test_reviewers_stats_from_the_cli(serve, own_bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from serving.quality_commands import reviewers_stats

    with serve(bundle=str(own_bundle)) as api:
        put_policy(api, {"quality": {"second_review_rate": 1.0}})
        alice, bob = api.key("alice", "review"), api.key("bob", "review")
        for i in range(3):
            queued(api, 10 + i)
            (item,) = claim(api, alice)
            verdict(api, item["decision_id"], alice, "approve")
            (item,) = claim(api, bob)
            verdict(api, item["decision_id"], bob, "approve")
        url = str(api.store.url.render_as_string(hide_password=False))

    reviewers_stats(db=url, as_json=True)
    report = json.loads(capsys.readouterr().out)
    reviewers_stats(db=url)
    table = capsys.readouterr().out

    assert {row["reviewer"]: row["verdicts"] for row in report["reviewers"]} == {"alice": 3, "bob": 3}
    assert report["agreement"]["raw"] == 1.0 and report["agreement"]["items"] == 3
    assert "alice" in table and "bob" in table and "agreement" in table


def test_the_review_console_handles_a_gold_item_like_a_queue_item(serve, own_bundle: Path) -> None:
    """Through the console's routes a gold item is claimed with its context, shown again, given back and
    answered exactly as a queue item is; given back, it may come to the same reviewer again."""
    with serve(bundle=str(own_bundle)) as api:
        source = queued(api, 3)
        lead = api.headers("supervise")
        body = {"decision_id": source, "expected_verdict": "reject", "expected_reason": "counterfeit"}
        assert api.client.post("/v1/gold", json=body, headers=lead).status_code == 201
        put_policy(api, {"quality": {"gold_rate": 1.0}})
        erin = api.key("erin", "review")
        first = api.client.get("/v1/review/next", headers=erin).json()
        gold_id = first["item"]["decision_id"]
        shown_again = api.client.get(f"/v1/review/items/{gold_id}", headers=erin)
        by_other = api.client.post(f"/v1/queue/{gold_id}/release", headers=api.key("fay", "review"))
        released = api.client.post(f"/v1/queue/{gold_id}/release", headers=erin)
        again = api.client.get("/v1/review/next", headers=erin).json()
        answer = verdict(api, again["item"]["decision_id"], erin, "reject")
        answered = api.client.get(f"/v1/review/items/{again['item']['decision_id']}", headers=erin)
        listed = api.client.get("/v1/gold", headers=lead).json()

    assert gold_id != source and first["item"]["listing"]["listing_id"] == "L-3"
    assert first["context"]["listing"] and first["item"]["lane"] == "review"
    assert shown_again.status_code == 200 and shown_again.json()["item"]["decision_id"] == gold_id
    assert by_other.status_code == 409 and released.status_code == 200
    assert again["item"]["decision_id"] != gold_id and again["item"]["listing"]["listing_id"] == "L-3"
    assert answer["verdict"] == "reject" and answered.status_code == 409
    statement = answer["statement_of_reasons"]  # as an ordinary reject's answer reads: nothing tells gold apart
    assert statement["automated_decision"] is False and "counterfeit" in str(statement)
    assert [(g["assigned"], g["answered"], g["correct"]) for g in listed] == [(1, 1, 1)]
