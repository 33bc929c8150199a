"""Read a request body with a size cap, so an oversized upload is refused, not buffered;
decode and parse a large one off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.requests import Request

from embellama.server.errors import ApiError
from embellama.server.jsonbody import SLICE_BYTES
from embellama.server.schemas import max_body_values, parse_json_object

__all__ = ["read_body", "read_request"]

T = TypeVar("T")


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
