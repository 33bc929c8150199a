"""Read a request body with a size cap, so an oversized upload is refused, not buffered;
decode it as a JSON object (a large one off the event loop) and parse it into a wire
declaration."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from starlette.requests import Request

from embellama.server.errors import ApiError
from embellama.server.jsonbody import (
    SLICE_BYTES,
    NotAnObjectError,
    TooManyValuesError,
    loads_in_slices,
)

__all__ = ["max_body_values", "parse_json_object", "read_body", "read_request"]

T = TypeVar("T")

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


def _too_large(limit: int) -> ApiError:
    return ApiError(
        413,
        f"the request body is larger than this server's limit of {limit} bytes",
        code="request_too_large",
    )


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_request(
    request: Request,
    limit: int,
    parse: Callable[[dict[str, Any]], T],
    *,
    max_inputs: int | None = None,
) -> T:
    """The body, decoded as a JSON object and parsed by `parse`; a large body on a thread,
    where decoding and checking take the GIL in short steps (a 12 MB body of token ids
    took ~1.3 s of the loop's time). `max_inputs` bounds the values the body may hold
    (`max_body_values`), counted before any is built."""
    body = await read_body(request, limit)
    most = None if max_inputs is None else max_body_values(max_inputs)

    def decode() -> T:
        return parse(parse_json_object(body, most))

    if len(body) <= SLICE_BYTES:
        return decode()
    return await asyncio.to_thread(decode)
