"""Stop waiting for work whose client has gone away, so its queued items are dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from starlette.requests import Request

from embellama.server.errors import ApiError

__all__ = ["unless_disconnected"]

T = TypeVar("T")


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work` in this task; if the client disconnects first, cancel it.

    Call only after the body was read: the next ASGI message is then the disconnect.
    Cancelling the work cancels the scheduler's wait, which marks the request's queued
    items abandoned so no worker computes them. The work runs inline and a callback on
    the one watcher task cancels it: no second task and no `asyncio.wait` per request.
    """
    current = asyncio.current_task()
    assert current is not None
    gone = False

    def on_message(watcher: asyncio.Future[Any]) -> None:
        nonlocal gone
        if not watcher.cancelled() and watcher.exception() is None:
            gone = True
            current.cancel()

    watcher = asyncio.ensure_future(request.receive())
    watcher.add_done_callback(on_message)
    try:
        return await work
    except asyncio.CancelledError:
        if not gone:
            raise
        current.uncancel()
        raise ApiError(
            499, "the client closed the connection", code="client_closed_request"
        ) from None
    finally:
        watcher.remove_done_callback(on_message)
        watcher.cancel()
