"""JSON request bodies decoded and validated in one pass by pydantic-core.

FastAPI decodes a JSON body with the standard library and then validates the Python objects it built;
for a batch of a thousand listings that costs twice what validating the raw bytes does. The scoring
routes therefore take the raw body and call `parse`, which answers bad input exactly as FastAPI would
(a 422 per field, located under `body`), and declare the body in the OpenAPI document with
`openapi_body`; `install` adds the models' schemas to the document's components, rebuilding the
document when the models change (a bundle reloaded with another data config brings other bodies).
"""

from __future__ import annotations

import email.message
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from serving.api.errors import field_error

Model = TypeVar("Model", bound=BaseModel)

_COMPONENTS = "#/components/schemas/{model}"


async def parse(model: type[Model], request: Request) -> Model:
    """The request's JSON body validated as `model`; a RequestValidationError (422) names each bad field."""
    if not _is_json(request.headers.get("content-type")):
        raise field_error(("body",), "the body must be JSON (Content-Type: application/json)", "model_type")
    body = await request.body()
    if not body:
        raise field_error(("body",), "a JSON body is required", "missing")
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` of a route that reads `model` with `parse`: the body as FastAPI would declare it."""
    schema = {"$ref": _COMPONENTS.format(model=model.__name__)}
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def install(app: FastAPI, current_models: Callable[[FastAPI], Sequence[type[BaseModel]]]) -> None:
    """Add the schemas of bodies declared with `openapi_body` (the app's current ones) to its OpenAPI
    components."""
    generate = app.openapi
    documented: list[Sequence[type[BaseModel]]] = []

    def openapi() -> dict[str, Any]:
        models = current_models(app)
        if documented != [models]:
            app.openapi_schema = None
            documented[:] = [models]
        if app.openapi_schema is None:
            document = generate()
            _, definitions = models_json_schema([(m, "validation") for m in models], ref_template=_COMPONENTS)
            document.setdefault("components", {}).setdefault("schemas", {}).update(definitions.get("$defs", {}))
        return app.openapi_schema  # type: ignore[return-value]  # set by `generate`

    app.openapi = openapi  # type: ignore[method-assign]


def _is_json(content_type: str | None) -> bool:
    """FastAPI's rule: no Content-Type, application/json or application/*+json."""
    if not content_type:
        return True
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))
