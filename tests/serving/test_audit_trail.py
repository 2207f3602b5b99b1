"""The decision audit's reads on both backends and its plain-words `why`: the policy and model in force,
since when a rule acted, verdicts in order with the overturn recomputed, the shadow decision."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from serving.audit_trail import audit_document
from serving.engine import FAILSAFE_POLICY_VERSION
from serving.store import Store
from serving.store.shadow import ShadowDecision
from tests.serving.conftest import FakeClock, make_decision

IVORY = {"name": "ivory", "action": "block", "kind": "term", "terms": ["ivory"], "fields": ["title"], "version": 1}


def policy(version: str, *rules: dict[str, Any]) -> dict[str, Any]:
    return {"version": version, "t_pass": 0.1, "t_block": 0.9, "rules": list(rules)}


def put_policies(store: Store) -> None:
    """p1, p2 enforce ivory; p3 demotes it to shadow; p4 enforces it again (a new version of the rule)."""
    versions = [
        policy("p1", IVORY),
        policy("p2", IVORY),
        policy("p3", {**IVORY, "mode": "shadow", "version": 2}),
        policy("p4", {**IVORY, "version": 3}),
    ]
    old: dict[str, Any] = {}
    for new in versions:
        store.put_policy_in_force("model-1", "policy-lead", f"to {new['version']}", old, new)
        old = new


def test_rules_are_dated_by_the_unbroken_run_of_policy_versions(store: Store) -> None:
    put_policies(store)
    store.record_model_change("promote", "ds-lead", new_model="model-1", reason="better recall")
    blocked = dict(decision="auto_block", automated=True, rules_matched=["ivory"], model_decision="auto_pass")
    under_p2, under_p4 = store.record_decisions(
        [make_decision(policy_version="p2", **blocked), make_decision(policy_version="p4", **blocked)]
    )

    early = audit_document(_trail(store, under_p2.decision_id))
    late = audit_document(_trail(store, under_p4.decision_id))

    assert early["rules_matched"] == [
        {"name": "ivory", "action": "block", "mode": "enforce", "version": 1, "in_force_since": "p1"}
    ]
    assert late["rules_matched"][0]["in_force_since"] == "p4" and late["rules_matched"][0]["version"] == 3
    assert early["why"].startswith(
        "Blocked by rule ivory (block rule version 1, enforced since policy version p1) (model model-1, policy p2); "
        "the model alone would have passed it (risk 0.420)."
    )
    in_force = early["policy_in_force"]
    assert (in_force["source"], in_force["put_in_force_by"], in_force["change_reason"]) == (
        "api",
        "policy-lead",
        "to p2",
    )
    model = early["model_in_force"]
    assert (model["event"], model["by"], model["reason"]) == ("promote", "ds-lead", "better recall")


def test_an_audit_shows_verdicts_in_order_and_the_overturn_of_the_verdict_in_force(
    store: Store, clock: FakeClock
) -> None:
    (passed,) = store.record_decisions(
        [
            make_decision(
                decision="auto_pass",
                automated=True,
                qa_sample=True,
                inclusion_prob=0.1,
                rules_matched=[],
                received_at=clock.now,
                decided_at=clock.now,
            )
        ]
    )
    store.record_shadow_decisions(
        [ShadowDecision(passed.decision_id, passed.decided_at, "model-2", "policy-1", 0.7, "human_review")]
    )
    clock.advance(60)
    store.record_review(passed.decision_id, "ana", "reject", "counterfeit")
    clock.advance(60)
    previous = store.verdict_in_force(passed.decision_id)
    assert previous is not None
    store.record_correction(previous, "lead", "approve", None, "the brand is licensed")

    document = audit_document(_trail(store, passed.decision_id))

    assert [(v["kind"], v["by"], v["verdict"]) for v in document["verdicts"]] == [
        ("review", "ana", "reject"),
        ("correction", "lead", "approve"),
    ]
    assert document["overturn"] is False  # the correction upholds the auto-pass the review overturned
    assert document["queue"]["lane"] == "audit" and document["queue"]["status"] == "done"
    assert document["shadow"]["model_version"] == "model-2" and document["shadow"]["decision"] == "human_review"
    assert document["policy_in_force"]["source"] == "bundle"
    assert "policy.json of model model-1" in document["policy_in_force"]["note"]
    why = document["why"]
    assert why.startswith("Passed automatically: the model's risk 0.420 was below the pass threshold 0.100")
    assert "drawn for audit (inclusion probability 0.100)" in why
    assert "ana rejected it (counterfeit)" in why and "lead amended the verdict to approve" in why
    assert why.endswith("The verdict in force upholds the automated decision.")
    events = [e["event"] for e in document["timeline"]]
    assert events[-2:] == ["review", "correction"] and "shadow" in events


def test_why_of_a_fail_safe_of_a_threshold_block_and_of_a_tiered_review_and_pass(store: Store) -> None:
    unscored, threshold_block, tiered_review, tiered_pass, single_target_pass = store.record_decisions(
        [
            make_decision(
                risk=None,
                model_version=None,
                policy_version=FAILSAFE_POLICY_VERSION,
                fallback_reason="model_unavailable",
            ),
            make_decision(
                decision="auto_block",
                automated=True,
                risk=0.993,
                t_block=0.981,
                rules_matched=[],
                tier_risk={"severe": 0.99, "minor": 0.1},
                decision_tier="severe",
            ),
            make_decision(
                risk=0.967,
                t_pass=1.0,
                t_block=1.0,
                rules_matched=[],
                tier_risk={"severe": 0.831, "minor": 0.1},
                decision_tier="severe",
            ),  # fmt: skip
            make_decision(
                decision="auto_pass",
                automated=True,
                risk=0.013,
                t_pass=0.9999999999999999,  # a tiered policy's overall t_pass: it passes nothing on its own
                t_block=1.0,
                rules_matched=[],
                tier_risk={"severe": 0.0004, "minor": 0.009},
                decision_tier=None,
            ),
            make_decision(  # a tiered bundle under one target over every violation: its t_pass passes
                decision="auto_pass",
                automated=True,
                risk=0.03,
                t_pass=0.05,
                t_block=1.0,
                rules_matched=[],
                tier_risk={"severe": 0.0004, "minor": 0.02},
                decision_tier=None,
            ),
        ]
    )
    failsafe = audit_document(_trail(store, unscored.decision_id))
    blocked = audit_document(_trail(store, threshold_block.decision_id))

    assert failsafe["why"] == (
        f"Sent to review: fail-safe, the model could not score: model_unavailable (model none, policy "
        f"{FAILSAFE_POLICY_VERSION}). It is waiting for a person's verdict."
    )
    assert failsafe["policy_in_force"]["source"] == "failsafe" and failsafe["verdicts"] == []
    assert blocked["why"] == (
        "Blocked automatically: the model's risk 0.993 reached the block threshold 0.981; likeliest violation "
        "type 'severe' (tier risk 0.990) (model model-1, policy policy-1)."
    )
    assert "started on its configured bundle" in blocked["model_in_force"]["note"]
    assert audit_document(_trail(store, tiered_pass.decision_id))["why"] == (  # no overall threshold named
        "Passed automatically: every tier's risk was below its own pass threshold (tier risks 'severe' 0.0004, "
        "'minor' 0.009; overall risk 0.013) (model model-1, policy policy-1)."
    )
    assert audit_document(_trail(store, single_target_pass.decision_id))["why"].startswith(
        "Passed automatically: the model's risk 0.030 was below the pass threshold 0.05"
    )
    assert audit_document(_trail(store, tiered_review.decision_id))["why"].startswith(
        "Sent to review: the model's risk 0.967 is below the block threshold 1.000, and not every tier's risk is "
        "below its own pass threshold; tier 'severe' is furthest above its pass threshold (tier risk 0.831) "
    )


def _trail(store: Store, decision_id: str) -> Any:
    trail = store.decision_trail(decision_id)
    assert trail is not None
    return trail


def test_tiny_risks_and_thresholds_keep_their_significant_digits() -> None:
    """A text-only bundle certified t_pass 0.00044: its why read 'risk 0.000 was below the pass threshold
    0.000'."""
    from serving.engine import in_words as _num

    assert [_num(v) for v in (0.00044, 0.000213, 0.0123, 0.5, 0.0, None)] == [
        "0.00044", "0.000213", "0.012", "0.500", "0.000", "none",
    ]  # fmt: skip
    # just under 1: a risk of 0.9999995 read '1.000 lies between ... and the block threshold 1.000'
    assert [_num(v) for v in (0.9999995, 0.9995, 0.999, 1.0)] == ["0.99999950", "0.99950", "0.999", "1.000"]


