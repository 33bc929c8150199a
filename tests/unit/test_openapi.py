"""The published OpenAPI document is valid 3.1 and lists exactly the app's routes."""

from __future__ import annotations

import asyncio
import re

import httpx
from openapi_spec_validator import validate
from starlette.routing import BaseRoute, Mount, Route

from embellama.server.app import create_app
from embellama.server.openapi import openapi_document
from embellama.server.state import Deployment, ServerState


def test_the_document_is_valid_openapi_31() -> None:
    document = openapi_document()
    assert document["openapi"].startswith("3.1")
    validate(document)


def _routes(routes: list[BaseRoute], prefix: str = "") -> list[tuple[str, Route]]:
    """Every route with its full path; a mount (the admin API's) adds its prefix."""
    found: list[tuple[str, Route]] = []
    for route in routes:
        if isinstance(route, Mount):
            found += _routes(route.routes, prefix + route.path)
        else:
            assert isinstance(route, Route)
            found.append((prefix + route.path, route))
    return found


def test_spec_routes_are_exactly_the_apps() -> None:
    app = create_app(ServerState(deployment=Deployment(models=())))
    served = set()
    for full_path, route in _routes(app.routes):
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", full_path)  # "{model_id:path}" -> "{model_id}"
        served |= {(path, method.lower()) for method in route.methods or () if method != "HEAD"}
    documented = {
        (path, method)
        for path, item in openapi_document()["paths"].items()
        for method in item
        if method in ("get", "post", "put", "delete", "patch")
    }
    assert documented == served


def test_every_operation_documents_its_errors() -> None:
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            assert "200" in operation["responses"], (path, method)
            protected = operation.get("security") != []
            if protected:  # a key-protected route can answer 401 and 429
                assert {"401", "429"} <= set(operation["responses"]), (path, method)


def test_info_documents_every_limit_it_answers() -> None:
    """The Info schema names each key /info really returns (the app in-process)."""

    async def call() -> dict[str, object]:
        app = create_app(ServerState(deployment=Deployment(models=())))
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/info")
            assert response.status_code == 200, response.text
            answer: dict[str, object] = response.json()
            return answer

    documented = openapi_document()["components"]["schemas"]["Info"]["properties"]
    assert set(asyncio.run(call())) == set(documented)
    assert {"max_tokenize_tokens", "max_instruction_length"} <= set(documented)


def test_the_token_routes_document_their_413() -> None:
    paths = openapi_document()["paths"]
    for path in ("/tokenize", "/detokenize"):
        assert "too_many_tokens" in paths[path]["post"]["responses"]["413"]["description"]
    fields = openapi_document()["components"]["schemas"]["EmbeddingsRequest"]["properties"]
    assert "max_instruction_length" in fields["instruction"]["description"]
    assert "input_type" in fields["instruction"]["description"]
