"""Policy changes one rule at a time, the required reason, hand-set thresholds' guarantee state, and the
policy stored with its audit row in one transaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy.exc import IntegrityError

from serving.store import Store
from tests.serving.conftest import listing_json

REPLICA_RULE = {"action": "block", "kind": "term", "terms": ["replica"], "fields": ["title"]}


def policy(api) -> dict:
    return api.client.get("/v1/policy", headers=api.headers("read")).json()


def test_one_rule_is_added_changed_and_removed_by_name_others_kept(serve, own_bundle: Path) -> None:
    admin_headers = {"Authorization": ""}
    with serve(bundle=str(own_bundle)) as api:
        admin_headers = api.headers("admin")
        before = policy(api)["policy"]["rules"]
        added = api.client.put(
            "/v1/policy/rules/replicas",
            json={"rule": REPLICA_RULE, "reason": "replica watches", "force": True},
            headers=admin_headers,
        )
        blocked = api.score(listing_json(1, title="Replica watch, brown")).json()
        patched = api.client.patch(
            "/v1/policy/rules/replicas",
            json={"changes": {"action": "review"}, "reason": "too many wrongful blocks"},
            headers=admin_headers,
        )
        reviewed = api.score(listing_json(2, title="Replica watch, brown")).json()
        removed = api.client.request(
            "DELETE", "/v1/policy/rules/replicas", params={"reason": "campaign over"}, headers=admin_headers
        )
        history = api.client.get("/v1/policy/history", headers=api.headers("read")).json()
        missing = api.client.patch(
            "/v1/policy/rules/replicas", json={"changes": {"action": "block"}, "reason": "again"}, headers=admin_headers
        )

    assert added.status_code == 200, added.text
    live = {"mode": "enforce", "enabled": True}
    assert added.json()["policy"]["rules"] == [*before, {"name": "replicas", **REPLICA_RULE, **live, "version": 1}]
    assert blocked["decision"] == "auto_block" and "replicas" in blocked["rules_matched"]
    assert patched.status_code == 200
    assert patched.json()["policy"]["rules"][-1] == {
        "name": "replicas",
        **REPLICA_RULE,
        **live,
        "action": "review",
        "version": 2,
    }
    assert reviewed["decision"] == "human_review"
    assert removed.status_code == 200 and removed.json()["policy"]["rules"] == before
    reasons = [h["reason"].split("\n")[0] for h in history]  # a forced block rule's certificate follows
    assert reasons == ["campaign over", "too many wrongful blocks", "replica watches"]
    assert missing.status_code == 404 and "replicas" in missing.json()["detail"]


def test_a_rule_change_is_validated_and_its_name_is_the_paths(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        headers = api.headers("admin")
        bad = api.client.put(
            "/v1/policy/rules/x",
            json={"rule": {**REPLICA_RULE, "action": "explode"}, "reason": "a test"},
            headers=headers,
        )
        renamed = api.client.put(
            "/v1/policy/rules/x", json={"rule": {**REPLICA_RULE, "name": "y"}, "reason": "a test"}, headers=headers
        )
        # a string where a list belongs: list("replica") took each letter for a term
        letters = [
            api.client.put(
                "/v1/policy/rules/x",
                json={"rule": {**REPLICA_RULE, key: "replica"}, "reason": "a test"},
                headers=headers,
            )
            for key in ("terms", "fields")
        ]
        by_score_key = api.client.put(
            "/v1/policy/rules/x", json={"rule": REPLICA_RULE, "reason": "a test"}, headers=api.headers("score")
        )
        history = api.client.get("/v1/policy/history", headers=api.headers("read")).json()

    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "rule.action"
    assert renamed.status_code == 422
    for key, response in zip(("terms", "fields"), letters, strict=True):
        assert response.status_code == 422, response.text
        assert f".{key}: expected a list, got str 'replica'" in response.json()["detail"][0]["msg"]
    assert by_score_key.status_code == 403
    assert history == []


@pytest.mark.parametrize("reason", [None, "", "  "])
def test_every_change_needs_a_reason(serve, own_bundle: Path, reason: str | None) -> None:
    extra = {} if reason is None else {"reason": reason}
    with serve(bundle=str(own_bundle)) as api:
        headers = api.headers("admin")
        responses = [
            api.client.put("/v1/policy", json={"t_pass": 0.1, **extra}, headers=headers),
            api.client.put("/v1/policy/rules/x", json={"rule": REPLICA_RULE, **extra}, headers=headers),
            api.client.patch("/v1/policy/rules/x", json={"changes": {"action": "review"}, **extra}, headers=headers),
            api.client.request("DELETE", "/v1/policy/rules/x", params=extra, headers=headers),
        ]
        history = api.client.get("/v1/policy/history", headers=api.headers("read")).json()

    for response in responses:
        assert response.status_code == 422, response.text
        assert "reason" in {e["field"] for e in response.json()["detail"]}
    assert history == []


def test_hand_set_thresholds_clear_certified_targets_and_say_so(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        headers = api.headers("admin")
        trained = policy(api)
        rule_only = api.client.put(
            "/v1/policy/rules/replicas", json={"rule": REPLICA_RULE, "reason": "rule", "force": True}, headers=headers
        ).json()
        hand_set = api.client.put("/v1/policy", json={"t_pass": 0.05, "reason": "fewer reviews"}, headers=headers)
        with_targets = api.client.put(
            "/v1/policy", json={"t_pass": 0.06, "targets": {"recall": 0.99}, "reason": "x" * 5}, headers=headers
        )
        read_back = policy(api)
        same_targets = api.client.put(  # a client re-posting what it read: the targets in force are no change
            "/v1/policy", json={"targets": read_back["policy"]["targets"], "reason": "re-post"}, headers=headers
        )

    assert same_targets.status_code == 200, same_targets.text
    assert trained["policy"]["targets"] and trained["guarantee_state"] != "hand_set, not certified"
    assert rule_only["guarantee_state"] == trained["guarantee_state"]  # thresholds untouched
    assert hand_set.status_code == 200
    body = hand_set.json()
    assert body["guarantee_state"] == "hand_set, not certified"
    assert body["policy"]["targets"] == {} and body["policy"]["guarantee"]["mode"] == "hand_set"
    assert body["policy"]["guarantee"]["replaced_targets"] == trained["policy"]["targets"]
    assert read_back["guarantee_state"] == "hand_set, not certified"
    assert with_targets.status_code == 422 and with_targets.json()["detail"][0]["field"] == "targets"


def test_a_policy_and_its_audit_row_are_one_transaction(store: Store) -> None:
    old, new = {"version": "p-1", "t_pass": 0.1}, {"version": "p-2", "t_pass": 0.05}
    assert store.policy_in_force("bundle-a") is None
    store.put_policy_in_force("bundle-a", "admin-key", "first", old, new)

    with pytest.raises(IntegrityError):  # the version is taken: neither the policy nor an audit row lands
        store.put_policy_in_force("bundle-a", "admin-key", "again", new, {**new, "t_pass": 0.5})

    assert store.policy_in_force("bundle-a") == new
    assert store.policy_in_force("bundle-b") is None  # per bundle
    history = store.policy_history()
    assert [(c.old_version, c.new_version, c.reason) for c in history] == [("p-1", "p-2", "first")]
    assert store.policy_version_count() == 1
