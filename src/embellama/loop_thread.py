"""A private event loop on a daemon thread, for the blocking API: call it from any thread.

Closing runs a last coroutine (the engine's `aclose`, which fails every queued request
with a typed error), cancels whatever still runs, and stops the loop, so no caller is
left blocked and no task is left pending for the interpreter to complain about.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from embellama.errors import EngineClosedError

__all__ = ["LoopThread", "close_at_exit"]

T = TypeVar("T")
_CLOSED = "this EmbeddingEngine is closed"
# Finalizers of engines that may still be open when the interpreter exits.
_at_exit: set[weakref.finalize[Any, Any]] = set()
_hook_lock = threading.Lock()
_hooked = False


def close_at_exit(finalizer: weakref.finalize[Any, Any]) -> None:
    """Run `finalizer` at interpreter exit, before thread pools stop taking work.

    Closing needs them (models are freed off the loop), and `atexit` runs after
    `concurrent.futures` has shut them down; its own hook for finishing work is the one
    that runs first, so it is used when present.
    """
    global _hooked
    finalizer.atexit = False
    with _hook_lock:
        for dead in [f for f in _at_exit if not f.alive]:
            _at_exit.discard(dead)
        _at_exit.add(finalizer)
        if not _hooked:
            register = getattr(threading, "_register_atexit", atexit.register)
            register(_close_open_engines)
            _hooked = True


def _close_open_engines() -> None:
    with _hook_lock:
        pending = list(_at_exit)
        _at_exit.clear()
    for finalizer in pending:
        finalizer()


class LoopThread:
    """Runs coroutines on its own loop; `call` blocks the calling thread until done."""

    def __init__(self, name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        # Held while submitting and while deciding to close: once `_closing` is set, no
        # new work reaches the loop, and work submitted before runs ahead of the close.
        self._guard = threading.Lock()
        self._closing = False

    def call(self, work: Coroutine[Any, Any, T]) -> T:
        with self._guard:
            if self._closing:
                work.close()
                raise EngineClosedError(_CLOSED)
            future = asyncio.run_coroutine_threadsafe(work, self._loop)
        try:
            return future.result()
        except concurrent.futures.CancelledError:
            if self._closing:  # cut off by close(): a typed error, not a bare cancel
                raise EngineClosedError(_CLOSED) from None
            raise
        except BaseException:
            future.cancel()  # Ctrl-C in the caller: drop the queued work too
            raise

    def close(self, last: Callable[[], Coroutine[Any, Any, None]] | None = None) -> None:
        """Run `last()`, cancel every other task, stop the loop; only the first call acts."""
        with self._guard:
            if self._closing:
                return
            self._closing = True
        if threading.current_thread() is self._thread:
            # The collector finalized the engine on its own loop: this thread cannot wait
            # for itself, so the loop shuts down after the current callback.
            self._loop.create_task(self._shut_down(last, stop=True))
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shut_down(last), self._loop).result()
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    async def _shut_down(
        self, last: Callable[[], Coroutine[Any, Any, None]] | None, *, stop: bool = False
    ) -> None:
        try:
            if last is not None:
                await last()
        finally:
            current = asyncio.current_task()
            others = [task for task in asyncio.all_tasks() if task is not current]
            for task in others:
                task.cancel()
            await asyncio.gather(*others, return_exceptions=True)
            if stop:
                self._loop.stop()
