"""Build the Starlette app: routes, error handlers, middleware, model lifecycles.

The app holds no inference logic; it wires routes to the engine's pipeline and starts
and stops the models with the server (lifespan), so shutdown drains before workers stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embellama.errors import AuditUnavailableError, EmbellamaError
from embellama.server import audit
from embellama.server.endpoints import ENDPOINTS, error_shapes
from embellama.server.errors import (
    ApiError,
    error_response,
    handle_domain_error,
    rejection_reason,
    shape_of,
    shaped_error,
)
from embellama.server.middleware import RequestContextMiddleware
from embellama.server.openapi import openapi_json
from embellama.server.security import AccessControl, AdminGuard, SecurityMiddleware
from embellama.server.state import ServerState

if TYPE_CHECKING:
    from embellama.server.tracing import Tracing

__all__ = ["create_app"]

_log = logging.getLogger("embellama.server")


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
        ApiError(exc.status_code, message, code=kind, headers=dict(exc.headers or {})),
        shape_of(request.scope),
    )


def _reload_on_signal(state: ServerState) -> None:
    async def reload() -> None:
        before = audit.snapshot(state.services, state.deployment.settings)
        try:
            await state.reload()
        except Exception as exc:  # the old configuration keeps serving
            _log.error("reload on SIGHUP rejected, keeping the running configuration: %s", exc)
            _record(state, "failed", str(exc)[:200])
            return
        after = audit.snapshot(state.services, state.deployment.settings)
        _record(state, "ok", None, diff=audit.reload_diff(before, after))

    task = asyncio.ensure_future(reload())
    _pending.add(task)
    task.add_done_callback(_pending.discard)


_pending: set[asyncio.Future[None]] = set()


def _record(state: ServerState, outcome: str, reason: str | None, **details: object) -> None:
    """A reload by signal has no one to answer: an unwritable log is logged (by `write`)."""
    with contextlib.suppress(AuditUnavailableError):
        state.audit.event(None, "reload", outcome, reason, trigger="SIGHUP", **details)


def _reload_on_sighup(state: ServerState) -> None:
    """SIGHUP reloads the config file, where this loop can take signals: only the main
    thread's can, and a Ray Serve replica runs its app on another thread."""
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _reload_on_signal, state)
    except (RuntimeError, ValueError, NotImplementedError) as exc:
        _log.info("no reload on SIGHUP here (%s); POST /admin/reload still reloads", exc)


class _StartupError(Exception):
    """A model could not start; its reason is already logged in one line."""


class _QuietStartFailure:
    """Drops the traceback Starlette attaches to a failed startup whose reason we logged.

    uvicorn prints that text and exits 3; for a model that cannot start (a context that
    does not fit, a worker that dies loading) the one logged line is the whole story.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_quietly(message: Message) -> None:
            failed = message["type"] == "lifespan.startup.failed"
            if failed and _StartupError.__name__ in message.get("message", ""):
                message = {**message, "message": ""}
            await send(message)

        await self.app(scope, receive, send_quietly)


def _routes(guard: Middleware) -> list[BaseRoute]:
    """The route table's entries, aliases included; the admin API's behind `guard`,
    which checks the admin key on the route that matched, whatever path trick led there."""
    public: list[BaseRoute] = []
    admin: list[BaseRoute] = []
    for endpoint in ENDPOINTS:
        for path in endpoint.paths:
            inner = path.removeprefix(_ADMIN)
            (admin if inner != path else public).append(
                Route(inner, endpoint.handler, methods=[endpoint.method])
            )
    return [*public, Mount(_ADMIN, routes=admin, middleware=[guard])]


_ADMIN = "/admin"


def create_app(state: ServerState, tracing: Tracing | None = None) -> Starlette:
    """`tracing`: spans for every request (--otlp-endpoint); None adds nothing at all."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            try:
                await state.start()
            except EmbellamaError as exc:  # the reason, in one line (see _QuietStartFailure)
                _log.error("startup failed: %s", exc)
                raise _StartupError from exc
            # What startup built (modules, models, routes) lives as long as the server;
            # freezing it keeps the collector from re-walking it every few thousand
            # allocations, which profiling at 16 clients put at ~5 % of server CPU.
            gc.collect()
            gc.freeze()
            if state.source is not None:
                _reload_on_sighup(state)
            # Recorded once serving: a log that cannot take it fails the start.
            state.audit.event(None, "start", "ok", models=[s.name for s in state.services])
            yield
        finally:
            await state.stop()
            state.audit.close([s.name for s in state.services])
            if tracing is not None:  # after the drain: its requests' spans go out too
                await tracing.close()

    def reject(error: ApiError) -> ASGIApp:
        state.metrics.rejected.labels(rejection_reason(error)).inc()
        response = shaped_error(error)

        async def audited(scope: Scope, receive: Receive, send: Send) -> None:
            state.audit.refused(scope, error.status, error.code)
            await response(scope, receive, send)

        return audited

    def access() -> AccessControl:
        return state.access  # looked up per request: a reload may replace it

    app = Starlette(
        routes=_routes(
            Middleware(AdminGuard, control=access, reject=reject, audit=lambda: state.audit)
        ),
        lifespan=lifespan,
        exception_handlers={
            EmbellamaError: handle_domain_error,
            ApiError: handle_domain_error,
            HTTPException: _http_error,
        },
    )
    app.state.embellama = state
    app.state.openapi = openapi_json()
    # Added last = outermost: every response, 401s included, gets a request id and a log line.
    app.add_middleware(
        SecurityMiddleware,
        control=access,
        reject=reject,
        limit=lambda: state.limits.max_body_bytes,
    )
    app.add_middleware(RequestContextMiddleware, metrics=state.metrics, shapes=error_shapes())
    if tracing is not None:  # outside the request id: its span sees every answer, 500s too
        app.add_middleware(tracing.middleware)
    app.add_middleware(_QuietStartFailure)
    return app
