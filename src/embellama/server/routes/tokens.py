"""`POST /tokenize` and `POST /detokenize`, in llama-server's shapes: parse, call, encode."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from embellama.server.body import read_body
from embellama.server.errors import ApiError
from embellama.server.routes.embeddings import charged
from embellama.server.schemas import (
    parse_detokenize_request,
    parse_json_object,
    parse_tokenize_request,
)
from embellama.server.state import ServerState

__all__ = ["detokenize", "tokenize"]


def _json(value: object) -> Response:
    return Response(orjson.dumps(value), media_type="application/json")


async def _body(request: Request) -> tuple[ServerState, dict[str, Any]]:
    state: ServerState = request.app.state.embellama
    return state, parse_json_object(await read_body(request, state.limits.max_body_bytes))


async def tokenize(request: Request) -> Response:
    state, body = await _body(request)
    parsed = parse_tokenize_request(body)
    work = state.engine.tokenize(
        parsed.content,
        parsed.model,
        add_special=parsed.add_special,
        parse_special=parsed.parse_special,
    )
    ids = await charged(request, state, [parsed.content], work, len)  # tokens per minute
    if not parsed.with_pieces:
        return _json({"tokens": ids})
    pieces = await state.engine.token_pieces(ids, parsed.model)
    return _json(
        {"tokens": [{"id": i, "piece": _piece(p)} for i, p in zip(ids, pieces, strict=True)]}
    )


def _piece(data: bytes) -> str | list[int]:
    """A string when the piece is whole UTF-8, else its byte values (as llama-server)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return list(data)


async def detokenize(request: Request) -> Response:
    state, body = await _body(request)
    parsed = parse_detokenize_request(body)
    vocab = state.resolve(parsed.model).model.tokenizer.vocab_size
    bad = next((t for t in parsed.tokens if not 0 <= t < vocab), None)
    if bad is not None:
        raise ApiError(
            400, f"token id {bad} is outside the vocabulary (0..{vocab - 1})", param="tokens"
        )
    return _json({"content": await state.engine.detokenize(parsed.tokens, parsed.model)})
