"""`POST /tokenize` and `POST /detokenize`, in llama-server's shapes: parse, call, encode.

Both are bounded by `--max-tokenize-tokens`, and answers are built from numpy arrays and
one JSON fragment per distinct token, never a Python object per token.
"""

from __future__ import annotations

import asyncio

import numpy as np
import orjson
from starlette.requests import Request
from starlette.responses import Response

from embellama.server.body import read_request
from embellama.server.encoding import encode_token_ids, encode_token_pieces
from embellama.server.errors import ApiError
from embellama.server.routes.embeddings import charged
from embellama.server.schemas import parse_detokenize_request, parse_tokenize_request
from embellama.server.state import ServerState

__all__ = ["detokenize", "tokenize"]

# Sorting and joining this many pieces takes ~1 ms; more is encoded on a thread.
_ON_LOOP_TOKENS = 16 * 1024


def _json(body: bytes) -> Response:
    return Response(body, media_type="application/json")


async def tokenize(request: Request) -> Response:
    state: ServerState = request.app.state.embellama
    limits = state.limits
    parsed = await read_request(
        request,
        limits.max_body_bytes,
        parse_tokenize_request,
        max_inputs=limits.max_inputs_per_request,
    )
    engine, limit = state.engine, limits.max_tokenize_tokens
    special = {"add_special": parsed.add_special, "parse_special": parsed.parse_special}
    text = [parsed.content]
    if not parsed.with_pieces:
        work = engine.token_ids(parsed.content, parsed.model, **special, max_tokens=limit)
        return _json(encode_token_ids(await charged(request, state, text, work, len)))
    # Ids and pieces from one model, even across a reload; charged to tokens per minute.
    pieces = engine.token_piece_table(parsed.content, parsed.model, **special, max_tokens=limit)
    table = await charged(request, state, text, pieces, lambda t: len(t.ids))
    encode = (table.distinct, table.pieces, table.positions)
    if len(table.ids) <= _ON_LOOP_TOKENS:
        return _json(encode_token_pieces(*encode))
    return _json(await asyncio.to_thread(encode_token_pieces, *encode))


async def detokenize(request: Request) -> Response:
    state: ServerState = request.app.state.embellama
    limit = state.limits.max_tokenize_tokens
    parsed = await read_request(
        request,
        state.limits.max_body_bytes,
        lambda body: parse_detokenize_request(body, max_tokens=limit),
        max_inputs=state.limits.max_inputs_per_request,
    )
    vocab = state.resolve(parsed.model).model.tokenizer.vocab_size
    bad = np.flatnonzero((parsed.tokens < 0) | (parsed.tokens >= vocab))
    if bad.size:
        raise ApiError(
            400,
            f"token id {int(parsed.tokens[bad[0]])} is outside the vocabulary (0..{vocab - 1})",
            param="tokens",
        )
    return _json(
        orjson.dumps({"content": await state.engine.detokenize(parsed.tokens, parsed.model)})
    )
