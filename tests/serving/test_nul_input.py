"""A NUL character in a request: PostgreSQL's text cannot hold one, so it is a 422 naming the field or
parameter, on both databases alike, never a 500; and a NUL that reaches the decision log anyway is never
acknowledged as a decision."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from serving.api.score import bodies_of
from serving.store import DecisionRecord
from tests.serving.conftest import Api, listing_json, postgres_schema

DATABASES = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
NUL_MSG = "must not contain a NUL character (\\u0000)"


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "postgresql":
        with postgres_schema() as url:
            yield url
    else:
        yield f"sqlite:///{tmp_path / 'nul.db'}"


@pytest.fixture
def api(serve: Callable[..., AbstractContextManager[Api]], database_url: str) -> Iterator[Api]:
    with serve(database_url=database_url) as api:
        yield api


def _refused(response: Any, *locs: list[Any]) -> None:
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert [e["loc"] for e in detail] == list(locs)
    assert all(e["msg"] == NUL_MSG and e["type"] == "value_error" for e in detail)


def test_a_nul_in_a_body_field_is_a_422_naming_the_field(api: Api) -> None:
    decided = api.score(listing_json(1))
    assert decided.status_code == 200, decided.text
    decision_id = decided.json()["decision_id"]

    _refused(api.score(listing_json(2, listing_id="nul\u0000id")), ["body", "listing_id"])
    _refused(api.score(listing_json(3, title="a\u0000b", brand="\u0000")), ["body", "title"], ["body", "brand"])
    _refused(api.score(listing_json(4, request_id="a\u0000b")), ["body", "request_id"])
    _refused(api.batch([listing_json(5), listing_json(6, market="D\u0000E")]), ["body", "items", 1, "market"])
    review = {"verdict": "approve", "note": "a\u0000b"}
    _refused(api.post(f"/v1/reviews/{decision_id}", review, "review"), ["body", "note"])
    policy = api.client.put("/v1/policy", json={"reason": "why\u0000not"}, headers=api.headers("admin"))
    _refused(policy, ["body", "reason"])
    key = {"name": "k\u0000x", "scopes": ["read"]}
    _refused(api.post("/v1/admin/keys", key, "admin"), ["body", "name"])

    # nothing of the refused requests was stored; the service stays ready and serves normal requests
    assert api.store.count_decisions() == 1
    assert api.client.get("/readyz").status_code == 200
    assert api.score(listing_json(7)).status_code == 200
    created = api.post("/v1/admin/keys", {"name": "k-x", "scopes": ["read"]}, "admin")
    assert created.status_code == 201, created.text
    audit = api.client.get(f"/v1/decisions/{decision_id}", headers=api.headers("audit"))
    assert audit.status_code == 200 and audit.json()["listing_id"] == "L-1"


def test_a_nul_in_a_path_or_query_parameter_is_a_422_naming_it(api: Api) -> None:
    audit, monitor = api.headers("audit"), api.headers("read")
    _refused(api.client.get("/v1/decisions/a%00b", headers=audit), ["path", "decision_id"])
    _refused(api.client.get("/v1/listings/a%00b/history", headers=audit), ["path", "listing_id"])
    _refused(api.client.get("/v1/listings/a%00b/similar", headers=monitor), ["path", "listing_id"])
    _refused(api.client.get("/v1/queue/next", params={"n": "1\u0000"}, headers=api.headers("review")), ["query", "n"])
    _refused(api.post("/v1/reviews/a%00b", {"verdict": "approve"}, "review"), ["path", "decision_id"])
    both = api.post("/v1/reviews/a%00b", {"verdict": "approve", "note": "\u0000"}, "review")
    _refused(both, ["path", "decision_id"], ["body", "note"])
    assert api.client.get("/v1/decisions/unknown", headers=audit).status_code == 404  # no NUL: looked up


def test_only_a_real_nul_is_refused_however_the_json_writes_it(
    serve: Callable[..., AbstractContextManager[Api]],
) -> None:
    with serve() as api:
        headers = {**api.headers("admin"), "content-type": "application/json"}
        escaped = api.post("/v1/admin/keys", {"name": "back\\u0000slash", "scopes": ["read"]}, "admin")
        assert escaped.status_code == 201 and escaped.json()["key"]["name"] == "back\\u0000slash"
        utf16 = json.dumps({"name": "k\u0000x", "scopes": ["read"]}).encode("utf-16")  # the stdlib decodes it
        _refused(api.client.post("/v1/admin/keys", content=utf16, headers=headers), ["body", "name"])
        keyed = {"reason": "segments by market", "segments": {"D\u0000E": [0.1, 0.9]}}
        _refused(api.client.put("/v1/policy", json=keyed, headers=headers), ["body", "segments", "D\\u0000E", "[key]"])
        raw = b'{"name": "k\x00x", "scopes": ["read"]}'  # a raw NUL byte is not JSON
        invalid = api.client.post("/v1/admin/keys", content=raw, headers=headers)
        assert invalid.status_code == 422 and invalid.json()["detail"][0]["type"] == "json_invalid"


@pytest.mark.postgres
def test_a_decision_postgresql_cannot_log_is_never_acknowledged(
    serve: Callable[..., AbstractContextManager[Api]],
) -> None:
    """Past the API's check (a NUL in a listing id reaching the scorer directly), PostgreSQL refuses the row:
    that request fails, with no decision answered or stored; the listings decided with it are logged and
    answered, and the decision log stays ready."""
    with postgres_schema() as url, serve(database_url=url) as api:
        state = api.app.state
        bodies = bodies_of(state.engine, state.settings)

        def listing(listing_id: str) -> dict[str, Any]:
            fields = bodies.fields(bodies.score.model_validate(listing_json(listing_id=listing_id)))
            fields.pop("request_id")
            return fields

        async def decide_together() -> list[DecisionRecord | BaseException]:
            bad, good = listing("nul\u0000id"), listing("good")
            decisions = [state.scorer.decide_one(state.engine, one, None) for one in (bad, good)]
            return await asyncio.gather(*decisions, return_exceptions=True)

        refused, decided = api.client.portal.call(decide_together)  # type: ignore[union-attr]
        assert isinstance(refused, Exception) and "NUL" in str(refused)
        assert isinstance(decided, DecisionRecord) and decided.listing_id == "good"
        assert [r.listing_id for r in api.store.decisions_since()] == ["good"]
        assert api.store.write_health.ok and api.client.get("/readyz").status_code == 200
