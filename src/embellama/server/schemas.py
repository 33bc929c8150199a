"""Parse and check the JSON of `POST /v1/embeddings` into a typed request.

Every fault names the offending field in `param`, like OpenAI does. Token ids and
text content are checked later, against the model, by the tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from embellama.config import Truncation
from embellama.inputs import InputItem, parse_inputs
from embellama.server.errors import ApiError

__all__ = ["EmbeddingsRequest", "parse_embeddings_request", "parse_json_object"]


@dataclass(frozen=True)
class EmbeddingsRequest:
    items: list[InputItem]
    model: str | None
    encoding_format: str
    dimensions: int | None
    truncate: Truncation
    normalize: bool | None
    use_cache: bool = True


def parse_json_object(body: bytes) -> dict[str, Any]:
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return value


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value")


def parse_embeddings_request(body: dict[str, Any], *, max_inputs: int) -> EmbeddingsRequest:
    if "input" not in body:
        raise ApiError(
            400, "'input' is a required property", param="input", code="missing_required_parameter"
        )
    items = parse_inputs(body["input"]).items
    if len(items) > max_inputs:
        raise _bad(
            "input",
            f"too many inputs: {len(items)}; this server accepts at most {max_inputs} per request",
        )
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("model", "'model' must be a string")
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise _bad(
            "encoding_format", f"'encoding_format' must be 'float' or 'base64', got {encoding!r}"
        )
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1
    ):
        raise _bad("dimensions", f"'dimensions' must be a positive integer, got {dimensions!r}")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad("user", "'user' must be a string")
    return EmbeddingsRequest(
        items=items,
        model=model,
        encoding_format=encoding,
        dimensions=dimensions,
        truncate=_truncation(body.get("truncate")),
        normalize=_optional_bool(body, "normalize"),
        use_cache=_optional_bool(body, "cache") is not False,
    )


def _truncation(value: object) -> Truncation:
    if value is None or isinstance(value, bool):
        return Truncation.parse(value)
    if isinstance(value, str) and value in ("none", "end", "start"):
        return Truncation(value)
    raise _bad("truncate", f"'truncate' must be false, true, 'end' or 'start', got {value!r}")


def _optional_bool(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise _bad(key, f"'{key}' must be true or false, got {value!r}")
