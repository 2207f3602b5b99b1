"""Input checks of the rule and policy changes: blank names, errors that name the one rule's own field,
rules that could never match the bundle's listings (a range on text, a term longer than any text), fields
a client cannot set, and changes that change nothing (no new version)."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.serving.conftest import listing_json

REVIEW_RULE = {"action": "review", "kind": "term", "terms": ["replica"], "fields": ["title"]}


def errors(response: httpx.Response) -> dict[str, str]:
    """field -> message of a 422."""
    assert response.status_code == 422, response.text
    return {e["field"]: e["msg"] for e in response.json()["detail"]}


def history(api) -> list[dict]:
    return api.client.get("/v1/policy/history", headers=api.headers("read")).json()


def test_a_blank_rule_name_is_a_422_naming_the_name(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        headers = api.headers("admin")
        rules = api.client.get("/v1/policy", headers=headers).json()["policy"]["rules"]
        in_path = api.client.put(
            "/v1/policy/rules/%20%20", json={"rule": REVIEW_RULE, "reason": "a test"}, headers=headers
        )
        in_list = api.client.put(
            "/v1/policy",
            json={"rules": [*rules, {**REVIEW_RULE, "name": " \t"}], "replace_rules": True, "reason": "a test"},
            headers=headers,
        )
        changes = history(api)

    assert "name" in errors(in_path)
    assert errors(in_list)["rules"].startswith(f"rules[{len(rules)}].name: must be a non-empty string")
    assert changes == []


def test_a_one_rule_change_error_names_the_rules_own_field(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        headers = api.headers("admin")
        put = api.client.put(
            "/v1/policy/rules/x",
            json={"rule": {**REVIEW_RULE, "terms": ["ok", " "]}, "reason": "a test"},
            headers=headers,
        )
        nested = api.client.put(
            "/v1/policy/rules/x",
            json={
                "rule": {"action": "review", "kind": "all", "all": [{**REVIEW_RULE, "action": None}]},
                "reason": "a test",
            },
            headers=headers,
        )
        added = api.client.put("/v1/policy/rules/x", json={"rule": REVIEW_RULE, "reason": "a test"}, headers=headers)
        patch = api.client.patch(
            "/v1/policy/rules/x", json={"changes": {"kind": "range"}, "reason": "a test"}, headers=headers
        )
        unknown = api.client.patch(
            "/v1/policy/rules/x", json={"changes": {"colour": "red"}, "reason": "a test"}, headers=headers
        )

    assert errors(put)["rule.terms"].startswith("rule.terms: a term rule needs a list of non-empty strings")
    assert errors(nested)["rule.all.0"].startswith("rule.all[0]: unknown keys ['action']")
    assert added.status_code == 200, added.text
    assert errors(patch)["changes.column"].startswith("changes.column: a range rule needs the numeric column")
    assert errors(unknown)["changes"] == "changes: unknown keys ['colour']"


def test_a_range_rule_on_a_column_that_is_not_numeric_is_refused_naming_its_type(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        headers = api.headers("admin")
        on_text = api.client.put(
            "/v1/policy/rules/x",
            json={"rule": {"action": "review", "kind": "range", "column": "title", "min": 1}, "reason": "a test"},
            headers=headers,
        )
        in_all = api.client.put(
            "/v1/policy/rules/x",
            json={
                "rule": {
                    "action": "review",
                    "kind": "all",
                    "all": [
                        {"kind": "range", "column": "price", "max": 900},
                        {"kind": "range", "column": "category", "min": 3},
                    ],
                },
                "reason": "a test",
            },
            headers=headers,
        )
        on_price = api.client.put(
            "/v1/policy/rules/cheap",
            json={"rule": {"action": "review", "kind": "range", "column": "price", "max": 5}, "reason": "a test"},
            headers=headers,
        )
        category_on_price = api.client.put(
            "/v1/policy/rules/y",
            json={
                "rule": {"action": "review", "kind": "category", "column": "price", "values": ["abc"]},
                "reason": "a test",
            },
            headers=headers,
        )
        blank_value = api.client.put(
            "/v1/policy/rules/y",
            json={
                "rule": {"action": "review", "kind": "category", "column": "category", "values": [" "]},
                "reason": "a test",
            },
            headers=headers,
        )
        backtest_on_text = api.client.post(
            "/v1/rules/backtest",
            json={"rule": {"name": "t", "action": "review", "kind": "range", "column": "title", "max": 30}},
            headers=api.headers("read"),
        )
        changes = history(api)

    message = errors(on_text)["rule.column"]
    assert message.startswith("rule.column: 'title' is a text column") and "'price'" in message
    assert category_on_price.status_code == 422 and "numeric" in category_on_price.text, category_on_price.text
    assert errors(category_on_price)["rule.column"].startswith("rule.column: 'price' is a numeric column")
    assert "a blank value never matches" in errors(blank_value)["rule.values"]
    # a backtest checks the rule it tests as the policy change does (it answered 0 hits, no warning)
    assert "'title' is a text column" in errors(backtest_on_text)["rule.column"]
    assert errors(in_all)["rule.all.1.column"].startswith("rule.all[1].column: 'category' is a categorical column")
    assert on_price.status_code == 200, on_price.text
    assert [c["reason"] for c in changes] == ["a test"]


def test_a_term_longer_than_any_text_its_fields_take_is_refused(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        headers = api.headers("admin")
        title_only = api.client.put(
            "/v1/policy/rules/x",
            json={"rule": {**REVIEW_RULE, "terms": ["ok", "a" * 501]}, "reason": "a test"},
            headers=headers,
        )
        too_long = api.client.put(
            "/v1/policy/rules/x",
            json={
                "rule": {**REVIEW_RULE, "terms": ["a" * 10_001], "fields": ["title", "description"]},
                "reason": "a test",
            },
            headers=headers,
        )
        # a term's words match across any run of spaces, so its shortest match joins them with one
        spaced = api.client.put(
            "/v1/policy/rules/spaced",
            json={"rule": {**REVIEW_RULE, "terms": ["a" * 250 + " " * 10 + "b" * 249]}, "reason": "a test"},
            headers=headers,
        )
        description = api.client.put(
            "/v1/policy/rules/long",
            json={
                "rule": {**REVIEW_RULE, "terms": ["a" * 600], "fields": ["title", "description"]},
                "reason": "a test",
            },
            headers=headers,
        )

    message = errors(title_only)["rule.terms"]
    assert message.startswith("rule.terms: term 2 is 501 characters") and "500" in message
    assert "10000" in errors(too_long)["rule.terms"].replace(",", "")
    assert spaced.status_code == 200, spaced.text
    assert description.status_code == 200, description.text


def test_a_term_rule_too_large_to_search_is_refused_before_it_can_send_every_batch_to_review(
    serve, own_bundle: Path
) -> None:
    """A term list the batch engine cannot compile failed every batch of 32 or more listings (all sent to
    review, fail safe) once in force; now the change is a 422 on `rule.terms`, and scoring is untouched."""
    many = [f"term{i}" for i in range(1_001)]
    huge = [f"{i}" + "x" * 4_000 for i in range(400)]  # within each field's length, past what RE2 compiles
    with serve(bundle=str(own_bundle)) as api:
        headers = api.headers("admin")
        too_many = api.client.put(
            "/v1/policy/rules/big", json={"rule": {**REVIEW_RULE, "terms": many}, "reason": "a test"}, headers=headers
        )
        too_large = api.client.put(
            "/v1/policy/rules/big",
            json={"rule": {**REVIEW_RULE, "terms": huge, "fields": ["description"]}, "reason": "a test"},
            headers=headers,
        )
        batch = api.batch([listing_json(i) for i in range(40)]).json()["items"]

    assert "at most 1,000" in errors(too_many)["rule.terms"]
    assert "too large to match" in errors(too_large)["rule.terms"]
    assert history(api) == []
    assert all(item["fallback_reason"] is None for item in batch)


def test_a_rule_version_cannot_be_patched_it_is_the_servers(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        headers = api.headers("admin")
        added = api.client.put("/v1/policy/rules/x", json={"rule": REVIEW_RULE, "reason": "a test"}, headers=headers)
        patched = api.client.patch(
            "/v1/policy/rules/x", json={"changes": {"version": 99}, "reason": "a test"}, headers=headers
        )
        top_level = api.client.patch("/v1/policy/rules/x", json={"version": 99, "reason": "a test"}, headers=headers)
        # a PUT may carry the version of the rule as read (GET /v1/policy, a suggestion): the server's counts
        read_back = api.client.put(
            "/v1/policy/rules/x",
            json={"rule": {**REVIEW_RULE, "terms": ["fake"], "version": 1}, "reason": "a test"},
            headers=headers,
        )
        changes = history(api)

    assert added.status_code == 200, added.text
    assert errors(patched)["changes.version"].startswith("changes.version: a rule's version is the server's")
    assert "version" in errors(top_level)
    assert read_back.status_code == 200, read_back.text
    assert read_back.json()["policy"]["rules"][-1]["version"] == 2
    assert len(changes) == 2


def test_a_patch_that_changes_the_kind_drops_what_the_old_kind_read_and_strays_are_refused(
    serve, own_bundle: Path
) -> None:
    """A term rule patched into a category rule keeps no `terms` or `fields` (it would read like "the term in
    that category"); a rule sent with a field its kind does not read is a 422 naming that field."""
    with serve(bundle=str(own_bundle)) as api:
        headers = api.headers("admin")
        api.client.put("/v1/policy/rules/x", json={"rule": REVIEW_RULE, "reason": "a test"}, headers=headers)
        changes = {"kind": "category", "column": "category", "values": ["pharmacy"]}
        patched = api.client.patch("/v1/policy/rules/x", json={"changes": changes, "reason": "a test"}, headers=headers)
        stray = api.client.put(
            "/v1/policy/rules/y",
            json={"rule": {**REVIEW_RULE, "column": "category", "values": ["pharmacy"]}, "reason": "a test"},
            headers=headers,
        )
        twice = api.client.put(
            "/v1/policy",
            json={
                "rules": [{**REVIEW_RULE, "name": "dup"}, {**REVIEW_RULE, "name": "dup", "terms": ["fake"]}],
                "replace_rules": True,
                "reason": "a test",
            },
            headers=headers,
        )

    assert patched.status_code == 200, patched.text
    rule = next(r for r in patched.json()["policy"]["rules"] if r["name"] == "x")
    assert {k: rule.get(k) for k in ("kind", "column", "values", "terms", "fields")} == {
        "kind": "category",
        "column": "category",
        "values": ["pharmacy"],
        "terms": None,
        "fields": None,
    }
    assert "a term rule does not read column" in errors(stray)["rule.column"]
    assert "names another rule too" in " ".join(errors(twice).values()), twice.text


def test_a_change_that_changes_nothing_makes_no_version(serve, own_bundle: Path) -> None:
    with serve(bundle=str(own_bundle)) as api:
        headers = api.headers("admin")
        added = api.client.put("/v1/policy/rules/x", json={"rule": REVIEW_RULE, "reason": "a test"}, headers=headers)
        same_put = api.client.put("/v1/policy/rules/x", json={"rule": REVIEW_RULE, "reason": "again"}, headers=headers)
        same_patch = api.client.patch(
            "/v1/policy/rules/x",
            json={"changes": {"action": "review"}, "enabled": True, "reason": "again"},
            headers=headers,
        )
        enabled = api.client.post("/v1/policy/rules/x/enable", json={"reason": "again"}, headers=headers)
        rate = added.json()["policy"]["qa_sample_rate"]
        same_rate = api.client.put("/v1/policy", json={"qa_sample_rate": rate, "reason": "again"}, headers=headers)
        in_force = added.json()["policy"]  # the thresholds re-sent as they are: still certified
        same_thresholds = api.client.put(
            "/v1/policy",
            json={"t_pass": in_force["t_pass"], "t_block": in_force["t_block"], "reason": "a form's every field"},
            headers=headers,
        )
        changed = api.client.patch(
            "/v1/policy/rules/x", json={"changes": {"terms": ["fake"]}, "reason": "a real change"}, headers=headers
        )
        changes = history(api)

    assert added.status_code == 200 and added.json()["changed"] is True
    version = added.json()["policy"]["version"]
    for response in (same_put, same_patch, enabled, same_rate, same_thresholds):
        assert response.status_code == 200, response.text
        assert response.json()["changed"] is False
        assert response.json()["policy"]["version"] == version
    assert same_thresholds.json()["guarantee_state"] == added.json()["guarantee_state"] != "hand_set, not certified"
    assert changed.json()["changed"] is True and changed.json()["policy"]["version"] != version
    assert [c["reason"] for c in changes] == ["a real change", "a test"]
