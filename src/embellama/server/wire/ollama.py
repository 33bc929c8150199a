"""Ollama's API (`/api/embed`, `/api/embeddings`, `/api/tags`, `/api/show`, `/api/ps`,
`/api/version`): its request bodies, translated into the pipeline's options, and its
answers. Field names follow Ollama's `api/types.go`.

As Ollama: `truncate` defaults to true, `keep_alive` and `options` are accepted and
ignored (unknown option keys too), and `/api/embed` answers L2-normalized vectors.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Annotated, Any, Literal, NotRequired

from pydantic import Field, PlainValidator, ValidationInfo, WithJsonSchema
from typing_extensions import TypedDict

from embellama.config import Truncation
from embellama.inputs import InputItem
from embellama.options import EmbedOptions
from embellama.server.wire.base import Name, OnFlag, Positive, Says, WireModel, limit, parse, refuse

__all__ = [
    "OllamaDetails",
    "OllamaEmbedRequest",
    "OllamaEmbedResponse",
    "OllamaEmbeddingsRequest",
    "OllamaEmbeddingsResponse",
    "OllamaModel",
    "OllamaRunning",
    "OllamaRunningList",
    "OllamaShowRequest",
    "OllamaShowResponse",
    "OllamaTags",
    "OllamaVersion",
    "ollama_model_name",
    "parse_ollama_embed",
    "parse_ollama_embeddings",
    "parse_ollama_show",
]

_LATEST = ":latest"

_INPUT_SCHEMA = {
    "description": "A string or a list of strings; at most `max_inputs_per_request` (/info).",
    "oneOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "string"}, "minItems": 1},
    ],
}
_IGNORED = {"description": "Accepted and ignored, as Ollama does for embedding models."}


def ollama_model_name(name: str | None, known: Collection[str]) -> str | None:
    """Ollama names carry a tag (`minilm:latest`); a served name without one resolves."""
    if name is None or name in known or not name.endswith(_LATEST):
        return name
    return name.removesuffix(_LATEST)


def _texts(raw: object, info: ValidationInfo) -> list[InputItem]:
    """Counted before any item is read; Ollama takes texts only (no token ids)."""
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list) or not raw:
        raise refuse("'input' must be a string or a non-empty list of strings")
    most = limit(info, "max_inputs")
    if len(raw) > most:
        raise refuse(f"too many inputs: {len(raw)}; this server accepts at most {most} per request")
    for index, item in enumerate(raw):
        if not isinstance(item, str):
            raise refuse(f"input {index} must be a string", suffix=f"[{index}]")
    return list(raw)


class OllamaEmbedRequest(WireModel):
    """`POST /api/embed`; fields are checked in this order, the first fault answers."""

    input: Annotated[
        list[InputItem],
        PlainValidator(_texts),
        WithJsonSchema(_INPUT_SCHEMA),
        Says("", missing="'input' is a required property"),
    ]
    model: Name = Field(None, description="Name or alias, `:latest` optional; default: first.")
    truncate: OnFlag = Field(
        True, description="true (default, as Ollama) cuts an input over the context at its end."
    )
    dimensions: Positive = None
    keep_alive: Annotated[object, WithJsonSchema(_IGNORED)] = None
    options: Annotated[object, WithJsonSchema(_IGNORED)] = None

    def options_for(self, *, use_cache: bool = True) -> EmbedOptions:
        return EmbedOptions(
            normalize=True,  # Ollama's /api/embed answers unit vectors whatever the model
            dimensions=self.dimensions,
            truncate=Truncation.END if self.truncate else Truncation.NONE,
            use_cache=use_cache,
        )


def parse_ollama_embed(body: Mapping[str, Any], *, max_inputs: int) -> OllamaEmbedRequest:
    return parse(OllamaEmbedRequest, body, {"max_inputs": max_inputs})


class OllamaEmbeddingsRequest(WireModel):
    """`POST /api/embeddings` (legacy): one `prompt`; an empty one answers no vector."""

    prompt: Annotated[str, Says("'prompt' must be a string", missing="'prompt' is required")]
    model: Name = None
    keep_alive: Annotated[object, WithJsonSchema(_IGNORED)] = None
    options: Annotated[object, WithJsonSchema(_IGNORED)] = None

    def options_for(self, *, use_cache: bool = True) -> EmbedOptions:
        """The model's own normalization; an input over the context loses its end."""
        return EmbedOptions(truncate=Truncation.END, use_cache=use_cache)


def parse_ollama_embeddings(body: Mapping[str, Any]) -> OllamaEmbeddingsRequest:
    return parse(OllamaEmbeddingsRequest, body)


def _show_model(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise refuse("'model' is required and must be a string", param="model")
    return value


class OllamaShowRequest(WireModel):
    """`POST /api/show`: `model` (or the deprecated `name`)."""

    model: Annotated[
        str,
        PlainValidator(_show_model),
        WithJsonSchema({"type": "string"}),
        Says("", missing="'model' is required"),
    ]
    verbose: Annotated[object, WithJsonSchema(_IGNORED)] = None


def parse_ollama_show(body: Mapping[str, Any]) -> OllamaShowRequest:
    if "model" not in body and isinstance(body.get("name"), str):
        body = {**body, "model": body["name"]}
    return parse(OllamaShowRequest, body)


class OllamaEmbedResponse(TypedDict):
    model: str
    embeddings: Annotated[object, WithJsonSchema({"type": "array", "items": {"type": "array"}})]
    total_duration: int  # nanoseconds, the request as the server saw it
    load_duration: int  # nanoseconds; models are loaded at start, so 0
    prompt_eval_count: int  # tokens embedded


class OllamaEmbeddingsResponse(TypedDict):
    embedding: Annotated[object, WithJsonSchema({"type": "array", "items": {"type": "number"}})]


class OllamaDetails(TypedDict):
    parent_model: str
    format: Literal["gguf"]
    family: str
    families: list[str]
    parameter_size: str
    quantization_level: str


class OllamaModel(TypedDict):
    name: str
    model: str
    modified_at: str  # RFC 3339
    size: int
    digest: str
    details: OllamaDetails


class OllamaTags(TypedDict):
    models: list[OllamaModel]


class OllamaRunning(TypedDict):
    name: str
    model: str
    size: int
    digest: str
    details: OllamaDetails
    expires_at: str
    size_vram: int
    context_length: int


class OllamaRunningList(TypedDict):
    models: list[OllamaRunning]


class OllamaShowResponse(TypedDict):
    license: str
    modelfile: str
    parameters: str
    template: str
    details: OllamaDetails
    model_info: dict[str, object]
    capabilities: list[str]
    modified_at: str


class OllamaVersion(TypedDict):
    version: str  # the Ollama API version these routes follow
    embellama: NotRequired[str]
