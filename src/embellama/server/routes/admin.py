"""`/admin/*`: config, reload, workers, load/unload a model, drain/undrain. Needs an admin
key; the guard in front of these routes logs one audit line per call (security.py), and
each change records what it did in the audit log (`audit.record`) before it answers."""

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
from embellama.server import audit
from embellama.server.admission import state_of
from embellama.server.body import parse_json_object, read_body
from embellama.server.encoding import json_response
from embellama.server.errors import ApiError
from embellama.server.state import ServerState
from embellama.server.views import config_view, workers_view
from embellama.server.wire.admin import (
    CacheCleared,
    Drained,
    ModelLoaded,
    ModelUnloaded,
    Reloaded,
    Undrained,
    parse_clear_cache_request,
)

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


async def config(request: Request) -> Response:
    return json_response(config_view(state_of(request)))


async def reload(request: Request) -> Response:
    state = state_of(request)
    before = audit.snapshot(state.services, state.deployment.settings)
    models = await state.reload()
    after = audit.snapshot(state.services, state.deployment.settings)
    audit.record(request, "reload", "ok", diff=audit.reload_diff(before, after))
    answer: Reloaded = {
        "status": "reloaded",
        "models": models,
        "restart_required": state.restart_required,
    }
    return json_response(answer)


async def workers(request: Request) -> Response:
    return json_response(workers_view(state_of(request)))


async def load_model(request: Request) -> Response:
    """Body: the model's fields (`path` required), or nothing to use the config file's entry."""
    state = state_of(request)
    name = request.path_params["name"]
    body = await read_body(request, state.limits.max_body_bytes)
    if body.strip():
        spec = _from_body(state, name, body)
    else:
        spec = await asyncio.to_thread(_from_source, state, name)
    service = await state.load_model(spec)
    audit.record(request, "load", "ok", model=service.name, workers=spec.limits.workers)
    answer: ModelLoaded = {
        "status": "loaded",
        "model": service.name,
        "workers": spec.limits.workers,
    }
    return json_response(answer)


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
    state = state_of(request)
    body = await read_body(request, state.limits.max_body_bytes)
    model = parse_clear_cache_request(parse_json_object(body) if body.strip() else {}).model
    if state.engine.cache is None:
        raise ApiError(400, "this server runs without a cache", code="cache_disabled")
    removed = await state.engine.clear_cache(model)
    audit.record(request, "cache_clear", "ok", model=model, removed=removed)
    answer: CacheCleared = {"status": "cleared", "model": model, "removed": removed}
    return json_response(answer)


async def unload_model(request: Request) -> Response:
    name = request.path_params["name"]
    await state_of(request).unload_model(name)
    audit.record(request, "unload", "ok", model=name)
    answer: ModelUnloaded = {"status": "unloaded", "model": name}
    return json_response(answer)


async def drain(request: Request) -> Response:
    """New embeddings and reranks get 503 `draining` and /ready says "draining" until
    `POST /admin/undrain`; answers when the queues are empty."""
    state = state_of(request)
    status = await state.drain()
    audit.record(request, "drain", "ok", drained=status)
    answer: Drained = {"status": status, "queued": state.queued_requests()}
    return json_response(answer)


async def undrain(request: Request) -> Response:
    was_draining = state_of(request).undrain()
    audit.record(request, "undrain", "ok", was_draining=was_draining)
    answer: Undrained = {"status": "serving", "was_draining": was_draining}
    return json_response(answer)