def test_a_risk_and_the_threshold_it_is_compared_with_never_read_the_same(store: Store) -> None:
    """'risk 0.000441 lies between the pass threshold 0.000441 and ...' said 0.0004412 against 0.0004408:
    the two numbers of one comparison get the digits that tell them apart."""
    from serving.engine import in_words_apart

    review, passed, near_block = store.record_decisions(
        [
            make_decision(risk=0.0004412, t_pass=0.0004408, t_block=0.98, rules_matched=[]),
            make_decision(
                decision="auto_pass", automated=True, risk=0.0004406, t_pass=0.0004408, t_block=0.98, rules_matched=[]
            ),
            make_decision(risk=0.97951, t_pass=0.01, t_block=0.97962, rules_matched=[]),
        ]
    )
    assert audit_document(_trail(store, review.decision_id))["why"].startswith(
        "Sent to review: the model's risk 0.0004412 lies between the pass threshold 0.0004408 and the block "
        "threshold 0.980 "
    )
    assert audit_document(_trail(store, passed.decision_id))["why"].startswith(
        "Passed automatically: the model's risk 0.0004406 was below the pass threshold 0.0004408"
    )
    assert audit_document(_trail(store, near_block.decision_id))["why"].startswith(
        "Sent to review: the model's risk 0.9795 lies between the pass threshold 0.010 and the block threshold 0.9796 "
    )
    assert in_words_apart(0.5, 0.25) == ("0.500", "0.250") and in_words_apart(None, 0.1) == ("none", "0.100")


