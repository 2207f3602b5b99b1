"""Every route against no key, wrong keys and each scope: exactly the documented access, nothing more.

The access table below is the documentation; the test also fails if the service grows a route the table
does not list, so a new route cannot ship without its access being decided.
"""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from serving.keys import create_key, revoke_key
from serving.store import create_store
from tests.reliability.conftest import Service, listing

pytestmark = pytest.mark.reliability

PUBLIC, SCORE, REVIEW, READ, ADMIN = "public", "score", "review", "read", "admin"
AUDIT, SUPERVISE = "audit", "supervise"
REVIEW_OR_READ = "review or read"
QUEUE_WATCH = "review or read or supervise"
SUPERVISE_OR_READ = "supervise or read"
ANY = "score or review or read or audit or supervise"  # any valid key (admin passes every check)

ACCESS: dict[tuple[str, str], str] = {
    ("POST", "/v1/score"): SCORE,
    ("POST", "/v1/score/batch"): SCORE,
    ("GET", "/v1/queue/next"): REVIEW,
    ("GET", "/v1/queue/stats"): QUEUE_WATCH,
    ("POST", "/v1/reviews/{decision_id}"): REVIEW,
    ("GET", "/v1/review/next"): REVIEW,
    ("GET", "/v1/review/items/{decision_id}"): REVIEW,
    ("POST", "/v1/queue/{decision_id}/release"): REVIEW,
    # a review key amends its own verdicts only (the verdict here is the `review` key's; tests/serving/
    # test_decision_audit.py checks that another reviewer's is refused), a supervise key anyone's
    ("POST", "/v1/reviews/{decision_id}/corrections"): "review or supervise",
    ("GET", "/v1/decisions/{decision_id}"): AUDIT,
    ("GET", "/v1/listings/{listing_id}/history"): AUDIT,
    ("GET", "/v1/policy"): READ,
    ("GET", "/v1/policy/history"): READ,
    ("PUT", "/v1/policy"): ADMIN,
    ("PUT", "/v1/policy/rules/{name}"): ADMIN,
    ("PATCH", "/v1/policy/rules/{name}"): ADMIN,
    ("DELETE", "/v1/policy/rules/{name}"): ADMIN,
    ("POST", "/v1/policy/rules/{name}/disable"): ADMIN,
    ("POST", "/v1/policy/rules/{name}/enable"): ADMIN,
    ("POST", "/v1/admin/reload"): ADMIN,
    ("GET", "/v1/models/history"): READ,
    ("GET", "/v1/shadow"): READ,
    ("GET", "/v1/shadow/report"): READ,
    ("PUT", "/v1/admin/shadow"): ADMIN,
    ("DELETE", "/v1/admin/shadow"): ADMIN,
    ("GET", "/v1/admin/keys"): ADMIN,
    ("GET", "/v1/admin/keys/history"): ADMIN,
    ("POST", "/v1/admin/keys"): ADMIN,
    ("POST", "/v1/admin/keys/{name}/revoke"): ADMIN,
    ("POST", "/v1/admin/keys/{name}/rotate"): ADMIN,
    ("GET", "/v1/simulate"): READ,
    ("POST", "/v1/simulate"): READ,
    ("GET", "/v1/simulate/curve"): READ,
    ("GET", "/v1/simulate/context"): READ,
    ("GET", "/v1/monitor"): READ,
    ("POST", "/v1/rules/backtest"): READ,
    ("GET", "/v1/rules/suggestions"): READ,
    ("GET", "/v1/rules/stats"): READ,
    ("GET", "/v1/listings/{listing_id}/similar"): REVIEW_OR_READ,
    ("GET", "/v1/keys/me"): ANY,
    ("POST", "/v1/gold"): SUPERVISE,
    ("GET", "/v1/gold"): SUPERVISE,
    ("DELETE", "/v1/gold/{gold_id}"): SUPERVISE,
    ("GET", "/v1/reviewers/stats"): SUPERVISE_OR_READ,
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
}
PAGES = [
    "/simulator",
    "/simulator/simulator.js",
    "/simulator/simulator.css",
    "/simulator/keyform.js",
    "/rules",
    "/rules/rules.js",
    "/rules/rules.css",
    "/review",
    "/review/review.js",
    "/review/review.css",
    "/audit",
    "/audit/audit.js",
    "/audit/audit.css",
    "/supervisor",
    "/supervisor/supervisor.js",
    "/supervisor/supervisor.css",
    "/docs",
    "/openapi.json",
]
# Answers other than 200 that still grant access: suggestions answer 202 while they are being mined
GRANTED = {
    ("POST", "/v1/admin/keys"): {201},
    ("POST", "/v1/gold"): {201},
    ("GET", "/v1/rules/suggestions"): {200, 202},
    ("POST", "/v1/reviews/{decision_id}/corrections"): {201},
}
SCOPED_KEYS = ("score", "review", "read", "audit", "supervise", "admin")
_ids = itertools.count(10_000)


