"""One pipeline call on behalf of a route, as every API flavour makes it: charged to the
client's tokens per minute, dropped when the client leaves (admission.charged), and
observed in the metrics and the access log. Routes of every API share these, so an
adapter adds no second path to the pipeline."""

from __future__ import annotations

from starlette.requests import Request

from embellama.inputs import InputItem
from embellama.options import EmbedOptions, RerankOptions
from embellama.pipeline import ServedModel
from embellama.results import EmbeddingResult, RerankResult
from embellama.server.admission import charged, rerank_cost
from embellama.server.state import ServerState

__all__ = ["embed", "rerank"]


async def embed(
    request: Request,
    state: ServerState,
    service: ServedModel,
    items: list[InputItem],
    options: EmbedOptions,
) -> EmbeddingResult:
    work = service.embed(items, options)
    prefix = service.prefix_for(options) or ""
    result = await charged(request, state, items, work, _embedded, prefix=prefix)
    state.metrics.observe_result(result, version=service.version)
    request.scope["state"]["access"] = {
        "model": result.model,
        "version": service.version,
        "inputs": len(result),
        "tokens": result.total_tokens,
        "cache_hits": result.cache_hits,
    }
    return result


async def rerank(
    request: Request,
    state: ServerState,
    service: ServedModel,
    query: str,
    documents: list[str],
    options: RerankOptions,
) -> RerankResult:
    work = service.rerank(query, documents, options)
    extra = rerank_cost(query, documents)
    result = await charged(request, state, [query, *documents], work, _scored, extra=extra)
    state.metrics.observe_result(result, len(documents), service.version)
    request.scope["state"]["access"] = {
        "model": result.model,
        "version": service.version,
        "documents": len(documents),
        "tokens": result.total_tokens,
    }
    return result


def _embedded(result: EmbeddingResult) -> int:
    return result.total_tokens


def _scored(result: RerankResult) -> int:
    return result.total_tokens
