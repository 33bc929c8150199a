"""Leases on a model's native handles: free them only after the last user is done.

Every call that touches llama.cpp memory (decode, tokenize, detokenize, pieces) holds a
lease for its whole duration, on whatever thread it runs. Retiring refuses new leases
with a typed error; the owner frees the handles once the count is back at zero.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from embellama.errors import ModelUnloadingError

__all__ = ["Leases"]


class Leases:
    """A count of the calls using one model, and whether new ones are still allowed."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._changed = threading.Condition(threading.Lock())
        self._held = 0
        self._retired = False

    @property
    def held(self) -> int:
        return self._held

    @property
    def retired(self) -> bool:
        return self._retired

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Keep the handles alive for the block; raises `ModelUnloadingError` once retired."""
        with self._changed:
            if self._retired:
                raise ModelUnloadingError(self._name)
            self._held += 1
        try:
            yield
        finally:
            with self._changed:
                self._held -= 1
                if self._held == 0:
                    self._changed.notify_all()

    def retire(self, timeout: float | None = None) -> bool:
        """Refuse new leases, then wait for the held ones to end (False on timeout)."""
        with self._changed:
            self._retired = True
            return self._changed.wait_for(lambda: self._held == 0, timeout)