def allowed(required: str, key: str) -> bool:
    return required == PUBLIC or key == "admin" or key in required.split(" or ")


def queued_decision(service: Service) -> str:
    """A fresh decision in the review queue (a regulated category always goes to human review)."""
    response = httpx.post(
        service.url + "/v1/score",
        json=listing(next(_ids), category="health"),
        headers=service.headers("score"),
        timeout=30,
    )
    assert response.status_code == 200 and response.json()["decision"] == "human_review", response.text
    return str(response.json()["decision_id"])


CORRECTION = {"verdict": "reject", "violation_reason": "counterfeit", "reason": "access test"}


def reviewed_decision(service: Service) -> str:
    """A fresh decision approved by the `review` key's reviewer (the key named "review")."""
    decision_id = queued_decision(service)
    with create_store(service.database_url, group_commit=False) as store:
        store.record_review(decision_id, "review", "approve")
    return decision_id


def scored_listing(service: Service) -> str:
    """The id of a listing the service has just scored (and logged)."""
    body = listing(next(_ids))
    response = httpx.post(service.url + "/v1/score", json=body, headers=service.headers("score"), timeout=30)
    assert response.status_code == 200, response.text
    return str(body["listing_id"])


RULE = {"action": "review", "kind": "term", "terms": ["access-test"], "fields": ["title"]}


def rule_change(service: Service, method: str) -> tuple[str, Any]:
    """A fresh rule's path and the body for `method`; for PATCH and DELETE an admin puts the rule first."""
    path = f"/v1/policy/rules/access-test-{next(_ids)}"
    if method == "PUT":
        return path, {"rule": RULE, "reason": "access test"}
    put = httpx.put(
        service.url + path, json={"rule": RULE, "reason": "access test"}, headers=service.headers("admin"), timeout=30
    )
    assert put.status_code == 200, put.text
    if method == "PATCH":
        return path, {"changes": {"terms": ["access-test-2"]}, "reason": "access test"}
    if method == "POST":  # disable / enable
        return path, {"reason": "access test"}
    return path + "?reason=access+test", None


def held_decision(service: Service, headers: dict[str, str]) -> str:
    """A queued decision leased to the key in `headers` (a fresh queued one when the key cannot claim)."""
    queued = queued_decision(service)
    claimed = httpx.get(service.url + "/v1/review/next", headers=headers, timeout=30)
    item = claimed.json().get("item") if claimed.status_code == 200 else None
    return str(item["decision_id"]) if item else queued


def gold_request(service: Service, method: str, headers: dict[str, str]) -> httpx.Response:
    """Add a gold item (POST) or retire one an admin added (DELETE) with `headers`; whatever the answer,
    the gold item ends retired, so claims elsewhere in the shared service never receive it."""
    admin = service.headers("admin")
    body = {"decision_id": queued_decision(service), "expected_verdict": "approve"}
    if method == "POST":
        response = httpx.post(service.url + "/v1/gold", json=body, headers=headers, timeout=30)
        gold_id = response.json()["gold_id"] if response.status_code == 201 else None
    else:
        added = httpx.post(service.url + "/v1/gold", json=body, headers=admin, timeout=30)
        assert added.status_code == 201, added.text
        gold_id = added.json()["gold_id"]
        response = httpx.delete(f"{service.url}/v1/gold/{gold_id}", headers=headers, timeout=30)
    if gold_id is not None:
        httpx.delete(f"{service.url}/v1/gold/{gold_id}", headers=admin, timeout=30)  # 404 once retired
    return response


