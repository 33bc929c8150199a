"""`POST /v1/embeddings`: the OpenAI request (with our extensions) and its answer.

The request carries the options it asks for (`options()`); the answer's vectors are
encoded by `server/encoding.py` straight from numpy, never through pydantic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, NotRequired

from pydantic import (
    BeforeValidator,
    Field,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
)
from typing_extensions import TypedDict

from embellama.config import Truncation
from embellama.errors import InputError
from embellama.inputs import InputItem, is_token_list, parse_inputs
from embellama.options import EmbedOptions
from embellama.prompts import InputType
from embellama.server.wire.base import Name, Says, WireModel, limit, or_default, parse, refuse
from embellama.vectors import Quantization

__all__ = [
    "CachedTokens",
    "Embedding",
    "EmbeddingsRequest",
    "EmbeddingsResponse",
    "EmbeddingsUsage",
    "parse_embeddings_request",
]

_INPUT_SCHEMA = {
    "description": "A string, strings, token ids, or lists of token ids (not mixed); at "
    "most `max_inputs_per_request` inputs (/info; 2,048 by default).",
    "oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
        {"type": "array", "items": {"type": "integer"}, "minItems": 1},
        {"type": "array", "items": {"type": "array", "items": {"type": "integer"}}, "minItems": 1},
    ],
}


def _inputs(raw: object, info: ValidationInfo) -> list[InputItem]:
    """Counted before any item is parsed: each would cost an array ([[],[],...] in 128 KiB
    is 44 K of them, ~50 ms on the event loop). A flat list of ids is one input."""
    most = limit(info, "max_inputs")
    if isinstance(raw, list) and len(raw) > most and not is_token_list(raw):
        raise refuse(f"too many inputs: {len(raw)}; this server accepts at most {most} per request")
    return parse_inputs(raw).items


def _float_unless_set(value: object) -> object:
    """Anything falsy (null, "", false, 0) means the default format."""
    return value or "float"


def _truncation(value: object) -> Truncation:
    if value is None or isinstance(value, bool):
        return Truncation.parse(value)
    if isinstance(value, str) and value in ("none", "end", "start", "chunk"):
        return Truncation(value)
    raise refuse(f"'truncate' must be false, true, 'end', 'start' or 'chunk', got {value!r}")


def _input_type(value: object) -> InputType | None:
    if value is None:
        return None
    try:
        return InputType.parse(value if isinstance(value, str) else str(value))
    except InputError as exc:
        raise refuse(str(exc)) from None


class EmbeddingsRequest(WireModel):
    """OpenAI's body; fields are checked in this order and the first fault answers."""

    input: Annotated[
        list[InputItem],
        PlainValidator(_inputs),
        WithJsonSchema(_INPUT_SCHEMA),
        Says("", missing="'input' is a required property"),
    ]
    model: Name = Field(None, description="Name or alias; default: first model.")
    encoding_format: Annotated[
        Literal["float", "base64", "int8", "uint8", "binary", "ubinary"],
        BeforeValidator(_float_unless_set),
        Says(
            "'encoding_format' must be 'float', 'base64', 'int8', 'uint8', 'binary' or "
            "'ubinary', got {input!r}"
        ),
    ] = Field(
        "float",
        description="Extension: int8/uint8 (per-dimension ranges calibrated per model, shown "
        "in /v1/models/{id}) and binary/ubinary (sign bits, 8 per byte, big-endian) give "
        "lists of integers, as Cohere's embedding_types.",
    )
    dimensions: Annotated[
        int | None, Field(ge=1), Says("'dimensions' must be a positive integer, got {input!r}")
    ] = Field(None, description="Matryoshka cut.")
    user: Name = None
    truncate: Annotated[
        Truncation,
        PlainValidator(_truncation),
        WithJsonSchema(
            {
                "description": "Extension: what to do with an input over the context.",
                "oneOf": [{"type": "boolean"}, {"enum": ["none", "end", "start", "chunk"]}],
            }
        ),
    ] = Truncation.NONE
    normalize: Annotated[bool | None, Says("'normalize' must be true or false, got {input!r}")] = (
        Field(None, description="Extension: override L2 etc.")
    )
    cache: Annotated[bool | None, Says("'cache' must be true or false, got {input!r}")] = Field(
        None, description="Extension: false bypasses the cache."
    )
    input_type: Annotated[
        InputType | None,
        PlainValidator(_input_type),
        WithJsonSchema(
            {
                "description": "Extension: the texts' retrieval role; selects the model's "
                "query or document prefix.",
                "enum": ["query", "document", "search_query", "search_document", "passage", None],
            }
        ),
    ] = None
    instruction: Name = Field(
        None,
        description="Extension: fills the model's instruction template (queries). Needs "
        "`input_type` (a 400 without); at most `max_instruction_length` characters (/info; "
        "2,048 by default), more is a 400 (`param: instruction`).",
    )
    chunk_overlap: Annotated[
        int,
        Field(ge=0),
        or_default(0),
        Says("'chunk_overlap' must be an integer >= 0, got {input!r}"),
    ] = Field(
        0,
        description='Extension: with truncate "chunk", tokens shared by windows; with any '
        "other truncate a 400 (`param: chunk_overlap`).",
    )
    pooling: Annotated[
        Literal["none"] | None,
        Says("'pooling' can only be 'none' (vectors per token), got {input!r}"),
    ] = Field(
        None,
        description='Extension: "none" returns one vector per token (late interaction); '
        "each embedding is then a list of vectors.",
    )

    @field_validator("pooling")
    @classmethod
    def _pooled_if_quantized(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Quantized codes are of pooled vectors; per-token output stays float."""
        wanted = info.data.get("encoding_format")
        if value == "none" and wanted not in (None, "float", "base64"):
            raise refuse(
                f"'encoding_format' {wanted!r} applies to pooled vectors; with "
                "'pooling': 'none' use 'float' or 'base64'",
                param="encoding_format",
            )
        return value

    @field_validator("instruction")
    @classmethod
    def _bounded(cls, value: str | None, info: ValidationInfo) -> str | None:
        """Bounded: the instruction is tokenized again in front of every input."""
        limit = info.context.get("max_instruction_length") if info.context else None
        if value is not None and limit is not None and len(value) > limit:
            raise refuse(
                f"'instruction' has {len(value)} characters; this server accepts at most {limit}"
            )
        return value

    @property
    def items(self) -> list[InputItem]:
        return self.input

    @property
    def quantization(self) -> Quantization | None:
        """The integer form asked for, if `encoding_format` names one."""
        fmt = self.encoding_format
        return None if fmt in ("float", "base64") else Quantization(fmt)

    @property
    def per_token(self) -> bool:
        """`"pooling": "none"`: one vector per token instead of one per input."""
        return self.pooling == "none"

    def options(self, *, use_cache: bool = True) -> EmbedOptions:
        """What this request asks of the pipeline; `use_cache=False` (a `Cache-Control:
        no-cache` header) bypasses the cache whatever the body says."""
        return EmbedOptions(
            normalize=self.normalize,
            dimensions=self.dimensions,
            truncate=self.truncate,
            use_cache=use_cache and self.cache is not False,
            input_type=self.input_type,
            instruction=self.instruction,
            chunk_overlap=self.chunk_overlap,
            quantize=(self.quantization,) if self.quantization else (),
        )


def parse_embeddings_request(
    body: Mapping[str, Any], *, max_inputs: int, max_instruction_length: int | None = None
) -> EmbeddingsRequest:
    context = {"max_inputs": max_inputs, "max_instruction_length": max_instruction_length}
    return parse(EmbeddingsRequest, body, context)


class CachedTokens(TypedDict):
    cached_tokens: int


class EmbeddingsUsage(TypedDict):
    prompt_tokens: int  # every input token, cached or not
    total_tokens: int
    prompt_tokens_details: NotRequired[CachedTokens]


_VECTOR = {
    "description": "Floats, or base64 of little-endian float32, or integers for a "
    'quantized encoding_format; with "pooling": "none", a list of those, one per token.',
    "oneOf": [
        {"type": "array", "items": {"type": "number"}},  # integers too (quantized)
        {"type": "string", "contentEncoding": "base64"},
        {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        {"type": "array", "items": {"type": "string"}},
    ],
}


class Embedding(TypedDict):
    object: Literal["embedding"]
    index: int
    # A numpy row, a base64 string, or (per token) a list of those: encoded by orjson.
    embedding: Annotated[object, WithJsonSchema(_VECTOR)]


class EmbeddingsResponse(TypedDict):
    object: Literal["list"]
    data: list[Embedding]
    model: str
    usage: EmbeddingsUsage
