"""`POST /v2/embed` and `/v1/embed`: Cohere's embed bodies and answers (the `cohere` SDK's
`ClientV2.embed` and `Client.embed`), translated into the pipeline's options.

Texts only: images (and image parts of `inputs`) are refused with a 400 that says so.
`input_type` maps onto the prefix table (prompts.py); `embedding_types` onto the
quantized forms of vectors.py, so the integers are exactly `/v1/embeddings`' int8 etc.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, Self

from pydantic import Field, PlainValidator, ValidationInfo, WithJsonSchema, model_validator
from typing_extensions import TypedDict

from embellama.config import Truncation
from embellama.options import EmbedOptions
from embellama.prompts import InputType
from embellama.server.wire.base import Name, Positive, Says, WireModel, limit, parse, refuse
from embellama.vectors import Quantization

__all__ = [
    "COHERE_TYPES",
    "CohereEmbedRequest",
    "CohereEmbedV1Request",
    "CohereEmbeddings",
    "CohereFloatsResponse",
    "CohereMeta",
    "CohereResponse",
    "parse_cohere_request",
]

# Cohere's embedding types, in the order an answer lists them.
COHERE_TYPES = ("float", "int8", "uint8", "binary", "ubinary", "base64")
_IMAGES = "images are not supported: this server embeds text only"
# Cohere's input types; the two search ones select the model's prefixes, classification
# and clustering embed the text as it is (no prefix), "image" is refused.
_INPUT_TYPES: dict[str, InputType | None] = {
    "search_document": InputType.DOCUMENT,
    "search_query": InputType.QUERY,
    "classification": None,
    "clustering": None,
}


def _count(value: list[Any], info: ValidationInfo, what: str) -> None:
    most = limit(info, "max_inputs")
    if len(value) > most:
        raise refuse(
            f"too many {what}: {len(value)}; this server accepts at most {most} per request"
        )


def _texts(value: object, info: ValidationInfo) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise refuse("'texts' must be a non-empty list of strings")
    _count(value, info, "texts")
    for index, text in enumerate(value):
        if not isinstance(text, str):
            raise refuse(f"texts[{index}] must be a string", suffix=f"[{index}]")
    return value


def _inputs(value: object, info: ValidationInfo) -> list[str] | None:
    """Each input's text parts, joined by a newline; an image part is refused."""
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        raise refuse("'inputs' must be a non-empty list of {\"content\": [...]} objects")
    _count(value, info, "inputs")
    return [_input_text(item, index) for index, item in enumerate(value)]


def _input_text(item: object, index: int) -> str:
    content = item.get("content") if isinstance(item, dict) else None
    if not isinstance(content, list) or not content:
        raise refuse(
            f"inputs[{index}] must be an object with a non-empty 'content' list",
            suffix=f"[{index}]",
        )
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("image_url", "image"):
            raise refuse(
                f"inputs[{index}]: {_IMAGES}", suffix=f"[{index}]", code="unsupported_input"
            )
        text = part.get("text") if isinstance(part, dict) else None
        if kind != "text" or not isinstance(text, str):
            raise refuse(
                f'inputs[{index}]: each content part must be {{"type": "text", "text": a string}}',
                suffix=f"[{index}]",
            )
        texts.append(text)
    return "\n".join(texts)


def _no_images(value: object) -> None:
    if value:  # [] and null are "no images"
        raise refuse(_IMAGES, code="unsupported_input")


def _input_type(value: object) -> InputType | None:
    if value is None:
        return None
    if value == "image":
        raise refuse(f"input_type 'image': {_IMAGES}", code="unsupported_input")
    if not isinstance(value, str) or value not in _INPUT_TYPES:
        raise refuse(f"'input_type' must be one of {', '.join(_INPUT_TYPES)}, got {value!r}")
    return _INPUT_TYPES[value]


def _types(value: object) -> tuple[str, ...] | None:
    """Each named type once, in Cohere's order; null or [] is absent."""
    if value is None or value == []:
        return None
    if not isinstance(value, list) or any(item not in COHERE_TYPES for item in value):
        raise refuse(
            f"'embedding_types' must be a list of {', '.join(COHERE_TYPES)}, got {value!r}"
        )
    return tuple(kind for kind in COHERE_TYPES if kind in value)


_TRUNCATION = {"NONE": Truncation.NONE, "START": Truncation.START, "END": Truncation.END}


def _truncate(value: object) -> str:
    if value is None:
        return "END"  # Cohere's default
    if not isinstance(value, str) or value not in _TRUNCATION:
        raise refuse(f"'truncate' must be NONE, START or END, got {value!r}")
    return value


