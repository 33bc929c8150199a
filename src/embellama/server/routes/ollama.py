"""Ollama's API: `POST /api/embed`, `POST /api/embeddings` (legacy), `GET /api/tags`,
`POST /api/show`, `GET /api/ps`, `GET /api/version`. Admit, translate into the one
pipeline's options, encode in Ollama's shapes; errors answer `{"error": "..."}`."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from embellama.inputs import InputItem
from embellama.pipeline import ServedModel
from embellama.results import EmbeddingResult
from embellama.server import calls
from embellama.server.admission import no_cache, serving, state_of
from embellama.server.body import read_request
from embellama.server.encoding import embedding_headers, json_response
from embellama.server.ollama import (
    encode_ollama_embed,
    encode_ollama_embedding,
    ollama_models,
    ollama_running,
    ollama_show,
    ollama_version,
)
from embellama.server.state import ServerState
from embellama.server.wire.ollama import (
    ollama_model_name,
    parse_ollama_embed,
    parse_ollama_embeddings,
    parse_ollama_show,
)

__all__ = [
    "ollama_api_version",
    "ollama_embed",
    "ollama_embeddings",
    "ollama_ps",
    "ollama_show_model",
    "ollama_tags",
]

T = TypeVar("T")


async def _read(request: Request, state: ServerState, parse: Callable[[dict[str, Any]], T]) -> T:
    limits = state.limits
    return await read_request(
        request, limits.max_body_bytes, parse, max_inputs=limits.max_inputs_per_request
    )


def _embedder(state: ServerState, name: str | None) -> ServedModel:
    return state.embedder(ollama_model_name(name, state.engine.registry.names()))


async def ollama_embed(request: Request) -> Response:
    started = time.perf_counter_ns()
    state = serving(request)
    most = state.limits.max_inputs_per_request
    parsed = await _read(request, state, lambda body: parse_ollama_embed(body, max_inputs=most))
    service = _embedder(state, parsed.model)
    options = parsed.options_for(use_cache=not no_cache(request))
    result = await calls.embed(request, state, service, parsed.input, options)
    body = encode_ollama_embed(result, started, time.perf_counter_ns())
    return json_response(body, headers=_headers(result, parsed.input))


async def ollama_embeddings(request: Request) -> Response:
    state = serving(request)
    parsed = await _read(request, state, parse_ollama_embeddings)
    service = _embedder(state, parsed.model)
    if not parsed.prompt:
        return json_response(encode_ollama_embedding(None))
    texts: list[InputItem] = [parsed.prompt]
    options = parsed.options_for(use_cache=not no_cache(request))
    result = await calls.embed(request, state, service, texts, options)
    return json_response(encode_ollama_embedding(result), headers=_headers(result, texts))


async def ollama_tags(request: Request) -> Response:
    return json_response({"models": ollama_models(state_of(request).services)})


async def ollama_ps(request: Request) -> Response:
    return json_response({"models": ollama_running(state_of(request).services)})


async def ollama_show_model(request: Request) -> Response:
    state = state_of(request)
    parsed = await _read(request, state, parse_ollama_show)
    name = ollama_model_name(parsed.model, state.engine.registry.names())
    return json_response(ollama_show(state.resolve(name)))


async def ollama_api_version(request: Request) -> Response:
    return json_response(ollama_version())


def _headers(result: EmbeddingResult, texts: list[InputItem]) -> dict[str, str]:
    """Ours beside Ollama's body: timings, and which inputs were cut (`x-truncated`)."""
    cut = ",".join(str(i) for i, was in enumerate(result.truncated) if was)
    return {**embedding_headers(result, texts), "x-truncated": cut or "none"}
