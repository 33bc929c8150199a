"""`POST /v2/embed` and `POST /v1/embed` (Cohere's embed API): admit, embed, encode."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from embellama.server import calls
from embellama.server.admission import no_cache, read_cohere, serving
from embellama.server.assignment import assignment_key
from embellama.server.encoding import (
    embedding_headers,
    encode_cohere,
    json_response,
    version_header,
)

__all__ = ["embed_v1", "embed_v2"]


async def embed_v2(request: Request) -> Response:
    return await _embed(request, v1=False)


async def embed_v1(request: Request) -> Response:
    return await _embed(request, v1=True)


async def _embed(request: Request, *, v1: bool) -> Response:
    state = serving(request)
    parsed = await read_cohere(request, state, v1=v1)
    service = state.embedder(parsed.model, assignment_key(request))
    options = parsed.options(use_cache=not no_cache(request))
    result = await calls.embed(request, state, service, list(parsed.items), options)
    body = encode_cohere(
        result, parsed.items, parsed.types, by_type=parsed.by_type, version="1" if v1 else "2"
    )
    headers = {**embedding_headers(result, parsed.items), **version_header(service.version)}
    return json_response(body, headers=headers)
