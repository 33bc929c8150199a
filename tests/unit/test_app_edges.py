"""The HTTP app's edges without a model: admin decided on the routed path (under a
`root_path`), and an unexpected exception answered as a 500 with its request id,
logged once. The app runs in-process behind httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from starlette.routing import Mount

from embellama.errors import InternalError
from embellama.server.app import create_app
from embellama.server.security import AccessControl
from embellama.server.state import Deployment, ServerState

USER = {"Authorization": "Bearer sk-user-key-0000000001"}
ADMIN = {"Authorization": "Bearer sk-admin-key-000000001"}


def _state() -> ServerState:
    access = AccessControl(keys=["sk-user-key-0000000001"], admin_keys=["sk-admin-key-000000001"])
    return ServerState(deployment=Deployment(models=(), access=access, settings={"port": 1}))


def _get(state: ServerState, path: str, headers: dict[str, str], root: str = "") -> httpx.Response:
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(state), root_path=root)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path, headers=headers)

    return asyncio.run(call())


@pytest.mark.parametrize("root", ["", "/api"])
def test_admin_needs_the_admin_key_under_any_root_path(root: str) -> None:
    state = _state()
    assert _get(state, root + "/admin/config", {}, root).status_code == 401
    assert _get(state, root + "/admin/config", USER, root).status_code == 401
    shown = _get(state, root + "/admin/config", ADMIN, root)
    assert shown.status_code == 200, shown.text
    assert shown.json()["server"] == {"port": 1}
    assert _get(state, root + "/health", {}, root).status_code == 200


def test_the_admin_routes_guard_themselves_without_the_middleware() -> None:
    """The admin mount checks the key on its own: a path the middleware misjudged would
    still meet this guard, on the route that actually matched."""
    state = _state()
    mount = next(r for r in create_app(state).routes if isinstance(r, Mount))
    assert mount.path == "/admin"

    async def call(headers: dict[str, str]) -> httpx.Response:
        transport = httpx.ASGITransport(app=mount.app)  # the mount alone, no middleware
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/config", headers=headers)

    for headers in ({}, USER, {"Authorization": "Bearer"}):
        refused = asyncio.run(call(headers))
        assert refused.status_code == 401, refused.text
        assert refused.json()["error"]["code"] == "invalid_api_key"


def test_unexpected_error_is_a_500_with_request_id_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    state = _state()

    def broken(name: str | None, key: str | None = None) -> None:
        raise RuntimeError("injected fault")

    state.embedder = broken  # type: ignore[method-assign,assignment]

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(state), raise_app_exceptions=True)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(
                "/v1/embeddings", json={"input": "x"}, headers={**USER, "x-request-id": "req-42"}
            )

    with caplog.at_level(logging.ERROR):
        response = asyncio.run(call())
    assert response.status_code == 500
    assert response.headers["x-request-id"] == "req-42"
    assert response.json()["error"]["code"] == "internal_error"
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "req-42" in tracebacks[0].getMessage()


def test_an_internal_error_reaches_the_client_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An InternalError's text is an internal exception's repr (paths, values): the log
    keeps it, the client gets a generic 500 naming the request id to quote."""
    state = _state()
    secret = "internal error while running the batch: KeyError('/srv/models/private.gguf')"

    def broken(name: str | None, key: str | None = None) -> None:
        raise InternalError(secret)

    state.embedder = broken  # type: ignore[method-assign,assignment]

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(state))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post(
                "/v1/embeddings", json={"input": "x"}, headers={**USER, "x-request-id": "req-43"}
            )

    with caplog.at_level(logging.WARNING):
        response = asyncio.run(call())
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["message"] == "internal server error (request id req-43)"
    assert (error["type"], error["code"]) == ("server_error", "internal_error")
    assert "private.gguf" not in response.text and "KeyError" not in response.text
    assert any("req-43" in r.getMessage() and secret in r.getMessage() for r in caplog.records)