def test_decisions_show_prints_the_thresholds_that_decided_a_tiered_decision(store: Store) -> None:
    """`decisions show` printed 't_pass 0.9999999999999999' for a tiered pass: the overall threshold that
    passes nothing, not the tiers' own pass thresholds that decided."""
    from dataclasses import replace

    from serving.audit_commands import thresholds_line
    from serving.store.decision_audit import StoredPolicy

    tiered, untiered = store.record_decisions(
        [
            make_decision(
                decision="auto_pass",
                automated=True,
                risk=0.013,
                t_pass=0.9999999999999999,
                t_block=0.98,
                rules_matched=[],
                tier_risk={"severe": 0.0004, "minor": 0.009},
            ),
            make_decision(decision="auto_pass", automated=True, risk=0.03, t_pass=0.05, t_block=0.98, rules_matched=[]),
        ]
    )
    bundle_own = _trail(store, tiered.decision_id)
    assert audit_document(bundle_own)["thresholds"] == {
        "t_pass": 0.9999999999999999,
        "t_block": 0.98,
        "tiers_decide": True,
        "tier_pass": None,  # the bundle's own policy: the log names it by version only
    }
    assert thresholds_line(audit_document(bundle_own)) == (
        "thresholds: t_block 0.98  pass thresholds per tier: those of the bundle's own policy (policy.json of "
        "model model-1; the log names that policy by version only)"
    )
    stored = StoredPolicy(
        version="policy-1",
        bundle_version="model-1",
        at=bundle_own.record.decided_at,
        policy={"t_pass": 0.9999999999999999, "t_block": 0.98, "tier_pass": {"minor": 0.0129, "severe": 0.00129}},
        actor="admin",
        reason="tiered targets",
        rules={},
    )
    through_api = audit_document(replace(bundle_own, policy=stored))
    assert through_api["thresholds"]["tier_pass"] == {"minor": 0.0129, "severe": 0.00129}
    assert thresholds_line(through_api) == (
        "thresholds: t_block 0.98  pass thresholds per tier: 'minor' 0.0129, 'severe' 0.00129"
    )
    assert (
        thresholds_line(audit_document(_trail(store, untiered.decision_id))) == "thresholds: t_pass 0.05  t_block 0.98"
    )


