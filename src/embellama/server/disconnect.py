"""Stop waiting for work whose client has gone away, so its queued items are dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from embellama.server.errors import ApiError

__all__ = ["unless_disconnected"]

T = TypeVar("T")


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`; if the client disconnects first, cancel it.

    Call only after the body was read: the next ASGI message is then the disconnect.
    Cancelling the work cancels the scheduler's wait, which marks the request's queued
    items abandoned so no worker computes them.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(request.receive())
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    raise ApiError(499, "the client closed the connection", code="client_closed_request")
