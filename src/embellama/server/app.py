"""Build the Starlette app: routes, error handlers, middleware, model lifecycles.

The app holds no inference logic; it wires routes to `ModelService`s and starts and
stops them with the server (lifespan), so shutdown drains before workers stop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from embellama.errors import EmbellamaError
from embellama.server.errors import (
    ApiError,
    error_response,
    handle_domain_error,
    handle_unexpected_error,
    rejection_reason,
)
from embellama.server.middleware import RequestContextMiddleware
from embellama.server.routes.embeddings import create_embeddings
from embellama.server.routes.health import health, info, metrics, ready
from embellama.server.routes.models import get_model, list_models
from embellama.server.security import SecurityMiddleware
from embellama.server.state import ServerState

__all__ = ["create_app"]


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = (
        "not_found"
        if exc.status_code == 404
        else "method_not_allowed"
        if exc.status_code == 405
        else None
    )
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return error_response(
        ApiError(exc.status_code, message, code=kind, headers=dict(exc.headers or {}))
    )


def create_app(state: ServerState) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        started = []
        try:
            for service in state.services:
                await service.start()
                started.append(service)
            yield
        finally:
            for service in started:
                await service.stop()

    routes = [
        Route("/v1/embeddings", create_embeddings, methods=["POST"]),
        Route("/embeddings", create_embeddings, methods=["POST"]),
        Route("/v1/models", list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", get_model, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/info", info, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            EmbellamaError: handle_domain_error,
            ApiError: handle_domain_error,
            HTTPException: _http_error,
            Exception: handle_unexpected_error,
        },
    )
    app.state.embellama = state

    def reject(error: ApiError) -> Response:
        state.metrics.rejected.labels(rejection_reason(error)).inc()
        return error_response(error)

    # Added last = outermost: every response, 401s included, gets a request id and a log line.
    app.add_middleware(SecurityMiddleware, control=state.access, reject=reject)
    app.add_middleware(RequestContextMiddleware, metrics=state.metrics)
    return app