_TEXTS = {"type": ["array", "null"], "items": {"type": "string"}, "minItems": 1}
_INPUTS = {
    "type": ["array", "null"],
    "minItems": 1,
    "items": {
        "type": "object",
        "properties": {"content": {"type": "array", "items": {"type": "object"}}},
    },
    "description": 'Text parts only ({"type": "text", "text": ...}), joined by newlines.',
}


class CohereEmbedRequest(WireModel):
    """Cohere's v2 body; `texts` or `inputs`, never both."""

    model: Name = Field(None, description="Name or alias; default: first model.")
    texts: Annotated[list[str] | None, PlainValidator(_texts), WithJsonSchema(_TEXTS)] = None
    inputs: Annotated[list[str] | None, PlainValidator(_inputs), WithJsonSchema(_INPUTS)] = None
    images: Annotated[
        None,
        PlainValidator(_no_images),
        WithJsonSchema(
            {"type": ["array", "null"], "maxItems": 0, "description": "Refused: text only."}
        ),
    ] = None
    input_type: Annotated[
        InputType | None,
        PlainValidator(_input_type),
        WithJsonSchema({"enum": [*_INPUT_TYPES, None]}),
    ] = None
    embedding_types: Annotated[
        tuple[str, ...] | None,
        PlainValidator(_types),
        WithJsonSchema({"type": ["array", "null"], "items": {"enum": list(COHERE_TYPES)}}),
    ] = None
    truncate: Annotated[
        str, PlainValidator(_truncate), WithJsonSchema({"enum": ["NONE", "START", "END"]})
    ] = "END"
    output_dimension: Positive = Field(None, description="Matryoshka cut.")
    max_tokens: Annotated[
        None,
        PlainValidator(lambda value: _unsupported("max_tokens", value)),
        WithJsonSchema({"type": "null", "description": "Refused: use truncate."}),
    ] = None
    priority: Annotated[int | None, Says("'priority' must be an integer, got {input!r}")] = None

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if self.inputs is not None and self.texts is not None:
            raise refuse("give 'texts' or 'inputs', not both", param="inputs")
        if self.inputs is None and self.texts is None:
            raise refuse(
                "'texts' (or 'inputs') is a required property",
                code="missing_required_parameter",
                param="texts",
            )
        return self

    @property
    def items(self) -> list[str]:
        texts = self.texts if self.texts is not None else self.inputs
        assert texts is not None  # _one_source
        return texts

    @property
    def types(self) -> tuple[str, ...]:
        return self.embedding_types or ("float",)

    @property
    def by_type(self) -> bool:
        """v2 always answers by type; v1 only when `embedding_types` was given."""
        return True

    def options(self, *, use_cache: bool = True) -> EmbedOptions:
        """`use_cache=False`: a `Cache-Control: no-cache` header."""
        return EmbedOptions(
            use_cache=use_cache,
            dimensions=self.output_dimension,
            truncate=_TRUNCATION[self.truncate],
            input_type=self.input_type,
            quantize=tuple(
                Quantization(kind) for kind in self.types if kind in tuple(Quantization)
            ),
        )


def _unsupported(name: str, value: object) -> None:
    if value is not None:
        raise refuse(f"'{name}' is not supported by this server; use 'truncate'")


class CohereEmbedV1Request(CohereEmbedRequest):
    """Cohere's v1 body: `texts`, floats in a bare list unless `embedding_types` is given."""

    @property
    def by_type(self) -> bool:
        return self.embedding_types is not None


def parse_cohere_request(
    body: Mapping[str, Any], *, max_inputs: int, v1: bool = False
) -> CohereEmbedRequest:
    model = CohereEmbedV1Request if v1 else CohereEmbedRequest
    return parse(model, body, {"max_inputs": max_inputs})


class CohereEmbeddings(TypedDict, total=False):
    # numpy rows (orjson encodes them) or base64 strings of little-endian float32.
    float: list[object]
    int8: list[object]
    uint8: list[object]
    binary: list[object]
    ubinary: list[object]
    base64: list[str]


class BilledUnits(TypedDict):
    input_tokens: int


class ApiVersion(TypedDict):
    version: str


class CohereMeta(TypedDict):
    api_version: ApiVersion
    billed_units: BilledUnits


class CohereResponse(TypedDict):
    id: str
    embeddings: CohereEmbeddings
    texts: list[str]
    meta: CohereMeta
    response_type: Literal["embeddings_by_type"]


class CohereFloatsResponse(TypedDict):
    """v1 without `embedding_types`: a bare list of float vectors."""

    id: str
    embeddings: list[object]
    texts: list[str]
    meta: CohereMeta
    response_type: Literal["embeddings_floats"]
