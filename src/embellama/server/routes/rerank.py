"""`POST /v1/rerank` and its aliases (Cohere's `/v2/rerank`, llama-server's `/reranking`):
admit, rerank, encode in the Cohere/Jina shape."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from embellama.results import RerankResult
from embellama.server.admission import charged, read_rerank, rerank_cost, serving
from embellama.server.assignment import assignment_key
from embellama.server.encoding import encode_rerank, json_response, rerank_headers, version_header

__all__ = ["rerank"]


async def rerank(request: Request) -> Response:
    state = serving(request)
    parsed = await read_rerank(request, state)
    service = state.reranker(parsed.model, assignment_key(request))
    work = service.rerank(parsed.query, parsed.documents, parsed.options())
    texts = [parsed.query, *parsed.documents]
    result = await charged(request, state, texts, work, _total_tokens, extra=rerank_cost(parsed))
    state.metrics.observe_result(result, len(parsed.documents), service.version)
    request.scope["state"]["access"] = {
        "model": result.model,
        "version": service.version,
        "documents": len(parsed.documents),
        "tokens": result.total_tokens,
    }
    body = encode_rerank(result, with_documents=parsed.return_documents, raw=parsed.raw_scores)
    return json_response(
        body, headers={**rerank_headers(result), **version_header(service.version)}
    )


def _total_tokens(result: RerankResult) -> int:
    return result.total_tokens
