"""`POST /v1/rerank` and its aliases (Cohere's `/v2/rerank`, llama-server's `/reranking`):
admit, rerank, encode in the Cohere/Jina shape."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from embellama.server import calls
from embellama.server.admission import read_rerank, serving
from embellama.server.assignment import assignment_key
from embellama.server.encoding import encode_rerank, json_response, rerank_headers, version_header

__all__ = ["rerank"]


async def rerank(request: Request) -> Response:
    state = serving(request)
    parsed = await read_rerank(request, state)
    service = state.reranker(parsed.model, assignment_key(request))
    result = await calls.rerank(
        request, state, service, parsed.query, parsed.documents, parsed.options()
    )
    body = encode_rerank(result, with_documents=parsed.return_documents, raw=parsed.raw_scores)
    headers = {**rerank_headers(result), **version_header(service.version)}
    return json_response(body, headers=headers)
