"""Parse and check the JSON of `POST /v1/embeddings` into a typed request.

Every fault names the offending field in `param`, like OpenAI does. Token ids and
text content are checked later, against the model, by the tokenizer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from embellama.config import Truncation
from embellama.errors import InputError
from embellama.inputs import InputItem, TokenArray, is_token_list, parse_inputs, token_array
from embellama.prompts import InputType
from embellama.server.errors import ApiError
from embellama.server.jsonbody import NotAnObjectError, TooManyValuesError, loads_in_slices

__all__ = [
    "DetokenizeRequest",
    "EmbeddingsRequest",
    "RerankRequest",
    "TokenizeRequest",
    "max_body_values",
    "parse_detokenize_request",
    "parse_embeddings_request",
    "parse_json_object",
    "parse_rerank_request",
    "parse_tokenize_request",
]


@dataclass(frozen=True)
class EmbeddingsRequest:
    items: list[InputItem]
    model: str | None
    encoding_format: str
    dimensions: int | None
    truncate: Truncation
    normalize: bool | None
    use_cache: bool = True
    input_type: InputType | None = None
    instruction: str | None = None
    chunk_overlap: int = 0
    per_token: bool = False


# Values (strings, arrays, objects) a body may hold per input it may carry: a rerank
# document with a few fields is ~8; the rest is the other fields' room.
_VALUES_PER_INPUT, _VALUES_BESIDE = 16, 1024


def max_body_values(max_inputs: int) -> int:
    """The most strings, arrays and objects a request body with up to `max_inputs` inputs
    may hold (numbers are not counted): 33,792 for the default 2,048."""
    return _VALUES_PER_INPUT * max_inputs + _VALUES_BESIDE


def parse_json_object(body: bytes, max_values: int | None = None) -> dict[str, Any]:
    try:
        value = loads_in_slices(body, max_values)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
    except NotAnObjectError:
        value = None
    except TooManyValuesError as exc:
        raise ApiError(
            400,
            f"the request body holds over {exc.found} strings, lists and objects; this "
            f"server accepts at most {exc.limit} (see max_inputs_per_request in /info)",
            code="too_many_values",
        ) from None
    if not isinstance(value, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return value


def _bad(param: str, message: str) -> ApiError:
    return ApiError(400, message, param=param, code="invalid_value")


def parse_embeddings_request(
    body: dict[str, Any], *, max_inputs: int, max_instruction_length: int | None = None
) -> EmbeddingsRequest:
    if "input" not in body:
        raise ApiError(
            400, "'input' is a required property", param="input", code="missing_required_parameter"
        )
    raw = body["input"]
    # Counted before any item is parsed: each would cost an array ([[],[],...] in 128 KiB
    # is 44 K of them, ~50 ms on the event loop). A flat list of ids is one input.
    if isinstance(raw, list) and len(raw) > max_inputs and not is_token_list(raw):
        raise _bad(
            "input",
            f"too many inputs: {len(raw)}; this server accepts at most {max_inputs} per request",
        )
    items = parse_inputs(raw).items
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
        input_type=_input_type(body.get("input_type")),
        instruction=_instruction(body, max_instruction_length),
        chunk_overlap=_chunk_overlap(body.get("chunk_overlap")),
        per_token=_per_token(body.get("pooling")),
    )


def _per_token(value: object) -> bool:
    """Extension `"pooling": "none"`: one vector per token instead of one per input."""
    if value is None:
        return False
    if value == "none":
        return True
    raise _bad("pooling", f"'pooling' can only be 'none' (vectors per token), got {value!r}")


def _chunk_overlap(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad("chunk_overlap", f"'chunk_overlap' must be an integer >= 0, got {value!r}")
    return value


def _input_type(value: object) -> InputType | None:
    if value is None:
        return None
    try:
        return InputType.parse(value) if isinstance(value, str) else InputType.parse(str(value))
    except InputError as exc:
        raise _bad("input_type", str(exc)) from None


def _instruction(body: dict[str, Any], limit: int | None) -> str | None:
    """Bounded: the instruction is tokenized again in front of every input."""
    value = _optional_string(body, "instruction")
    if value is not None and limit is not None and len(value) > limit:
        raise _bad(
            "instruction",
            f"'instruction' has {len(value)} characters; this server accepts at most {limit}",
        )
    return value


def _optional_string(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise _bad(key, f"'{key}' must be a string")
    return value


def _truncation(value: object) -> Truncation:
    if value is None or isinstance(value, bool):
        return Truncation.parse(value)
    if isinstance(value, str) and value in ("none", "end", "start", "chunk"):
        return Truncation(value)
    raise _bad(
        "truncate", f"'truncate' must be false, true, 'end', 'start' or 'chunk', got {value!r}"
    )


def _optional_bool(body: dict[str, Any], key: str) -> bool | None:
    value = body.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise _bad(key, f"'{key}' must be true or false, got {value!r}")


@dataclass(frozen=True)
class TokenizeRequest:
    """llama-server's `/tokenize` body, with its defaults, so its clients work unchanged."""

    content: str
    model: str | None
    add_special: bool
    parse_special: bool
    with_pieces: bool


