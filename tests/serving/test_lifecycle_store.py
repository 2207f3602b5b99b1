"""Model audit and shadow decisions in the store, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from serving.store import Store
from serving.store.model_audit import SERVING_EVENTS, SHADOW_EVENTS
from serving.store.shadow import ShadowDecision
from tests.serving.conftest import make_decision


def test_model_changes_are_kept_in_order_and_the_marks_move_with_them(store: Store) -> None:
    before = store.change_marks()
    store.record_model_change("promote", "ds", new_model="v2", bundle="/models/v2", reason="gate passed")
    store.record_model_change("shadow_set", "ops", new_model="v3", bundle="/models/v3", reason="compare")
    after = store.change_marks()

    assert before.model is None and after.model is not None and after.policy == before.policy
    assert store.latest_model_change(SERVING_EVENTS).new_model == "v2"  # type: ignore[union-attr]
    assert store.latest_model_change(SHADOW_EVENTS).event == "shadow_set"  # type: ignore[union-attr]
    assert [c.event for c in store.model_history()] == ["shadow_set", "promote"]
    store.put_policy_in_force("v2", "ops", "why", {"version": "p1"}, {"version": "p2"})
    assert store.change_marks().policy is not None and store.change_marks().model == after.model


def test_shadow_decisions_join_the_champion_decision_and_its_verdict_and_a_retry_keeps_the_first(
    store: Store,
) -> None:
    reviewed = make_decision(decision="human_review")
    passed = make_decision(decision="auto_pass", automated=True)
    store.record_decisions([reviewed, passed])
    store.record_review(reviewed.decision_id, "r", "reject", "counterfeit")
    at = datetime(2025, 6, 1, tzinfo=UTC)
    rows = [
        ShadowDecision(reviewed.decision_id, at, "v3", "p", 0.01, "auto_pass", {"severe": 0.01}),
        ShadowDecision(passed.decision_id, at, "v3", "p", 0.02, "auto_pass"),
    ]
    store.record_shadow_decisions(rows)
    store.record_shadow_decisions([ShadowDecision(passed.decision_id, at, "v3", "p", 0.9, "auto_block")])

    pairs = {p["decision_id"]: p for p in store.shadow_pairs(model_version="v3")}
    assert pairs[reviewed.decision_id]["verdict"] == "reject"
    assert pairs[reviewed.decision_id]["champion_decision"] == "human_review"
    assert pairs[passed.decision_id]["verdict"] is None and pairs[passed.decision_id]["shadow_decision"] == "auto_pass"
    assert store.shadow_pairs(model_version="other") == []
