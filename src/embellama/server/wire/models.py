"""`GET /v1/models` and `GET /v1/models/{id}`: OpenAI's model cards, with our facts."""

from __future__ import annotations

from typing import Literal, NotRequired

from typing_extensions import TypedDict

__all__ = ["ModelCard", "ModelList", "QuantizationCard"]


class Bounds(TypedDict):
    low: list[float]
    high: list[float]


class QuantizationCard(TypedDict):
    """What int8/uint8 codes mean for this model: uint8 code k of dimension i stands for
    low[i] + (k + 0.5) * (high[i] - low[i]) / 255 (an int8 code is k - 128)."""

    types: list[str]
    calibration: str  # "built-in" or the calibration file's path
    calibration_texts: int
    ranges: Bounds | None


class ModelCard(TypedDict):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    root: NotRequired[str]
    aliases: NotRequired[list[str]]
    dimensions: NotRequired[int]
    context_length: NotRequired[int]
    kind: NotRequired[Literal["embedding", "rerank"]]
    architecture: NotRequired[str]
    verified: NotRequired[bool]
    # What runs the forward pass: "llama.cpp" or "onnxruntime".
    engine: NotRequired[str]
    pooling: NotRequired[str]
    normalization: NotRequired[str]
    prompts: NotRequired[dict[str, object] | None]
    # Which version of its name this is ("1" for a model with only one).
    version: NotRequired[str]
    # A versioned name's card: each version's weight (its share of the requests).
    versions: NotRequired[dict[str, float]]
    quantization: NotRequired[QuantizationCard | None]
    # "failed": listed so clients see the model is missing; `error` says why.
    status: Literal["ready", "failed"]
    error: NotRequired[str]


class ModelList(TypedDict):
    object: Literal["list"]
    data: list[ModelCard]
