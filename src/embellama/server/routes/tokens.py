"""`POST /tokenize` and `POST /detokenize`, in llama-server's shapes: admit, call, encode.
`/tokenize` answers TEI's shape to TEI's body (`inputs`, no `content`): its tokens with
their character spans, through the same admission, charging and token cap.

Both are bounded by `--max-tokenize-tokens`, and answers are built from numpy arrays and
one JSON fragment per distinct token, never a Python object per token.
"""

from __future__ import annotations

import asyncio

import numpy as np
from starlette.requests import Request
from starlette.responses import Response

from embellama.server import calls
from embellama.server.admission import charged, read_detokenize, read_tokenize, state_of
from embellama.server.assignment import assignment_key
from embellama.server.encoding import (
    encode_detokenized,
    encode_token_ids,
    encode_token_pieces,
    json_response,
    version_header,
)
from embellama.server.errors import ApiError
from embellama.server.tei import encode_tei_tokens
from embellama.server.wire.tei import TeiTokenizeRequest

__all__ = ["detokenize", "tokenize"]

# Sorting and joining this many pieces takes ~1 ms; more is encoded on a thread.
_ON_LOOP_TOKENS = 16 * 1024


async def tokenize(request: Request) -> Response:
    state = state_of(request)
    parsed = await read_tokenize(request, state)
    engine, limit = state.engine, state.limits.max_tokenize_tokens
    # The version this client's embeddings get; tokenized by it, pinned by its name.
    service = state.resolve(parsed.model, assignment_key(request))
    model, headers = service.name, version_header(service.version)
    if isinstance(parsed, TeiTokenizeRequest):
        found = await calls.token_spans(
            request,
            state,
            service,
            parsed.texts,
            parsed.options(),
            add_special=parsed.add_special_tokens,
        )
        return json_response(await asyncio.to_thread(encode_tei_tokens, found), headers=headers)
    special = {"add_special": parsed.add_special, "parse_special": parsed.parse_special}
    text = [parsed.content]
    if not parsed.with_pieces:
        work = engine.token_ids(parsed.content, model, **special, max_tokens=limit)
        ids = await charged(request, state, text, work, len)
        return json_response(encode_token_ids(ids), headers=headers)
    # Ids and pieces from one model, even across a reload; charged to tokens per minute.
    pieces = engine.token_piece_table(parsed.content, model, **special, max_tokens=limit)
    table = await charged(request, state, text, pieces, lambda t: len(t.ids))
    encode = (table.distinct, table.pieces, table.positions)
    if len(table.ids) <= _ON_LOOP_TOKENS:
        return json_response(encode_token_pieces(*encode), headers=headers)
    return json_response(await asyncio.to_thread(encode_token_pieces, *encode), headers=headers)


async def detokenize(request: Request) -> Response:
    state = state_of(request)
    parsed = await read_detokenize(request, state)
    service = state.resolve(parsed.model, assignment_key(request))
    vocab = service.model.tokenizer.vocab_size
    bad = np.flatnonzero((parsed.tokens < 0) | (parsed.tokens >= vocab))
    if bad.size:
        raise ApiError(
            400,
            f"token id {int(parsed.tokens[bad[0]])} is outside the vocabulary (0..{vocab - 1})",
            param="tokens",
        )
    content = await state.engine.detokenize(parsed.tokens, service.name)
    return json_response(encode_detokenized(content), headers=version_header(service.version))
