"""`/health` (alive), `/ready` (can serve now), `/info` (every limit a client needs),
`/metrics` (Prometheus)."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from embellama.server.admission import state_of
from embellama.server.encoding import json_response
from embellama.server.views import info_view, ready_view

__all__ = ["health", "info", "metrics", "ready"]


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


async def ready(request: Request) -> Response:
    body, status = ready_view(state_of(request))
    return json_response(body, status)


async def info(request: Request) -> Response:
    client = request.scope["state"].get("client")
    return json_response(info_view(state_of(request), client))


async def metrics(request: Request) -> Response:
    registry = state_of(request).metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
