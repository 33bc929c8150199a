"""What a request passes before the pipeline sees it: the server is not draining, its
body reads and parses into its declaration, and its tokens fit the client's budget
(charged, and given back when the client leaves). Nothing here runs inference."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from starlette.requests import Request

from embellama.errors import DrainingError
from embellama.inputs import InputItem
from embellama.server.body import read_request
from embellama.server.disconnect import unless_disconnected
from embellama.server.errors import ErrorShape, set_error_shape
from embellama.server.security import most_tokens
from embellama.server.state import ServerState
from embellama.server.wire.cohere import CohereEmbedRequest, parse_cohere_request
from embellama.server.wire.embeddings import EmbeddingsRequest, parse_embeddings_request
from embellama.server.wire.rerank import RerankRequest, parse_rerank_request
from embellama.server.wire.tei import (
    TeiDecodeRequest,
    TeiTokenizeRequest,
    is_tei_tokenize,
    parse_tei_decode,
    parse_tei_tokenize,
)
from embellama.server.wire.tokens import (
    DetokenizeRequest,
    TokenizeRequest,
    parse_detokenize_request,
    parse_tokenize_request,
)
from embellama.server.wire.versions import WeightsRequest, parse_weights_request

__all__ = [
    "charged",
    "no_cache",
    "read_cohere",
    "read_decode",
    "read_detokenize",
    "read_embeddings",
    "read_rerank",
    "read_tokenize",
    "read_weights",
    "rerank_cost",
    "serving",
    "state_of",
]

T = TypeVar("T")


def serving(request: Request) -> ServerState:
    """The state, when it takes new work: a drained server answers 503 `draining`."""
    state: ServerState = request.app.state.embellama
    if state.draining:
        raise DrainingError("the server is draining and accepts no new work")
    return state


def state_of(request: Request) -> ServerState:
    state: ServerState = request.app.state.embellama
    return state


async def read_embeddings(request: Request, state: ServerState) -> EmbeddingsRequest:
    limits = state.limits
    return await read_request(
        request,
        limits.max_body_bytes,
        lambda body: parse_embeddings_request(
            body,
            max_inputs=limits.max_inputs_per_request,
            max_instruction_length=limits.max_instruction_length,
        ),
        max_inputs=limits.max_inputs_per_request,
    )


async def read_rerank(request: Request, state: ServerState) -> RerankRequest:
    most = state.limits.max_inputs_per_request
    return await read_request(
        request,
        state.limits.max_body_bytes,
        lambda body: parse_rerank_request(body, max_documents=most),
        max_inputs=most,
    )


async def read_tokenize(
    request: Request, state: ServerState
) -> TokenizeRequest | TeiTokenizeRequest:
    """llama-server's body (`content`) or TEI's (`inputs`, whose faults then answer in
    TEI's shape too)."""
    limits = state.limits

    def parse(body: dict[str, Any]) -> TokenizeRequest | TeiTokenizeRequest:
        if not is_tei_tokenize(body):
            return parse_tokenize_request(body)
        set_error_shape(request.scope, ErrorShape.TEI)
        return parse_tei_tokenize(body, max_inputs=limits.max_inputs_per_request)

    return await read_request(
        request, limits.max_body_bytes, parse, max_inputs=limits.max_inputs_per_request
    )


async def read_decode(request: Request, state: ServerState) -> TeiDecodeRequest:
    limits = state.limits
    return await read_request(
        request,
        limits.max_body_bytes,
        lambda body: parse_tei_decode(
            body, max_inputs=limits.max_inputs_per_request, max_tokens=limits.max_tokenize_tokens
        ),
        max_inputs=limits.max_inputs_per_request,
    )


async def read_detokenize(request: Request, state: ServerState) -> DetokenizeRequest:
    limit = state.limits.max_tokenize_tokens
    return await read_request(
        request,
        state.limits.max_body_bytes,
        lambda body: parse_detokenize_request(body, max_tokens=limit),
        max_inputs=state.limits.max_inputs_per_request,
    )


async def read_cohere(request: Request, state: ServerState, *, v1: bool) -> CohereEmbedRequest:
    most = state.limits.max_inputs_per_request
    return await read_request(
        request,
        state.limits.max_body_bytes,
        lambda body: parse_cohere_request(body, max_inputs=most, v1=v1),
        max_inputs=most,
    )


async def read_weights(request: Request, state: ServerState) -> WeightsRequest:
    return await read_request(
        request,
        state.limits.max_body_bytes,
        parse_weights_request,
        max_inputs=state.limits.max_inputs_per_request,
    )


def no_cache(request: Request) -> bool:
    """`Cache-Control: no-cache` (or `no-store`) bypasses the cache, like `"cache": false`."""
    control = request.headers.get("cache-control", "").lower()
    return "no-cache" in control or "no-store" in control


def rerank_cost(query: str, documents: Sequence[str]) -> int:
    """Each pair repeats the query: bound its cost by that, not by the texts once each."""
    return len(documents) * (len(query.encode("utf-8", "surrogatepass")) + 2)


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
