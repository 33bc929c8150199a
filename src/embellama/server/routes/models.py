"""`GET /v1/models` and `GET /v1/models/{id}`: served models and their aliases."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from embellama.pipeline import ServedModel
from embellama.server.state import ServerState

__all__ = ["get_model", "list_models"]


def _card(service: ServedModel, name: str, created: int) -> dict[str, Any]:
    info = service.info()
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "embellama",
        "root": info.name,
        "aliases": list(info.aliases),
        "dimensions": info.dimensions,
        "context_length": info.context_length,
        "kind": info.kind.value,
        "architecture": info.architecture,
        "verified": info.verified,
        "pooling": info.pooling.value,
        "normalization": info.normalization.value,
        "prompts": service.prompts.describe() if service.prompts else None,
        "status": "ready",
    }


def _cards(state: ServerState) -> list[dict[str, Any]]:
    created = int(state.started)
    cards = [_card(s, name, created) for s in state.services for name in (s.name, *s.aliases)]
    # A model that failed to start is listed with why, so a client sees it is missing.
    failed = [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "embellama",
            "status": "failed",
            "error": reason,
        }
        for name, reason in state.failed.items()
    ]
    return cards + failed


async def list_models(request: Request) -> Response:
    state: ServerState = request.app.state.embellama
    return Response(
        orjson.dumps({"object": "list", "data": _cards(state)}), media_type="application/json"
    )


async def get_model(request: Request) -> Response:
    state: ServerState = request.app.state.embellama
    name = request.path_params["model_id"]
    service = state.resolve(name)
    return Response(
        orjson.dumps(_card(service, name, int(state.started))), media_type="application/json"
    )
