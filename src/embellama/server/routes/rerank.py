"""`POST /v1/rerank` and its aliases (Cohere's `/v2/rerank`, llama-server's `/reranking`).

Answers in the Cohere/Jina shape, which the `cohere` SDK and Jina clients parse:
`{id, model, results: [{index, relevance_score, document?}], usage, meta}`.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from embellama.errors import DrainingError
from embellama.options import RerankOptions
from embellama.results import RerankHit, RerankResult
from embellama.server.body import read_request
from embellama.server.routes.embeddings import charged
from embellama.server.schemas import parse_rerank_request
from embellama.server.state import ServerState

__all__ = ["rerank"]


async def rerank(request: Request) -> Response:
    state: ServerState = request.app.state.embellama
    if state.draining:
        raise DrainingError("the server is draining and accepts no new work")
    most = state.limits.max_inputs_per_request
    parsed = await read_request(
        request,
        state.limits.max_body_bytes,
        lambda body: parse_rerank_request(body, max_documents=most),
        max_inputs=most,
    )
    service = state.reranker(parsed.model)
    options = RerankOptions(parsed.top_n, parsed.truncate, parsed.max_tokens_per_doc)
    texts = [parsed.query, *parsed.documents]
    # Each pair repeats the query: bound its cost by that, not by the texts once each.
    most = len(parsed.documents) * (len(parsed.query.encode("utf-8", "surrogatepass")) + 2)
    work = service.rerank(parsed.query, parsed.documents, options)
    result = await charged(request, state, texts, work, _total_tokens, extra=most)
    state.metrics.observe_result(result, len(parsed.documents))
    request.scope["state"]["access"] = {
        "model": result.model,
        "documents": len(parsed.documents),
        "tokens": result.total_tokens,
    }
    payload = {
        "id": str(uuid.uuid4()),
        "object": "list",
        "model": result.model,
        "results": [_hit(hit, parsed.return_documents, parsed.raw_scores) for hit in result.hits],
        "usage": {"prompt_tokens": result.total_tokens, "total_tokens": result.total_tokens},
        "meta": {"tokens": {"input_tokens": result.total_tokens, "output_tokens": 0}},
    }
    headers = {
        "x-tokens": str(result.total_tokens),
        "x-queue-time": f"{result.timings.queue * 1000:.2f}",
        "x-inference-time": f"{result.timings.inference * 1000:.2f}",
    }
    return Response(orjson.dumps(payload), headers=headers, media_type="application/json")


def _total_tokens(result: RerankResult) -> int:
    return result.total_tokens


def _hit(hit: RerankHit, with_document: bool, raw: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "index": hit.index,
        "relevance_score": hit.logit if raw else hit.relevance_score,
    }
    if with_document:
        entry["document"] = {"text": hit.document}
    if hit.truncated:
        entry["truncated"] = True
    return entry
