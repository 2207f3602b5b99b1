"""Authentication comes before the body: a request without a valid key is refused without reading it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.serving.conftest import listing_json

BODY_ROUTES = [
    "/v1/score",
    "/v1/score/batch",
    "/v1/reviews/some-decision",
    "/v1/admin/reload",
    "/v1/policy",
    "/v1/simulate",
]


class Upload:
    """A streamed request body that records whether anyone started reading it."""

    def __init__(self, megabytes: int = 1) -> None:
        self.megabytes = megabytes
        self.consumed = False

    def __iter__(self) -> Iterator[bytes]:
        self.consumed = True
        for _ in range(self.megabytes):
            yield b" " * (1 << 20)


@pytest.mark.parametrize(
    "credentials",
    [{}, {"Authorization": "Bearer trg_000000000000_not-a-key"}, {"X-API-Key": "nope"}, {"Authorization": "Basic x"}],
    ids=["no-key", "unknown-bearer", "bad-x-api-key", "not-bearer"],
)
def test_a_request_without_a_valid_key_is_refused_before_its_body_is_read(serve, credentials: dict[str, str]) -> None:
    """Every operation that takes a body and a key, as the OpenAPI document lists them."""
    with serve() as api:
        document = api.client.get("/openapi.json").json()
        operations = [
            (method.upper(), path.replace("{decision_id}", "some-decision"))
            for path, item in document["paths"].items()
            for method, operation in item.items()
            if "requestBody" in operation and operation.get("security")
        ]
        assert set(BODY_ROUTES) <= {path for _, path in operations}
        for method, path in operations:
            upload = Upload()
            headers = {"Content-Type": "application/json", "Content-Length": str(1 << 20), **credentials}
            response = api.client.request(method, path, content=upload, headers=headers)

            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["WWW-Authenticate"] == "Bearer"
            assert "API key" in response.json()["detail"]
            assert not upload.consumed, (method, path)


def test_a_huge_declared_body_without_a_key_gets_401_not_413(serve) -> None:
    upload = Upload()
    with serve(max_body_bytes=1_024) as api:
        headers = {"Content-Type": "application/json", "Content-Length": str(10**12)}
        response = api.client.post("/v1/score/batch", content=upload, headers=headers)
    assert response.status_code == 401 and not upload.consumed


def test_with_a_valid_key_the_body_is_read_and_limits_still_apply(serve) -> None:
    with serve(max_body_bytes=4_096) as api:
        assert api.score(listing_json(1)).status_code == 200
        too_large = api.post("/v1/score/batch", {"items": [listing_json(i) for i in range(100)]})
        assert too_large.status_code == 413
        review_key = api.post("/v1/reviews/unknown", {"verdict": "approve"}, scope="review")
        assert review_key.status_code == 404  # authenticated, body parsed, the decision is unknown
        wrong_scope = api.post("/v1/reviews/unknown", {"verdict": "approve"}, scope="score")
        assert wrong_scope.status_code == 403  # the scope check stays with the route


def test_routes_without_keys_are_not_gated(serve) -> None:
    with serve() as api:
        assert api.client.post("/healthz", content=b"{}").status_code == 405  # no key asked: the route answers
        assert api.client.get("/readyz").status_code == 200
