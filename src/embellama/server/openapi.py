"""The published contract: an OpenAPI 3.1 document generated from the route table and
the wire declarations, so the spec and the parsers cannot disagree.

schemathesis fuzzes the live server from this document and fails on any response
(status, content type or body) it does not allow.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import orjson
from pydantic import TypeAdapter

from embellama import __version__
from embellama.server.endpoints import ENDPOINTS, Endpoint
from embellama.server.errors import ErrorShape
from embellama.server.wire.errors import CohereError, Error, OllamaError, TeiError

__all__ = ["openapi_document", "openapi_json"]

Schema = dict[str, Any]
_REF = "#/components/schemas/{model}"

_ERROR_TEXT = {
    400: "Invalid request; `param` names the field (or `input[i]`). Over a limit in /info "
    "(inputs, instruction length) too; a body with more strings, lists and objects than "
    "16 per allowed input plus 1,024 is `too_many_values`",
    401: "Missing or wrong API key",
    403: "Forbidden (admin API off, or a path outside the models directory)",
    404: "Unknown model or route",
    413: "Body larger than the server's limit",
    422: "TEI routes: a body TEI could not read (wrong field type); `error_type` "
    "Validation. Too many or too long inputs are TEI's 413",
    429: "Queue full or rate limit reached; see Retry-After",
    499: "The client closed the connection",
    500: "Internal error (the request id is in x-request-id)",
    503: "No worker can run the work, or the server is draining",
    504: "The request did not finish within the request timeout",
}
_ERROR_BODIES: dict[ErrorShape, object] = {
    ErrorShape.OPENAI: Error,
    ErrorShape.OLLAMA: OllamaError,
    ErrorShape.TEI: TeiError,
    ErrorShape.COHERE: CohereError,
}
_SECURITY: dict[str, list[dict[str, list[str]]] | None] = {
    "key": None,
    "public": [],
    "admin": [{"adminKey": []}],
}


class _Components:
    """The named schemas the operations refer to, each generated once."""

    def __init__(self) -> None:
        self.schemas: dict[str, Schema] = {}

    def ref(self, shape: Any) -> Schema:
        name = getattr(shape, "__name__", None)
        adapter: TypeAdapter[Any] = TypeAdapter(shape)
        schema = adapter.json_schema(ref_template=_REF, by_alias=True)
        for key, value in schema.pop("$defs", {}).items():
            self._add(key, value)
        if name is None or not isinstance(shape, type):
            return schema  # a generic (dict[str, ...]): inline
        self._add(name, schema)
        return {"$ref": _REF.format(model=name)}

    def _add(self, name: str, schema: Schema) -> None:
        assert self.schemas.setdefault(name, schema) == schema, f"two shapes named {name}"


def _path(starlette: str) -> str:
    return re.sub(r"\{(\w+):\w+\}", r"{\1}", starlette)  # "{model_id:path}" -> "{model_id}"


def _content(media: str, schema: Schema) -> Schema:
    return {media: {"schema": schema}}


def _operation(endpoint: Endpoint, components: _Components) -> Schema:
    body = components.ref(endpoint.response) if endpoint.response is not None else {}
    if endpoint.media == "text/plain" or endpoint.media == "text/html":
        body = {"type": "string"}
    ok: Schema = {"description": endpoint.answer, "content": _content(endpoint.media, body)}
    if endpoint.headers:
        ok["headers"] = {name: {"schema": {"type": "string"}} for name in endpoint.headers}
    responses: Schema = {"200": ok}
    for status, (text, shape) in endpoint.also.items():
        responses[str(status)] = {
            "description": text,
            "content": _content(endpoint.media, components.ref(shape)),
        }
    texts = {**_ERROR_TEXT, **endpoint.error_text}
    error = _error_schema(endpoint, components)
    for status in endpoint.errors:
        responses[str(status)] = {
            "description": texts[status],
            "content": _content("application/json", error),
        }
    operation: Schema = {"summary": endpoint.summary, "responses": responses}
    security = _SECURITY[endpoint.access]
    if security is not None:
        operation["security"] = security
    if endpoint.request is not None:
        bodies = [components.ref(body) for body in (endpoint.request, *endpoint.other_requests)]
        operation["requestBody"] = {
            "required": endpoint.access != "admin",  # an admin body may be left out
            "content": _content(
                "application/json", bodies[0] if len(bodies) == 1 else {"anyOf": bodies}
            ),
        }
    names = re.findall(r"\{(\w+)", endpoint.paths[0])
    if names:
        operation["parameters"] = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in names
        ]
    return operation


def _error_schema(endpoint: Endpoint, components: _Components) -> Schema:
    """The route's error body; one of several where its request's body picks the API."""
    shapes = (endpoint.error_shape, *endpoint.body_shapes)
    refs = [components.ref(_ERROR_BODIES[shape]) for shape in shapes]
    return refs[0] if len(refs) == 1 else {"oneOf": refs}


def openapi_document() -> dict[str, Any]:
    components = _Components()
    paths: dict[str, Schema] = {}
    for endpoint in ENDPOINTS:
        operation = _operation(endpoint, components)
        for path in endpoint.paths:
            paths.setdefault(_path(path), {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "embellama",
            "version": __version__,
            "description": "OpenAI-compatible embeddings from GGUF models through llama.cpp.",
        },
        "servers": [{"url": "/"}],
        "security": [{"apiKey": []}],
        "paths": paths,
        "components": {
            "schemas": components.schemas,
            "securitySchemes": {
                "apiKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An API key, when the server has any (--api-key).",
                },
                "adminKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An admin key (--admin-key).",
                },
            },
        },
    }


@cache
def openapi_json() -> bytes:
    return orjson.dumps(openapi_document())
