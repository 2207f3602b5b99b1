"""Bad input never breaks the service: generated (schemathesis, from the service's own OpenAPI) and by hand.

No request may get a 5xx, every response must match what the OpenAPI document promises for it, and the
service must still be healthy afterwards.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.reliability.conftest import Service, listing

pytestmark = pytest.mark.reliability

MAX_EXAMPLES = 10  # per operation and mode (positive, negative): bounded for CI (about 1,400 requests in all)


CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]


def _fuzz(
    operation: Any, mode: GenerationMode, headers: dict[str, str], statuses: dict[int, int], failures: list[str]
) -> None:
    """Send MAX_EXAMPLES generated cases of one operation; count statuses, collect failing checks."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    def call(case: Any) -> None:
        try:
            response = case.call_and_validate(headers=headers, timeout=30, checks=CHECKS)
        except Exception as exc:  # noqa: BLE001 - every failing case is collected, then reported
            failures.append(f"{operation.label} [{mode.value}]: {type(exc).__name__}: {str(exc)[:600]}")
            return
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

    with contextlib.suppress(Unsatisfiable):  # nothing to make invalid (e.g. negative cases of GET /healthz)
        call()


def test_generated_requests_get_no_5xx_and_match_the_openapi(shared_service: Service, report) -> None:
    """Every operation of the live service's /openapi.json, positive and negative cases, with an admin key.

    Hypothesis drives schemathesis' strategies directly (no pytest plugin: its lazy-fixture path reads a
    pytest-internal attribute that pytest 9 no longer has). Derandomized, so CI runs the same cases.
    """
    schema = schemathesis.openapi.from_url(f"{shared_service.url}/openapi.json")
    headers = shared_service.headers("admin")
    statuses: dict[int, int] = {}
    failures: list[str] = []
    results = list(schema.get_all_operations())
    operations = [result.ok() for result in results if isinstance(result, Ok)]
    assert len(operations) == len(results), [result for result in results if not isinstance(result, Ok)]
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz(operation, mode, headers, statuses, failures)
    health = httpx.get(f"{shared_service.url}/healthz", timeout=5)
    ready = httpx.get(f"{shared_service.url}/readyz", timeout=5)
    report(
        operations=len(operations),
        generated_requests=sum(statuses.values()) + len(failures),
        statuses=dict(sorted(statuses.items())),
        failing_cases=len(failures),
        server_errors=sum(n for s, n in statuses.items() if s >= 500),
    )
    assert failures == [], "\n".join(failures[:20])
    assert len(operations) >= 10  # the whole API, not an empty document
    assert health.status_code == 200 and ready.status_code == 200


# --- by hand --------------------------------------------------------------------------------------


def _raw(
    service: Service, body: bytes, content_type: str = "application/json", path: str = "/v1/score", method: str = "POST"
) -> httpx.Response:
    headers = {**service.headers("admin"), "Content-Type": content_type}
    return httpx.request(method, service.url + path, content=body, headers=headers, timeout=60)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _deep(levels: int) -> bytes:
    return b'{"listing_id": ' + b"[" * levels + b"]" * levels + b"}"


