"""TEI's API: `POST /embed`, `POST /embed_all`, `POST /rerank` (TEI's answer for a `texts`
body, Cohere/Jina's for `documents`) and `POST /` (rerank for a `query` + `texts` body,
else embed, as TEI's root route) and `POST /decode` (`/tokenize` with TEI's body is
answered by routes/tokens.py, the route of that path). Admit, translate into the one pipeline's options,
encode TEI's bare lists; errors answer `{"error", "error_type"}` with TEI's 413/422."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from embellama.server import calls
from embellama.server.admission import charged, no_cache, read_decode, serving, state_of
from embellama.server.assignment import assignment_key
from embellama.server.body import read_request
from embellama.server.encoding import (
    embedding_headers,
    encode_rerank,
    json_response,
    rerank_headers,
    version_header,
)
from embellama.server.errors import ErrorShape, set_error_shape
from embellama.server.state import ServerState
from embellama.server.tei import (
    encode_tei_decode,
    encode_tei_embed,
    encode_tei_embed_all,
    encode_tei_rerank,
)
from embellama.server.wire.rerank import RerankRequest, parse_rerank_request
from embellama.server.wire.tei import (
    TeiEmbedRequest,
    TeiRerankRequest,
    is_tei_rerank,
    parse_tei_embed,
    parse_tei_embed_all,
    parse_tei_rerank,
)

__all__ = ["tei_decode", "tei_embed", "tei_embed_all", "tei_rerank", "tei_root"]

T = TypeVar("T")


async def _read(request: Request, state: ServerState, parse: Callable[[dict[str, Any]], T]) -> T:
    limits = state.limits
    return await read_request(
        request, limits.max_body_bytes, parse, max_inputs=limits.max_inputs_per_request
    )


def _truncated(indices: list[int]) -> dict[str, str]:
    """TEI's answer is a bare list: which inputs were cut goes in `x-truncated`."""
    return {"x-truncated": ",".join(map(str, sorted(indices))) or "none"}


def _cut(flags: tuple[bool, ...]) -> list[int]:
    return [index for index, was in enumerate(flags) if was]


async def tei_embed(request: Request) -> Response:
    state = serving(request)
    most = state.limits.max_inputs_per_request
    parsed = await _read(request, state, lambda body: parse_tei_embed(body, max_inputs=most))
    return await _embed(request, state, parsed)


async def _embed(request: Request, state: ServerState, parsed: TeiEmbedRequest) -> Response:
    service = state.embedder(parsed.model, assignment_key(request))
    options = parsed.options(use_cache=not no_cache(request))
    result = await calls.embed(request, state, service, parsed.inputs, options)
    headers = {
        **embedding_headers(result, parsed.inputs),
        **_truncated(_cut(result.truncated)),
        **version_header(service.version),
    }
    return json_response(encode_tei_embed(result), headers=headers)


async def tei_embed_all(request: Request) -> Response:
    state = serving(request)
    most = state.limits.max_inputs_per_request
    parsed = await _read(request, state, lambda body: parse_tei_embed_all(body, max_inputs=most))
    service = state.embedder(parsed.model, assignment_key(request))
    options = parsed.options()
    work = service.embed_tokens(parsed.inputs, options, service.limits.max_token_vectors)
    prefix = service.prefix_for(options) or ""  # prompt_name: reserved for every input too
    matrices, counts = await charged(
        request, state, parsed.inputs, work, lambda done: sum(done[1]), prefix=prefix
    )
    request.scope["state"]["access"] = {
        "model": service.name,
        "version": service.version,
        "tokens": sum(counts),
    }
    headers = {"x-tokens": str(sum(counts)), **version_header(service.version)}
    return json_response(encode_tei_embed_all(matrices), headers=headers)


async def tei_rerank(request: Request) -> Response:
    """TEI's answer for TEI's body (`texts`), Cohere/Jina's for theirs (`documents`)."""
    state = serving(request)
    parsed = await _read(request, state, _rerank_parser(request, state))
    if isinstance(parsed, TeiRerankRequest):
        return await _tei_rerank(request, state, parsed)
    service = state.reranker(parsed.model, assignment_key(request))
    options = parsed.options()
    result = await calls.rerank(request, state, service, parsed.query, parsed.documents, options)
    body = encode_rerank(result, with_documents=parsed.return_documents, raw=parsed.raw_scores)
    return json_response(
        body, headers={**rerank_headers(result), **version_header(service.version)}
    )


def _rerank_parser(
    request: Request, state: ServerState
) -> Callable[[dict[str, Any]], TeiRerankRequest | RerankRequest]:
    most = state.limits.max_inputs_per_request

    def parse(body: dict[str, Any]) -> TeiRerankRequest | RerankRequest:
        if not is_tei_rerank(body):
            return parse_rerank_request(body, max_documents=most)
        set_error_shape(request.scope, ErrorShape.TEI)  # its faults in TEI's shape too
        return parse_tei_rerank(body, max_inputs=most)

    return parse


async def _tei_rerank(request: Request, state: ServerState, parsed: TeiRerankRequest) -> Response:
    service = state.reranker(parsed.model, assignment_key(request))
    result = await calls.rerank(
        request, state, service, parsed.query, parsed.texts, parsed.options()
    )
    body = encode_tei_rerank(result, with_text=parsed.return_text, raw=parsed.raw_scores)
    headers = {
        **rerank_headers(result),
        **_truncated([h.index for h in result.hits if h.truncated]),
        **version_header(service.version),
    }
    return json_response(body, headers=headers)


async def tei_root(request: Request) -> Response:
    """TEI's root route: rerank for a `query` + `texts` body, embed for `inputs`."""
    state = serving(request)
    most = state.limits.max_inputs_per_request

    def parse(body: dict[str, Any]) -> TeiEmbedRequest | TeiRerankRequest:
        if "texts" in body and "inputs" not in body:
            return parse_tei_rerank(body, max_inputs=most)
        return parse_tei_embed(body, max_inputs=most)

    parsed = await _read(request, state, parse)
    if isinstance(parsed, TeiRerankRequest):
        return await _tei_rerank(request, state, parsed)
    return await _embed(request, state, parsed)


async def tei_decode(request: Request) -> Response:
    """Token ids back to text, one string per id list (an id outside the vocabulary is
    TEI's 422)."""
    state = state_of(request)
    parsed = await read_decode(request, state)
    service = state.resolve(parsed.model, assignment_key(request))
    keep = not parsed.skip_special_tokens
    texts = await service.decode_ids(parsed.ids, keep_special=keep)
    return json_response(encode_tei_decode(texts), headers=version_header(service.version))
