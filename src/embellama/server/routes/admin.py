"""`/admin/*`: reload, workers, load/unload a model, drain. Needs an admin key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from embellama.config import ModelConfig
from embellama.errors import ConfigError
from embellama.server.body import read_body
from embellama.server.errors import ApiError
from embellama.server.state import ServerState
from embellama.service import ServiceLimits

__all__ = ["drain", "load_model", "reload", "unload_model", "workers"]

_MODEL_FIELDS = {
    "path",
    "aliases",
    "pooling",
    "normalization",
    "n_ctx",
    "n_threads",
    "n_gpu_layers",
}


def _json(value: object, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status, media_type="application/json")


async def reload(request: Request) -> Response:
    state: ServerState = request.app.state.embellama
    return _json({"status": "reloaded", "models": await state.reload()})


async def workers(request: Request) -> Response:
    state: ServerState = request.app.state.embellama
    return _json(
        {
            service.name: [
                {
                    "slot": w.slot,
                    "pid": w.pid,
                    "state": w.state,
                    "batches": w.batches,
                    "restarts": w.restarts,
                    "in_flight": w.in_flight,
                }
                for w in service.workers()
            ]
            for service in state.services
        }
    )


async def load_model(request: Request) -> Response:
    """Body: the model's fields (`path` required), or nothing to use the config file's entry."""
    state: ServerState = request.app.state.embellama
    name = request.path_params["name"]
    body = await read_body(request, state.limits.max_body_bytes)
    config, limits = _from_body(name, body) if body.strip() else _from_source(state, name)
    service = await state.load_model(config, limits)
    return _json({"status": "loaded", "model": service.name, "workers": limits.workers})


def _from_body(name: str, body: bytes) -> tuple[ModelConfig, ServiceLimits]:
    try:
        fields: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(fields, dict) or "path" not in fields:
        raise ApiError(400, "the body must be a JSON object with at least 'path'", param="path")
    unknown = sorted(set(fields) - _MODEL_FIELDS - {"workers"})
    if unknown:
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)}", param=unknown[0])
    workers = fields.pop("workers", 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ApiError(400, "'workers' must be a positive integer", param="workers")
    fields["path"] = Path(fields["path"])
    fields["aliases"] = tuple(fields.get("aliases", ()))
    return ModelConfig(name=name, **fields), ServiceLimits(workers=workers)


def _from_source(state: ServerState, name: str) -> tuple[ModelConfig, ServiceLimits]:
    if state.source is None:
        raise ConfigError("no config file to load the model from; send its fields as JSON")
    for config, limits in state.source().models:
        if config.resolved_name == name:
            return config, limits
    raise ConfigError(f"the config file defines no model named {name!r}")


async def unload_model(request: Request) -> Response:
    state: ServerState = request.app.state.embellama
    name = request.path_params["name"]
    await state.unload_model(name)
    return _json({"status": "unloaded", "model": name})


async def drain(request: Request) -> Response:
    state: ServerState = request.app.state.embellama
    idle = await state.drain()
    return _json(
        {
            "status": "idle" if idle else "timeout",
            "queued": sum(s.scheduler.queued_requests for s in state.services),
        }
    )
