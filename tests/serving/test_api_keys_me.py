"""`GET /v1/keys/me`: a key learns its own name and scopes (what the simulator page asks before offering
"apply"), never its secret; without a valid key, 401."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager

from tests.serving.conftest import Api


def test_a_key_sees_its_own_scopes_and_no_secret(serve: Callable[..., AbstractContextManager[Api]]) -> None:
    with serve() as api:
        for scope in ("score", "admin"):
            response = api.client.get("/v1/keys/me", headers=api.headers(scope))
            assert response.status_code == 200
            body = response.json()
            assert body["name"] == f"{scope}-key" and body["scopes"] == [scope]
            assert api.tokens[scope] not in response.text
        both = api.client.get("/v1/keys/me", headers=api.key("two", "score,review")).json()
        assert both["scopes"] == ["review", "score"]


def test_no_key_or_a_wrong_key_is_refused(serve: Callable[..., AbstractContextManager[Api]]) -> None:
    with serve() as api:
        assert api.client.get("/v1/keys/me").status_code == 401
        assert api.client.get("/v1/keys/me", headers={"Authorization": "Bearer nope"}).status_code == 401
