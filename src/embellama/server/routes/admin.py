"""`/admin/*`: config, reload, workers, load/unload a model, drain/undrain. Needs an admin
key; the guard in front of these routes logs one audit line per call (security.py)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from embellama.config import ModelSpec
from embellama.errors import ConfigError
from embellama.server.body import read_body
from embellama.server.errors import ApiError
from embellama.server.schemas import parse_json_object
from embellama.server.state import ServerState

__all__ = [
    "clear_cache",
    "config",
    "drain",
    "load_model",
    "reload",
    "undrain",
    "unload_model",
    "workers",
]

# One answer for every refused path (outside the models directory, existing or not,
# readable or not, or not a path at all): an admin key must not become a way to probe
# the server's file system.
_OUTSIDE = "the model path must lie under the server's models directory (--models-dir)"


def _json(value: object, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status, media_type="application/json")


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.embellama
    return state


async def config(request: Request) -> Response:
    state = _state(request)
    return _json(
        {
            "server": dict(state.deployment.settings),
            "models_dir": str(state.deployment.models_dir),
            "models": [
                {
                    "name": s.name,
                    "aliases": list(s.aliases),
                    "path": str(s.config.path),
                    "fingerprint": s.model.fingerprint,
                    "cache_tag": s.cache_tag.tag.decode(),
                    "cache_version": s.config.cache_version,
                    "pooling": s.pooling.value,
                    "normalization": s.config.normalization.value,
                    "n_ctx": s.model.limit,
                    "threads": s.config.resolved_threads,
                    "n_gpu_layers": s.config.n_gpu_layers,
                    "max_batch_tokens": s.config.batching.max_batch_tokens,
                    "max_batch_sequences": s.config.batching.max_batch_sequences,
                    "workers": s.limits.workers,
                    "loaded_by": "admin" if s.name in state.admin_loaded else "config",
                }
                for s in state.services
            ],
            "restart_required": state.restart_required,
        }
    )


async def reload(request: Request) -> Response:
    state = _state(request)
    models = await state.reload()
    return _json(
        {"status": "reloaded", "models": models, "restart_required": state.restart_required}
    )


async def workers(request: Request) -> Response:
    state = _state(request)
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
                    "error": w.error,
                }
                for w in service.workers()
            ]
            for service in state.services
        }
    )


async def load_model(request: Request) -> Response:
    """Body: the model's fields (`path` required), or nothing to use the config file's entry."""
    state = _state(request)
    name = request.path_params["name"]
    body = await read_body(request, state.limits.max_body_bytes)
    if body.strip():
        spec = _from_body(state, name, body)
    else:
        spec = await asyncio.to_thread(_from_source, state, name)
    service = await state.load_model(spec)
    return _json({"status": "loaded", "model": service.name, "workers": spec.limits.workers})


def _from_body(state: ServerState, name: str, body: bytes) -> ModelSpec:
    try:
        fields: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if isinstance(fields, dict) and isinstance(fields.get("path"), str):
        # What is checked is what is stored: the config, its workers and every restart
        # open this resolved path, never the text the client sent.
        fields = {**fields, "path": str(_under_models_dir(state, fields["path"]))}
    if state.deployment.model_from_fields is None:
        raise ConfigError("this server cannot load models from a request body")
    return state.deployment.model_from_fields(name, fields)


def _under_models_dir(state: ServerState, text: str) -> Path:
    """`text` expanded (`~`), resolved (symlinks, `..`; relative to the models directory)
    and checked to lie under it; anything else is refused with the one message."""
    root = state.deployment.models_dir
    try:
        if root is None or not text:
            raise ValueError("no models directory, or no path")
        base = Path(os.path.realpath(root.expanduser()))
        resolved = Path(os.path.realpath(base / Path(text).expanduser()))
    except (ValueError, RuntimeError, OSError):  # NUL byte, unknown ~user, ...
        raise ApiError(403, _OUTSIDE, code="path_not_allowed", param="path") from None
    if not resolved.is_relative_to(base):
        raise ApiError(403, _OUTSIDE, code="path_not_allowed", param="path")
    return resolved


def _from_source(state: ServerState, name: str) -> ModelSpec:
    if state.source is None:
        raise ConfigError("no config file to load the model from; send its fields as JSON")
    for spec in state.source().models:
        if spec.config.resolved_name == name:
            return spec
    raise ConfigError(f"the config file defines no model named {name!r}")


async def clear_cache(request: Request) -> Response:
    """Body `{"model": name}` clears one model's vectors; no body, every model's."""
    state = _state(request)
    body = await read_body(request, state.limits.max_body_bytes)
    fields = parse_json_object(body) if body.strip() else {}
    model = fields.get("model")
    if set(fields) - {"model"} or not isinstance(model, str | None):
        raise ApiError(400, 'the body must be empty or {"model": "<name>"}', param="model")
    if state.engine.cache is None:
        raise ApiError(400, "this server runs without a cache", code="cache_disabled")
    removed = await state.engine.clear_cache(model)
    return _json({"status": "cleared", "model": model, "removed": removed})


async def unload_model(request: Request) -> Response:
    name = request.path_params["name"]
    await _state(request).unload_model(name)
    return _json({"status": "unloaded", "model": name})


async def drain(request: Request) -> Response:
    """New embeddings and reranks get 503 `draining` and /ready says "draining" until
    `POST /admin/undrain`; answers when the queues are empty."""
    state = _state(request)
    status = await state.drain()
    return _json({"status": status, "queued": state.queued_requests()})


async def undrain(request: Request) -> Response:
    was_draining = _state(request).undrain()
    return _json({"status": "serving", "was_draining": was_draining})
