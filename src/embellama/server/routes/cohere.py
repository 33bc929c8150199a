"""`POST /v2/embed` and `POST /v1/embed` (Cohere's embed API): admit, embed, encode."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from embellama.results import EmbeddingResult
from embellama.server.admission import charged, no_cache, read_cohere, serving
from embellama.server.encoding import embedding_headers, encode_cohere, json_response

__all__ = ["embed_v1", "embed_v2"]


async def embed_v2(request: Request) -> Response:
    return await _embed(request, v1=False)


async def embed_v1(request: Request) -> Response:
    return await _embed(request, v1=True)


async def _embed(request: Request, *, v1: bool) -> Response:
    state = serving(request)
    parsed = await read_cohere(request, state, v1=v1)
    service = state.embedder(parsed.model)
    options = parsed.options(use_cache=not no_cache(request))
    prefix = service.prefix_for(options) or ""
    work = service.embed(list(parsed.items), options)
    result = await charged(request, state, parsed.items, work, _total_tokens, prefix=prefix)
    state.metrics.observe_result(result)
    request.scope["state"]["access"] = {
        "model": result.model,
        "inputs": len(result),
        "tokens": result.total_tokens,
        "cache_hits": result.cache_hits,
    }
    version = "1" if v1 else "2"
    body = encode_cohere(
        result, parsed.items, parsed.types, by_type=parsed.by_type, version=version
    )
    return json_response(body, headers=embedding_headers(result, parsed.items))


def _total_tokens(result: EmbeddingResult) -> int:
    return result.total_tokens
