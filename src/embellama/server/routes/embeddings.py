"""`POST /v1/embeddings` (and `/embeddings`): admit, embed, encode."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from embellama.options import EmbedOptions
from embellama.pipeline import ServedModel
from embellama.server import calls
from embellama.server.admission import charged, no_cache, read_embeddings, serving
from embellama.server.assignment import assignment_key
from embellama.server.encoding import (
    embedding_headers,
    encode_embeddings,
    encode_token_embeddings,
    json_response,
    prefix_header,
    version_header,
)
from embellama.server.state import ServerState
from embellama.server.wire.embeddings import EmbeddingsRequest

__all__ = ["create_embeddings"]


async def create_embeddings(request: Request) -> Response:
    state = serving(request)
    parsed = await read_embeddings(request, state)
    service = state.embedder(parsed.model, assignment_key(request, parsed.user))
    options = parsed.options(use_cache=not no_cache(request))
    if parsed.per_token:
        return await _per_token(request, state, service, parsed, options)
    result = await calls.embed(request, state, service, parsed.items, options)
    body = encode_embeddings(result, parsed.encoding_format)
    headers = {**embedding_headers(result, parsed.items), **version_header(service.version)}
    return json_response(body, headers=headers)


async def _per_token(
    request: Request,
    state: ServerState,
    service: ServedModel,
    parsed: EmbeddingsRequest,
    options: EmbedOptions,
) -> Response:
    """`"pooling": "none"`: late-interaction output, one vector per token."""
    items = parsed.items
    work = service.embed_tokens(items, options, service.limits.max_token_vectors)
    prefix = service.prefix_for(options) or ""
    matrices, counts = await charged(
        request, state, items, work, lambda done: sum(done[1]), prefix=prefix
    )
    tokens = sum(counts)
    request.scope["state"]["access"] = {
        "model": service.name,
        "version": service.version,
        "inputs": len(counts),
        "tokens": tokens,
    }
    body = encode_token_embeddings(service.name, matrices, counts, parsed.encoding_format)
    headers = {"x-tokens": str(tokens), **prefix_header(prefix, items)}
    return json_response(body, headers={**headers, **version_header(service.version)})
