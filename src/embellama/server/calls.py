"""One pipeline call on behalf of a route, as every API flavour makes it: charged to the
client's tokens per minute, dropped when the client leaves (admission.charged), and
observed in the metrics and the access log. Routes of every API share these, so an
adapter adds no second path to the pipeline."""

from __future__ import annotations

from starlette.requests import Request

from embellama.inputs import InputItem
from embellama.model.tokenizer import TokenSpans
from embellama.options import EmbedOptions, RerankOptions
from embellama.pipeline import ServedModel
from embellama.results import EmbeddingResult, RerankResult
from embellama.server.admission import charged, rerank_cost
from embellama.server.state import ServerState

__all__ = ["embed", "rerank", "token_spans"]


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


async def token_spans(
    request: Request,
    state: ServerState,
    service: ServedModel,
    texts: list[str],
    options: EmbedOptions,
    *,
    add_special: bool,
) -> list[TokenSpans]:
    """TEI's /tokenize: bounded by `max_tokenize_tokens` over all inputs, its tokens
    (the prompt's included) charged like an embedding's."""
    limit = state.limits.max_tokenize_tokens
    work = service.token_spans(texts, options, add_special=add_special, max_tokens=limit)
    prefix = service.prefix_for(options) or ""
    found = await charged(request, state, texts, work, _listed, prefix=prefix)
    request.scope["state"]["access"] = {
        "model": service.name,
        "version": service.version,
        "inputs": len(texts),
        "tokens": _listed(found),
    }
    return found


def _listed(found: list[TokenSpans]) -> int:
    return sum(len(each.ids) for each in found)


def _embedded(result: EmbeddingResult) -> int:
    return result.total_tokens


def _scored(result: RerankResult) -> int:
    return result.total_tokens
