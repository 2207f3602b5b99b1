"""A batch's items are decided each on its own: one item never changes another's decision."""

from __future__ import annotations

from tests.serving.conftest import Api, listing_json

PASS_ALL = {
    "t_pass": 0.99,
    "t_block": 0.999,
    "tier_pass": {"severe": 0.99, "minor": 0.99},
    "reason": "test: pass freely",
}
BENIGN = listing_json(1, listing_id="L-dup")
PROHIBITED = listing_json(2, listing_id="L-dup", title="Switchblade knife, spring assisted")


def _pass_freely(api: Api) -> None:
    response = api.client.put("/v1/policy", json=PASS_ALL, headers=api.headers("admin"))
    assert response.status_code == 200, response.text


def test_a_listing_id_repeated_in_a_batch_with_a_request_id_is_refused(serve) -> None:
    """The log keeps one decision per (key, listing id, request_id): two items sharing an id under one
    request_id were both answered with the first one's decision (the switchblade auto-passed, unscored
    and unlogged). Now the batch is refused with a 422 naming the repeated id; nothing is decided."""
    with serve() as api:
        _pass_freely(api)
        response = api.batch([BENIGN, PROHIBITED], request_id="batch-1")

        assert response.status_code == 422, response.text
        (error,) = response.json()["detail"]
        assert error["field"] == "items.1.listing_id" and "item 0" in error["msg"]
        assert api.store.count_decisions() == 0


def test_without_a_request_id_items_sharing_a_listing_id_are_decided_each_on_its_own(serve) -> None:
    with serve() as api:
        _pass_freely(api)
        response = api.batch([BENIGN, PROHIBITED])

        assert response.status_code == 200, response.text
        first, second = response.json()["items"]
        assert first["decision"] == "auto_pass"
        assert second["decision"] == "human_review" and "prohibited_term" in second["rules_matched"]
        logged = api.store.get_decision(second["decision_id"])
        assert logged is not None and logged.listing["title"] == PROHIBITED["title"]