@dataclass(frozen=True)
class DetokenizeRequest:
    tokens: TokenArray
    model: str | None


def _optional_model(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("model", "'model' must be a string")
    return model


def _flag(body: dict[str, Any], key: str, default: bool) -> bool:
    value = _optional_bool(body, key)
    return default if value is None else value


def parse_tokenize_request(body: dict[str, Any]) -> TokenizeRequest:
    content = body.get("content")
    if not isinstance(content, str):
        raise _bad("content", "'content' must be a string")
    return TokenizeRequest(
        content=content,
        model=_optional_model(body),
        add_special=_flag(body, "add_special", False),
        parse_special=_flag(body, "parse_special", True),
        with_pieces=_flag(body, "with_pieces", False),
    )


def parse_detokenize_request(body: dict[str, Any], *, max_tokens: int) -> DetokenizeRequest:
    tokens = body.get("tokens")
    ids = token_array(tokens) if isinstance(tokens, list) else None
    if ids is None:
        raise _bad("tokens", "'tokens' must be a list of token ids (integers)")
    if len(ids) > max_tokens:
        raise ApiError(
            413,
            f"'tokens' has {len(ids)} ids; this server accepts at most {max_tokens} per request",
            param="tokens",
            code="too_many_tokens",
        )
    return DetokenizeRequest(tokens=ids, model=_optional_model(body))


@dataclass(frozen=True)
class RerankRequest:
    """Cohere's and Jina's rerank body (llama-server's too: `texts` for `documents`)."""

    query: str
    documents: list[str]
    model: str | None
    top_n: int | None
    return_documents: bool
    raw_scores: bool
    truncate: Truncation
    max_tokens_per_doc: int | None


def parse_rerank_request(body: dict[str, Any], *, max_documents: int) -> RerankRequest:
    query = body.get("query")
    if not isinstance(query, str):
        raise ApiError(
            400,
            "'query' is a required property and must be a string",
            param="query",
            code="missing_required_parameter" if query is None else "invalid_value",
        )
    key = "documents" if "documents" in body or "texts" not in body else "texts"
    return RerankRequest(
        query=query,
        documents=_documents(body.get(key), key, max_documents),
        model=_optional_model(body),
        top_n=_optional_positive(body, "top_n"),
        return_documents=_flag(body, "return_documents", False),
        raw_scores=_flag(body, "raw_scores", False),
        truncate=_rerank_truncation(body.get("truncate")),
        max_tokens_per_doc=_optional_positive(body, "max_tokens_per_doc"),
    )


def _documents(value: object, key: str, max_documents: int) -> list[str]:
    if not isinstance(value, list) or not value:
        raise ApiError(
            400,
            f"'{key}' must be a non-empty list of strings or of objects with 'text'",
            param=key,
            code="missing_required_parameter" if value is None else "invalid_value",
        )
    if len(value) > max_documents:
        raise _bad(
            key,
            f"too many documents: {len(value)}; this server accepts at most {max_documents} "
            "per request",
        )
    documents = []
    for index, item in enumerate(value):
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise _bad(
                f"{key}[{index}]",
                f"document {index} must be a string or an object with a string 'text'",
            )
        documents.append(text)
    return documents


def _optional_positive(body: dict[str, Any], key: str) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise _bad(key, f"'{key}' must be a positive integer, got {value!r}")
    return value


def _rerank_truncation(value: object) -> Truncation:
    """Default: cut the document's end, as Cohere and Jina do; false refuses instead."""
    if value is None or value is True or value == "end":
        return Truncation.END
    if value is False or value == "none":
        return Truncation.NONE
    raise _bad("truncate", f"'truncate' must be true, false, 'end' or 'none', got {value!r}")
