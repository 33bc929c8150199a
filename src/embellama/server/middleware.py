"""ASGI middleware: a request id on every response, one access-log line per request, and
the error shape of the request's path, chosen before anything can refuse it.

Pure ASGI (not BaseHTTPMiddleware) so it adds no task or buffering per request. The
log line carries ids, sizes and timings, never input text or credentials. It is also
where an unexpected exception becomes a 500: logged once with its traceback, answered
with the request id, and not re-raised (Starlette's outer handler would log it again).
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from embellama.server.errors import ApiError, ErrorShapes, set_error_shape, shaped_error
from embellama.server.metrics import Metrics
from embellama.server.security import routed_path

__all__ = ["RequestContextMiddleware"]

_log = logging.getLogger("embellama.access")
_errors = logging.getLogger("embellama.server")
_INTERNAL = ApiError(500, "internal server error", "server_error", None, "internal_error")
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics, shapes: ErrorShapes | None = None) -> None:
        self.app = app
        self.metrics = metrics
        self.shapes = shapes or ErrorShapes(())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        set_error_shape(scope, self.shapes.of(routed_path(scope)))
        started = time.perf_counter()
        status = 500
        status_sent = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, status_sent
            if message["type"] == "http.response.start":
                status, status_sent = message["status"], True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            _errors.exception("unexpected error (request id %s)", request_id)
            if status_sent:
                raise  # too late for an error response; the server closes the connection
            await shaped_error(_INTERNAL)(scope, receive, send_with_id)
        finally:
            extra: dict[str, Any] = scope["state"].get("access", {})
            seconds = time.perf_counter() - started
            self.metrics.observe_request(scope["path"], status, extra.get("model", ""), seconds)
            if _log.isEnabledFor(logging.INFO):  # skip building the line when it is off
                client = scope["state"].get("client") or _address(scope)
                details = "".join(f" {key}={value}" for key, value in extra.items())
                _log.info(
                    "%s %s %d %.1fms id=%s client=%s%s",
                    scope["method"],
                    scope["path"],
                    status,
                    seconds * 1000,
                    request_id,
                    client,
                    details,
                    extra={
                        "request_id": request_id,
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                        "client": client,
                        **extra,
                    },
                )


def _address(scope: Scope) -> str:
    """Who called, where no key identified the caller (public paths, refused keys)."""
    peer = scope.get("client")
    return f"addr:{peer[0]}" if peer else "addr:unknown"


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _SAFE_ID.match(text) else None
    return None