def test_tier_thresholds_beside_a_real_overall_t_pass_are_named_where_they_decided(store: Store) -> None:
    """A hand-set overall pair keeps the tier thresholds in force, and routing applies both (a pass needs
    both). The audit said "risk below the pass threshold 0.5" for a pass, gave no threshold for the tier
    that sent a listing to review, and printed only t_pass and t_block."""
    from serving.audit_commands import thresholds_line
    from serving.store.decision_audit import StoredPolicy

    passed, reviewed = store.record_decisions(
        [
            make_decision(
                decision="auto_pass",
                automated=True,
                risk=0.00969,
                t_pass=0.5,
                t_block=0.6,
                rules_matched=[],
                tier_risk={"severe": 0.0004, "minor": 0.009},
            ),
            make_decision(
                risk=0.04,
                t_pass=0.5,
                t_block=0.6,
                rules_matched=[],
                tier_risk={"severe": 0.0004, "minor": 0.038},
                decision_tier="minor",
            ),  # fmt: skip
        ]
    )
    stored = StoredPolicy(
        version="policy-1",
        bundle_version="model-1",
        at=passed.decided_at,
        policy={"t_pass": 0.5, "t_block": 0.6, "tier_pass": {"minor": 0.011, "severe": 0.0011}},
        actor="admin",
        reason="hand-set pair",
        rules={},
    )
    passed_doc = audit_document(replace(_trail(store, passed.decision_id), policy=stored))
    reviewed_doc = audit_document(replace(_trail(store, reviewed.decision_id), policy=stored))

    assert passed_doc["thresholds"]["tier_pass"] == {"minor": 0.011, "severe": 0.0011}
    assert thresholds_line(passed_doc) == (
        "thresholds: t_pass 0.5  t_block 0.6  pass thresholds per tier: 'minor' 0.011, 'severe' 0.0011"
    )
    assert (
        passed_doc["why"].startswith("Passed automatically: the model's risk 0.00969 was below the pass threshold 0.5")
        and "every tier's risk below its own pass threshold (tier risks 'severe' 0.0004 (threshold 0.0011)"
        in (passed_doc["why"])
    )
    assert "tier 'minor' is furthest above its pass threshold 0.011 (tier risk 0.038)" in reviewed_doc["why"]


def test_a_bundles_own_tiered_policy_is_read_from_the_bundle_that_keeps_it(store: Store, tmp_path: Path) -> None:
    """The log names the bundle's own policy by version only, so a tiered decision's record showed the
    placeholder t_pass 0.9999999999999999 and no tier thresholds: the bundle keeps every policy version it
    shipped (`policies/<version>.json`), and the audit reads the decision's version there."""
    import json

    from serving.audit_commands import thresholds_line
    from serving.audit_trail import with_bundle_policy

    (decision,) = store.record_decisions(
        [
            make_decision(
                decision="human_review", risk=0.00994, t_pass=0.9999999999999999, t_block=0.98, rules_matched=[],
                tier_risk={"severe": 0.0004, "minor": 0.0099}, model_version="bundle-a", policy_version="policy-7",
            )
        ]
    )  # fmt: skip
    trail = _trail(store, decision.decision_id)
    assert with_bundle_policy(trail, tmp_path) is trail  # no such bundle: the log's words stand
    kept = tmp_path / "bundle-a" / "policies"
    kept.mkdir(parents=True)
    policy = {"version": "policy-7", "t_pass": 0.9999999999999999, "t_block": 0.98, "tier_pass": {"minor": 0.00963}}
    (kept / "policy-7.json").write_text(json.dumps(policy))
    (kept / "policy-6.json").write_text(json.dumps({**policy, "version": "policy-6", "tier_pass": {"minor": 0.5}}))

    document = audit_document(with_bundle_policy(trail, tmp_path))
    assert document["thresholds"]["tier_pass"] == {"minor": 0.00963}
    assert thresholds_line(document) == "thresholds: t_block 0.98  pass thresholds per tier: 'minor' 0.00963"
    escaped = make_decision(model_version="..", policy_version="policy-7")  # names from the log: no path outside
    assert with_bundle_policy(replace(trail, record=escaped), tmp_path / "bundle-a").bundle_policy is None
