"""ASGI middleware: authentication before the body is read, request body limit (before any parsing), NUL
characters refused wherever a request carries text, and per-request metrics + JSON access log."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

import orjson
from starlette.datastructures import QueryParams
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.api.errors import validation_detail
from serving.metrics import Metrics

access_log = logging.getLogger("serving.access")


async def _send_json(
    send: Send, status: int, body: dict[str, Any], extra: Mapping[str, str] | None = None, *, close: bool = True
) -> None:
    payload = orjson.dumps(body)
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *([(b"connection", b"close")] if close else []),  # the unread rest of the body is not waited for
        *((name.lower().encode(), value.encode()) for name, value in (extra or {}).items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


class AuthenticateFirstMiddleware:
    """Refuse a request that carries a body but no valid credentials before reading any of it.

    `check(scope)` decides from the headers alone and returns the refusal (an HTTPException) or None.
    Without this, a client with no key could make the service buffer up to `max_body_bytes` per request.
    """

    def __init__(self, app: ASGIApp, check: Callable[[Scope], Awaitable[HTTPException | None]]) -> None:
        self.app = app
        self.check = check

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _may_have_body(scope):
            refusal = await self.check(scope)
            if refusal is not None:
                await _send_json(send, refusal.status_code, {"detail": refusal.detail}, refusal.headers)
                return
        await self.app(scope, receive, send)


def _may_have_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if (name == b"content-length" and value != b"0") or name == b"transfer-encoding":
            return True
    return False


class BodyLimitMiddleware:
    """Refuse bodies over `max_bytes` with 413: by Content-Length up front, else while they stream in.

    The body is read here, before the app parses JSON, and handed on in one piece.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared == -1:
            await _send_json(send, 400, {"detail": "Content-Length header is not a non-negative integer"})
            return
        if declared is not None and declared > self.max_bytes:
            await self._too_large(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        await self.app(scope, replaying(b"".join(chunks), receive), send)

    async def _too_large(self, send: Send) -> None:
        await _send_json(send, 413, {"detail": f"request body is larger than {self.max_bytes} bytes"})


def replaying(body: bytes, receive: Receive) -> Receive:
    """A receive that gives the app the body a middleware has read, whole, then the client's messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed:
            return await receive()
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _content_length(scope: Scope) -> int | None:
    """The declared length; None if absent; -1 if malformed."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            return int(value) if value.isdigit() else -1
    return None


NUL = "\x00"
_MAX_NUL_ERRORS = 50  # a body of NULs is named by its first few, not by an answer as large as itself


class RefuseNulMiddleware:
    """A 422 naming every path parameter, query parameter and JSON body field (or key) with a NUL character.

    PostgreSQL's text cannot hold NUL: let through, it fails the statement, and a listing id with one could
    never be logged. Refusing it here keeps both databases alike. The cost is a scan of the body's bytes:
    `\\u0000` is JSON's only way to write NUL (a raw NUL byte is invalid JSON, or JSON in UTF-16/32, which
    the standard library decodes); the body is parsed and walked only when the scan hits. The answer has
    FastAPI's 422 shape (`serving.api.errors`). Sits inside `BodyLimitMiddleware`, which has read the body.
    """

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes  # to name a path parameter with a NUL

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = await _whole_body(receive)
        if body is None:  # the client went away
            return
        errors = [*self._in_path(scope), *_in_query(scope), *_in_body(body)][:_MAX_NUL_ERRORS]
        if errors:
            await _send_json(send, 422, {"detail": validation_detail(errors)}, close=False)
            return
        await self.app(scope, replaying(body, receive), send)

    def _in_path(self, scope: Scope) -> Iterator[dict[str, Any]]:
        if NUL not in scope["path"]:
            return
        for route in self.routes:
            match, child = route.matches(scope)
            if match != Match.NONE:
                for name, value in child.get("path_params", {}).items():
                    if isinstance(value, str) and NUL in value:
                        yield _nul_error(("path", name))
                return


async def _whole_body(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _in_query(scope: Scope) -> Iterator[dict[str, Any]]:
    query: bytes = scope.get("query_string", b"")
    if b"%00" not in query and b"\x00" not in query:
        return
    for name, value in QueryParams(query).multi_items():
        if NUL in name or NUL in value:
            yield _nul_error(("query", _shown(name)))


def _in_body(body: bytes) -> Iterator[dict[str, Any]]:
    if b"\\u0000" not in body and b"\x00" not in body:
        return
    try:  # FastAPI's own parser: what a route with a declared body would have read
        document = json.loads(body, object_pairs_hook=_Members)
    except (ValueError, RecursionError):  # not JSON: the route refuses it as FastAPI does
        return
    for loc in _nul_locations(document):
        yield _nul_error(("body", *loc))


class _Members(list[tuple[str, Any]]):
    """A JSON object's members in order, a repeated name included (the parsers differ on which one wins)."""


def _nul_locations(document: Any) -> Iterator[tuple[str | int, ...]]:
    """Where the parsed document holds a NUL: each string's path, and `(*path, key, "[key]")` for a key
    (pydantic's location for a bad dict key). Walked with a stack: as deep as the parser went, never deeper."""
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), document)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, str):
            if NUL in value:
                yield loc
        elif isinstance(value, _Members):
            stack.extend(((*loc, _shown(key)), item) for key, item in reversed(value))
            yield from ((*loc, _shown(key), "[key]") for key, _ in value if NUL in key)
        elif isinstance(value, list):
            stack.extend(((*loc, i), item) for i, item in reversed(list(enumerate(value))))


def _shown(name: str) -> str:
    """A name as an error can show it: its NUL written as JSON writes it."""
    return name.replace(NUL, "\\u0000")


def _nul_error(loc: tuple[str | int, ...]) -> dict[str, Any]:
    return {"loc": loc, "msg": "must not contain a NUL character (\\u0000)", "type": "value_error"}


class AccessMiddleware:
    """One JSON log line and one metrics observation per request: route template, status, ms."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # if the app dies before answering, the server answers 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or "unmatched"  # templates only: bounded labels
            self.metrics.observe_request(route, scope["method"], status, seconds)
            access_log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "route": route,
                    "path": scope["path"],
                    "status": status,
                    "ms": round(seconds * 1000, 3),
                },
            )
