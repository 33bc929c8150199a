"""Each route family answers errors in its API's shape, from the route table: OpenAI's
by default, Ollama's under /api/, TEI's on TEI's routes; refusals that come before any
route (401, 429, 404, 405) included. The app runs in-process with no model."""

from __future__ import annotations

import asyncio

import httpx
import orjson

from embellama.server.app import create_app
from embellama.server.endpoints import error_shapes
from embellama.server.errors import ApiError, ErrorShape, error_response
from embellama.server.openapi import openapi_document
from embellama.server.security import AccessControl, RateLimits
from embellama.server.state import Deployment, ServerState

KEY = "sk-shapes-test-key-0001"


def test_the_lookup_follows_the_route_table() -> None:
    shapes = error_shapes()
    assert shapes.of("/api/embed") is ErrorShape.OLLAMA
    assert shapes.of("/api/anything-else") is ErrorShape.OLLAMA
    assert shapes.of("/embed") is shapes.of("/embed_all") is ErrorShape.TEI
    assert shapes.of("/") is ErrorShape.TEI
    assert shapes.of("/rerank") is ErrorShape.OPENAI  # TEI only for a TEI body
    assert shapes.of("/v1/embeddings") is shapes.of("/v1/models/x/y") is ErrorShape.OPENAI


def test_tei_statuses_and_types() -> None:
    def tei(status: int, code: str | None) -> tuple[int, object]:
        answer = error_response(ApiError(status, "m", code=code), ErrorShape.TEI)
        return answer.status_code, orjson.loads(bytes(answer.body))["error_type"]

    assert tei(400, "empty_input") == (400, "Empty")
    assert tei(400, "invalid_value") == (422, "Validation")
    assert tei(400, "context_length_exceeded") == (413, "Validation")
    assert tei(413, "request_too_large") == (413, "Validation")
    assert tei(429, "queue_full") == (429, "Overloaded")
    assert tei(503, "draining") == (503, "Unhealthy")
    assert tei(500, "internal_error") == (500, "Backend")


def _calls(access: AccessControl, requests: list[tuple[str, str]]) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        app = create_app(ServerState(deployment=Deployment(models=(), access=access)))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [await client.request(method, path, json={}) for method, path in requests]

    return asyncio.run(run())


def test_refusals_before_routing_come_in_the_paths_shape() -> None:
    keyed = AccessControl([KEY])
    ollama, tei, openai = _calls(
        keyed, [("POST", "/api/embed"), ("POST", "/embed"), ("POST", "/v1/embeddings")]
    )
    assert ollama.status_code == tei.status_code == openai.status_code == 401
    assert isinstance(ollama.json()["error"], str) and set(ollama.json()) == {"error"}
    assert tei.json()["error_type"] == "Validation" and isinstance(tei.json()["error"], str)
    assert openai.json()["error"]["code"] == "invalid_api_key"
    limited = AccessControl(limits=RateLimits(requests_per_second=1))
    answers = _calls(limited, [("GET", "/api/tags"), ("GET", "/api/tags"), ("POST", "/embed")])
    assert answers[1].status_code == 429 and set(answers[1].json()) == {"error"}
    assert answers[2].status_code == 429 and answers[2].json()["error_type"] == "Overloaded"
    wrong, unknown = _calls(AccessControl(), [("GET", "/api/embed"), ("GET", "/api/pull")])
    assert (wrong.status_code, unknown.status_code) == (405, 404)
    assert set(wrong.json()) == set(unknown.json()) == {"error"}


def test_the_document_declares_each_routes_error_shape() -> None:
    paths = openapi_document()["paths"]
    ref = "#/components/schemas/{}"
    ollama = paths["/api/embed"]["post"]["responses"]["400"]["content"]["application/json"]
    assert ollama["schema"] == {"$ref": ref.format("OllamaError")}
    tei = paths["/embed"]["post"]["responses"]["422"]["content"]["application/json"]
    assert tei["schema"] == {"$ref": ref.format("TeiError")}
    both = paths["/rerank"]["post"]["responses"]["400"]["content"]["application/json"]
    assert both["schema"] == {"oneOf": [{"$ref": ref.format(n)} for n in ("Error", "TeiError")]}
