"""`POST /tokenize` and `POST /detokenize`, in llama-server's shapes and defaults, so its
clients work unchanged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import Field, PlainValidator, ValidationInfo, WithJsonSchema
from typing_extensions import TypedDict

from embellama.inputs import TokenArray, token_array
from embellama.server.wire.base import Name, OffFlag, OnFlag, Says, WireModel, limit, parse, refuse

__all__ = [
    "DetokenizeRequest",
    "DetokenizeResponse",
    "TokenPiece",
    "TokenizeRequest",
    "TokenizeResponse",
    "parse_detokenize_request",
    "parse_tokenize_request",
]

# /tokenize and /detokenize: a 413 also when the ids are over the token cap.
TOKENS_413 = (
    "Body larger than the server's limit (`request_too_large`), or more token ids than "
    "`max_tokenize_tokens` in /info (`too_many_tokens`; 262,144 by default), found "
    "before the ids of a longer text are all stored"
)


class TokenizeRequest(WireModel):
    content: Annotated[str, Says("'content' must be a string", missing_code="invalid_value")]
    model: Name = None
    add_special: OffFlag = False
    parse_special: OnFlag = Field(
        True,
        description='true reads special-token text ("[SEP]") as that token; /v1/embeddings '
        "never does, so its ids are those of add_special true and parse_special false.",
    )
    with_pieces: OffFlag = False


def parse_tokenize_request(body: Mapping[str, Any]) -> TokenizeRequest:
    return parse(TokenizeRequest, body)


_NOT_IDS = "'tokens' must be a list of token ids (integers)"


def _token_ids(value: object, info: ValidationInfo) -> TokenArray:
    ids = token_array(value) if isinstance(value, list) else None
    if ids is None:
        raise refuse(_NOT_IDS)
    most = limit(info, "max_tokens")
    if len(ids) > most:
        raise refuse(
            f"'tokens' has {len(ids)} ids; this server accepts at most {most} per request",
            status=413,
            code="too_many_tokens",
        )
    return ids


class DetokenizeRequest(WireModel):
    tokens: Annotated[
        TokenArray,
        PlainValidator(_token_ids),
        WithJsonSchema(
            {
                "type": "array",
                "items": {"type": "integer"},
                "description": "At most `max_tokenize_tokens` ids (/info); more is a 413.",
            }
        ),
        Says(_NOT_IDS, missing_code="invalid_value"),
    ]
    model: Name = None


def parse_detokenize_request(body: Mapping[str, Any], *, max_tokens: int) -> DetokenizeRequest:
    return parse(DetokenizeRequest, body, {"max_tokens": max_tokens})


class TokenPiece(TypedDict):
    id: int
    # A string when the piece is whole UTF-8, else its byte values (as llama-server).
    piece: str | list[int]


class TokenizeResponse(TypedDict):
    # Ids, or {id, piece} with `with_pieces`: encoded from numpy arrays, never per token.
    tokens: list[int] | list[TokenPiece]


class DetokenizeResponse(TypedDict):
    content: str