def send(service: Service, method: str, path: str, headers: dict[str, str]) -> httpx.Response:
    body: Any = None
    if path.startswith("/v1/gold") and method != "GET":
        return gold_request(service, method, headers)
    if path == "/v1/score":
        body = listing(next(_ids))
    elif path == "/v1/score/batch":
        body = {"items": [listing(next(_ids))]}
    elif path == "/v1/reviews/{decision_id}":
        path, body = f"/v1/reviews/{queued_decision(service)}", {"verdict": "approve"}
    elif path in ("/v1/review/items/{decision_id}", "/v1/queue/{decision_id}/release"):
        path = path.replace("{decision_id}", held_decision(service, headers))
    elif (method, path) in (("PUT", "/v1/policy"), ("POST", "/v1/simulate")):
        body = {"reason": "access test"} if method == "PUT" else {}
    elif path == "/v1/admin/keys" and method == "POST":
        body = {"name": f"access-test-{next(_ids)}", "scopes": ["score"]}
    elif (method, path) == ("PUT", "/v1/admin/shadow"):  # the service's own bundle as its shadow
        body = {"bundle": str(service.bundle), "reason": "access test"}
    elif (method, path) == ("DELETE", "/v1/admin/shadow"):
        path += "?reason=access+test"
    elif (method, path) == ("POST", "/v1/rules/backtest"):
        body = {"remove": "regulated_category"}
    elif path == "/v1/policy/rules/{name}":
        path, body = rule_change(service, method)
    elif path.startswith("/v1/policy/rules/{name}/"):  # disable / enable
        suffix = path.rsplit("/", 1)[1]
        path, body = rule_change(service, "POST")
        path += f"/{suffix}"
    elif path == "/v1/reviews/{decision_id}/corrections":
        path, body = f"/v1/reviews/{reviewed_decision(service)}/corrections", CORRECTION
    elif path == "/v1/decisions/{decision_id}":
        path = path.replace("{decision_id}", queued_decision(service))
    elif path.startswith("/v1/listings/{listing_id}/"):  # similar, history
        path = path.replace("{listing_id}", scored_listing(service))
    elif path.startswith("/v1/admin/keys/{name}"):
        with create_store(service.database_url, group_commit=False) as store:  # a throwaway key to act on
            name = f"access-test-{next(_ids)}"
            create_key(store, name, "score")
        path = path.replace("{name}", name)
    return httpx.request(method, service.url + path, json=body, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def credentials(shared_service: Service) -> dict[str, dict[str, str]]:
    """Header sets: none, malformed, wrong secret for a real key id, revoked key, X-API-Key form, each scope."""
    with create_store(shared_service.database_url, group_commit=False) as store:
        revoked = create_key(store, "revoked", "admin")
        revoke_key(store, "revoked")
    real = shared_service.tokens["admin"]
    wrong_secret = real[: real.rindex("_") + 1] + "A" * 43 if real.count("_") >= 2 else real + "x"
    return {
        "no key": {},
        "malformed key": {"Authorization": "Bearer not-a-key"},
        "wrong secret": {"Authorization": f"Bearer {wrong_secret}"},
        "revoked key": {"Authorization": f"Bearer {revoked}"},
        "basic auth": {"Authorization": "Basic dXNlcjpwYXNz"},
        **{scope: shared_service.headers(scope) for scope in SCOPED_KEYS},
        "score via X-API-Key": {"X-API-Key": shared_service.tokens["score"]},
    }


def test_the_access_table_covers_every_route(shared_service: Service) -> None:
    spec = httpx.get(shared_service.url + "/openapi.json", timeout=10).json()
    routes = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert routes == set(ACCESS)


def test_every_route_grants_exactly_the_documented_access(shared_service: Service, credentials, report) -> None:
    mismatches: list[str] = []
    requests = 0
    for (method, path), required in ACCESS.items():
        for name, headers in credentials.items():
            key = {"score via X-API-Key": "score"}.get(name, name)
            if required == PUBLIC:
                expected = {200}
            elif key not in SCOPED_KEYS:
                expected = {401}
            elif allowed(required, key):
                expected = GRANTED.get((method, path), {200})
            else:
                expected = {403}
            response = send(shared_service, method, path, headers)
            requests += 1
            if response.status_code not in expected:
                mismatches.append(
                    f"{method} {path} with {name}: {response.status_code} (expected {expected}) {response.text[:200]}"
                )
            if response.status_code == 401:
                assert response.headers.get("www-authenticate", "").startswith("Bearer")
    for page in PAGES:
        for name, headers in credentials.items():
            response = httpx.get(shared_service.url + page, headers=headers, timeout=10)
            requests += 1
            if response.status_code != 200:
                mismatches.append(f"GET {page} with {name}: {response.status_code}")
    report(routes=len(ACCESS) + len(PAGES), credentials=len(credentials), requests=requests, mismatches=len(mismatches))
    assert mismatches == []