def _chunks(total: int, size: int = 1 << 20) -> Iterator[bytes]:
    for _ in range(total // size):
        yield b" " * size


TEN_MB = 10 * 1024 * 1024

# (name, request kwargs for _raw, expected status codes)
CASES: list[tuple[str, dict[str, Any], set[int]]] = [
    ("malformed JSON", {"body": b'{"listing_id": "L1", '}, {422}),
    ("not JSON at all", {"body": b"\x00\xff\xfe garbage"}, {400, 422}),
    ("empty body", {"body": b""}, {422}),
    ("JSON array instead of object", {"body": b"[1, 2, 3]"}, {422}),
    ("JSON null", {"body": b"null"}, {422}),
    ("wrong content type", {"body": _json(listing(1)), "content_type": "text/plain"}, {415, 422}),
    ("price is a string", {"body": _json(listing(1, price="cheap"))}, {422}),
    ("listing_id is a number", {"body": _json(listing(1, listing_id=12345))}, {422}),
    ("image_count is a float", {"body": _json(listing(1, image_count=2.5))}, {422}),
    ("has_certificate out of range", {"body": _json(listing(1, has_certificate=7))}, {422}),
    ("negative price", {"body": _json(listing(1, price=-1))}, {422}),
    ("unknown field", {"body": _json(listing(1, colour="red"))}, {422}),
    ("missing required fields", {"body": _json({"listing_id": "L1"})}, {422}),
    ("unparsable created_at", {"body": _json(listing(1, created_at="yesterday"))}, {422}),
    ("created_at far in the future", {"body": _json(listing(1, created_at="2999-01-01T00:00:00Z"))}, {422}),
    ("created_at before 2000", {"body": _json(listing(1, created_at="1970-01-01T00:00:00Z"))}, {422}),
    (
        "price NaN literal",
        {"body": b'{"listing_id":"L1","merchant_id":"M","title":"t","category":"c","market":"DE","price":NaN}'},
        {422},
    ),
    (
        "price Infinity literal",
        {"body": b'{"listing_id":"L1","merchant_id":"M","title":"t","category":"c","market":"DE","price":Infinity}'},
        {422},
    ),
    (
        "price 1e999 (overflows to inf)",
        {"body": b'{"listing_id":"L1","merchant_id":"M","title":"t","category":"c","market":"DE","price":1e999}'},
        {422},
    ),
    ("price as the string NaN", {"body": _json(listing(1, price="NaN"))}, {422}),
    ("title 1.5 MB (over max_length, under the body limit)", {"body": _json(listing(1, title="x" * 1_500_000))}, {422}),
    ("description 10,001 characters", {"body": _json(listing(1, description="y" * 10_001))}, {422}),
    ("nesting 50 deep", {"body": _deep(50)}, {422}),
    ("nesting 5,000 deep", {"body": _deep(5_000)}, {400, 422}),
    ("nesting 500,000 deep (1 MB)", {"body": _deep(500_000)}, {400, 422}),
    (
        "unicode and emoji",
        {
            "body": _json(
                listing(
                    1,
                    title="Ünïcödé 🔥🛍️ 中文 العربية",
                    brand="Ⓡ™",
                    description="zero\u200bwidth, RTL \u202e inside",
                )
            )
        },
        {200},
    ),
    # PostgreSQL's text holds no NUL: refused on every store alike, naming the field (test_nul_input.py)
    ("a NUL inside a text", {"body": _json(listing(1, description="NUL \u0000 inside"))}, {422}),
    (
        "lone surrogate in a string",
        {
            "body": b'{"listing_id":"L-sur","merchant_id":"M","title":"bad \\ud800 half",'
            b'"category":"fashion","market":"DE","price":3}'
        },
        {200, 422},
    ),
    (
        "invalid UTF-8 bytes in a string",
        {
            "body": b'{"listing_id":"L-utf","merchant_id":"M","title":"\xc3\x28",'
            b'"category":"fashion","market":"DE","price":3}'
        },
        {400, 422},
    ),
    ("10 MB body with Content-Length", {"body": b" " * TEN_MB}, {413}),
    ("10 MB batch body", {"body": b'{"items": [' + b" " * TEN_MB + b"]}", "path": "/v1/score/batch"}, {413}),
    ("empty batch", {"body": _json({"items": []}), "path": "/v1/score/batch"}, {422}),
    (
        "batch over the limit (1,001 items)",
        {"body": _json({"items": [listing(i) for i in range(1001)]}), "path": "/v1/score/batch"},
        {422},
    ),
    ("batch items not objects", {"body": _json({"items": [1, "two", None]}), "path": "/v1/score/batch"}, {422}),
    (
        "batch with one bad item",
        {"body": _json({"items": [listing(1), listing(2, price="x")]}), "path": "/v1/score/batch"},
        {422},
    ),
    (
        "review with a NaN review_seconds",
        {"body": b'{"verdict":"approve","review_seconds":NaN}', "path": "/v1/reviews/unknown-id"},
        {422},
    ),
    (
        "policy with t_block below t_pass",
        {"body": _json({"t_pass": 0.9, "t_block": 0.1}), "path": "/v1/policy", "method": "PUT"},
        {422},
    ),
    ("policy with a NaN threshold", {"body": b'{"t_pass": NaN}', "path": "/v1/policy", "method": "PUT"}, {422}),
    (
        "policy rule that is not a rule",
        {"body": _json({"rules": [{"kind": "nonsense", "x": [1, {}]}]}), "path": "/v1/policy", "method": "PUT"},
        {422},
    ),
]


@pytest.mark.parametrize(("name", "request_kwargs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_cleanly(
    shared_service: Service, name: str, request_kwargs: dict[str, Any], expected: set[int], report
) -> None:
    kwargs = dict(request_kwargs)
    response = _raw(shared_service, kwargs.pop("body"), **kwargs)
    report(status=response.status_code)
    assert response.status_code < 500, response.text[:500]
    assert response.status_code in expected, response.text[:500]
    if response.status_code == 422:
        assert response.headers["content-type"].startswith("application/json")
        assert "detail" in response.json()
    assert httpx.get(f"{shared_service.url}/healthz", timeout=5).status_code == 200


def test_a_10_mb_body_streamed_without_content_length_gets_413(shared_service: Service, report) -> None:
    headers = {**shared_service.headers("admin"), "Content-Type": "application/json"}
    try:
        response = httpx.post(shared_service.url + "/v1/score", content=_chunks(TEN_MB), headers=headers, timeout=60)
        status = response.status_code
    except httpx.RemoteProtocolError:  # the server answered 413 and closed before the upload finished
        status = 413
    report(status=status)
    assert status == 413


def _raw_socket(service: Service, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        sock.sendall(request)
        return sock.recv(65536)


def test_a_malformed_content_length_gets_400(shared_service: Service, report) -> None:
    token = shared_service.tokens["admin"]
    answer = _raw_socket(
        shared_service,
        b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Authorization: Bearer " + token.encode() + b"\r\nContent-Length: abc\r\n\r\n{}",
    )
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
    report(status=status)
    assert status == 400


def test_a_client_that_stops_mid_body_does_not_hurt_the_service(shared_service: Service, report) -> None:
    with socket.create_connection(("127.0.0.1", shared_service.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"listing_id": '
        )
    response = httpx.post(
        shared_service.url + "/v1/score", json=listing(99), headers=shared_service.headers("score"), timeout=10
    )
    report(status_after=response.status_code)
    assert response.status_code == 200


@pytest.mark.parametrize("path", ["/v1/score", "/v1/score/batch", "/v1/reviews/some-decision", "/v1/admin/reload"])
def test_an_unauthenticated_body_is_refused_before_it_is_sent(shared_service: Service, report, path: str) -> None:
    """Headers only, announcing 1.9 MB (under the body limit): the 401 comes at once, no byte of body read."""
    with socket.create_connection(("127.0.0.1", shared_service.port), timeout=5) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Content-Length: 1900000\r\n\r\n".encode()
        )
        answer = sock.recv(65536)  # a server waiting for the body would time out here
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
    report(path=path, status=status)
    assert status == 401
