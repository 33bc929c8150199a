"""`POST /v1/embeddings` (and `/embeddings`): parse, embed, encode."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from starlette.requests import Request
from starlette.responses import Response

from embellama.errors import DrainingError
from embellama.inputs import InputItem
from embellama.options import EmbedOptions
from embellama.pipeline import ServedModel
from embellama.results import EmbeddingResult
from embellama.server.body import read_request
from embellama.server.disconnect import unless_disconnected
from embellama.server.encoding import encode_embeddings, encode_token_embeddings
from embellama.server.schemas import parse_embeddings_request
from embellama.server.security import most_tokens
from embellama.server.state import ServerState

__all__ = ["charged", "create_embeddings"]

T = TypeVar("T")


async def create_embeddings(request: Request) -> Response:
    state: ServerState = request.app.state.embellama
    if state.draining:
        raise DrainingError("the server is draining and accepts no new work")
    limits = state.limits
    parsed = await read_request(
        request,
        limits.max_body_bytes,
        lambda body: parse_embeddings_request(
            body,
            max_inputs=limits.max_inputs_per_request,
            max_instruction_length=limits.max_instruction_length,
        ),
        max_inputs=limits.max_inputs_per_request,
    )
    service = state.embedder(parsed.model)
    use_cache = parsed.use_cache and not _no_cache(request)
    options = EmbedOptions(
        parsed.normalize,
        parsed.dimensions,
        parsed.truncate,
        use_cache,
        parsed.input_type,
        parsed.instruction,
        parsed.chunk_overlap,
    )
    if parsed.per_token:
        return await _per_token(
            request, state, service, parsed.items, options, parsed.encoding_format
        )
    work = service.embed(parsed.items, options)
    prefix = service.prefix_for(options) or ""
    result = await charged(request, state, parsed.items, work, _total_tokens, prefix=prefix)
    state.metrics.observe_result(result)
    request.scope["state"]["access"] = {
        "model": result.model,
        "inputs": len(result),
        "tokens": result.total_tokens,
        "cache_hits": result.cache_hits,
    }
    return Response(
        encode_embeddings(result, parsed.encoding_format),
        headers={**_timing_headers(result), **_prefix_header(result.prefix, parsed.items)},
        media_type="application/json",
    )


def _timing_headers(result: EmbeddingResult) -> dict[str, str]:
    timings = result.timings
    return {
        "x-tokenize-time": f"{timings.tokenize * 1000:.2f}",
        "x-queue-time": f"{timings.queue * 1000:.2f}",
        "x-inference-time": f"{timings.inference * 1000:.2f}",
        "x-tokens": str(result.total_tokens),
        "x-cache-hits": str(result.cache_hits),
    }


def _prefix_header(prefix: str | None, items: Sequence[InputItem]) -> dict[str, str]:
    """`applied` only when a prefix went in front of a text; token-id inputs are never
    prefixed, so they answer `none`, as does a request without input_type."""
    applied = bool(prefix) and any(isinstance(item, str) for item in items)
    return {"x-prefix": "applied" if applied else "none"}


def _no_cache(request: Request) -> bool:
    """`Cache-Control: no-cache` (or `no-store`) bypasses the cache, like `"cache": false`."""
    control = request.headers.get("cache-control", "").lower()
    return "no-cache" in control or "no-store" in control


async def charged(
    request: Request,
    state: ServerState,
    items: Sequence[InputItem],
    work: Awaitable[T],
    used: Callable[[T], int],
    *,
    extra: int = 0,
    prefix: str = "",
) -> T:
    """Run `work` for a client that may leave, inside its tokens-per-minute budget:
    reserve the most `items` (each behind `prefix`, plus `extra`) can cost, then settle
    to what was used (nothing on failure)."""
    client = request.scope["state"].get("client")
    try:
        budget = state.access.reserve_tokens(client, lambda: most_tokens(items, prefix) + extra)
    except BaseException:
        if inspect.iscoroutine(work):
            work.close()  # refused before it ran: no "never awaited" warning
        raise
    try:
        done = await unless_disconnected(request, work)
    except BaseException:
        budget.settle(0)
        raise
    budget.settle(used(done))
    return done


def _total_tokens(result: EmbeddingResult) -> int:
    return result.total_tokens


async def _per_token(
    request: Request,
    state: ServerState,
    service: ServedModel,
    items: list[InputItem],
    options: EmbedOptions,
    encoding_format: str,
) -> Response:
    """`"pooling": "none"`: late-interaction output, one vector per token."""
    work = service.embed_tokens(items, options, service.limits.max_token_vectors)
    prefix = service.prefix_for(options) or ""
    matrices, counts = await charged(
        request, state, items, work, lambda done: sum(done[1]), prefix=prefix
    )
    request.scope["state"]["access"] = {
        "model": service.name,
        "inputs": len(counts),
        "tokens": sum(counts),
    }
    body = encode_token_embeddings(service.name, matrices, counts, encoding_format)
    headers = {"x-tokens": str(sum(counts)), **_prefix_header(prefix, items)}
    return Response(body, headers=headers, media_type="application/json")
