"""Memory in front of Redis, plus single-flight: identical inputs in flight are computed once.

`resolve` is the whole protocol for the pipeline: give it the keys of a request and a
function that computes the vectors of the keys nobody has; get every vector back. Hits
come from memory, then Redis; keys another request is already computing are awaited;
the rest are computed once, stored in both tiers, and handed to every waiter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from embellama.cache.keys import CacheKey, parse_size
from embellama.cache.memory import MemoryCache
from embellama.cache.redis import RedisTier

__all__ = ["CacheStats", "EmbeddingCache"]

_log = logging.getLogger("embellama.cache")
Vector = npt.NDArray[np.float32]
# Computes the vectors of the given positions of a request, in that order.
Compute = Callable[[list[int]], Awaitable[list[Vector]]]


class _OwnerGoneError(Exception):
    """The request computing a shared key failed or left; its waiters compute themselves."""


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    shared: int = 0  # found in flight: computed once for another caller


@dataclass(frozen=True)
class Lookup:
    """Per input of one request: its vector, and whether it came from the cache."""

    vectors: list[Vector]
    hit: list[bool]


@dataclass
class EmbeddingCache:
    """The cache object the library and the server share; `memory_bytes=0` turns it off."""

    memory: MemoryCache
    redis: RedisTier | None = None
    stats: CacheStats = field(default_factory=CacheStats)
    _inflight: dict[CacheKey, asyncio.Future[Vector]] = field(default_factory=dict)
    _writes: set[asyncio.Task[None]] = field(default_factory=set)

    @classmethod
    def create(
        cls,
        size: str | int = "256MB",
        *,
        redis_url: str | None = None,
        namespace: str = "embellama",
        ttl: float | None = 7 * 24 * 3600,
        redis_read_timeout: float = 0.02,
        redis_write_timeout: float = 0.1,
    ) -> EmbeddingCache:
        """`redis_*_timeout`: seconds for a small call; larger ones get more per MiB."""
        redis = (
            RedisTier(
                redis_url,
                namespace=namespace,
                ttl=ttl,
                read_timeout=redis_read_timeout,
                write_timeout=redis_write_timeout,
            )
            if redis_url
            else None
        )
        return cls(MemoryCache(parse_size(size)), redis)

    def describe(self) -> dict[str, Any]:
        return {
            "memory_bytes": self.memory.max_bytes,
            "redis": self.redis.url if self.redis else None,  # credentials masked
            "namespace": self.redis.namespace.decode()[:-1] if self.redis else None,
            "ttl_seconds": self.redis.ttl if self.redis else None,
        }

    async def resolve(self, keys: Sequence[CacheKey], dim: int, compute: Compute) -> Lookup:
        vectors: list[Vector | None] = [self.memory.get(key) for key in keys]
        hit = [vector is not None for vector in vectors]
        missing = [i for i, vector in enumerate(vectors) if vector is None]
        loop = asyncio.get_running_loop()
        while missing:
            # Claim keys before any await, so a concurrent caller waits instead of also
            # looking them up and computing them.
            waiting: dict[int, asyncio.Future[Vector]] = {}
            mine: dict[CacheKey, int] = {}  # first position of each key this call resolves
            for i in missing:
                if keys[i] not in self._inflight:
                    mine[keys[i]] = i
                    self._inflight[keys[i]] = loop.create_future()
                waiting[i] = self._inflight[keys[i]]
            self.stats.shared += len(waiting) - len(mine)
            if mine:
                for i in await self._fill(mine, dim, compute):
                    hit[i] = True
            missing = []
            for i, future in waiting.items():
                try:
                    vectors[i] = await asyncio.shield(future)
                except _OwnerGoneError:  # its resolving request failed or left: try ourselves
                    missing.append(i)
        self.stats.hits += sum(hit)
        return Lookup([v for v in vectors if v is not None], hit)

    async def _fill(self, mine: dict[CacheKey, int], dim: int, compute: Compute) -> list[int]:
        """Resolve the claimed keys from Redis, else by computing; return Redis's hits."""
        try:
            found: list[Vector | None] = [None] * len(mine)
            if self.redis is not None:
                found = await self.redis.get_many(list(mine), dim)
            todo = [
                (key, i)
                for (key, i), vector in zip(mine.items(), found, strict=True)
                if vector is None
            ]
            self.stats.misses += len(todo)
            computed = await compute([i for _, i in todo]) if todo else []
        except BaseException:
            for key in mine:
                future = self._inflight.pop(key)
                future.set_exception(_OwnerGoneError())
                future.exception()  # marked retrieved: no waiter is not an error
            raise
        for key, vector in zip(mine, found, strict=True):
            if vector is not None:
                self._publish(key, vector)
        for (key, _), vector in zip(todo, computed, strict=True):
            self._publish(key, vector)
        if self.redis is not None and todo:
            self._write_behind([(key, v) for (key, _), v in zip(todo, computed, strict=True)])
        return [
            i for (key, i), vector in zip(mine.items(), found, strict=True) if vector is not None
        ]

    def _publish(self, key: CacheKey, vector: Vector) -> None:
        self.memory.put(key, vector)
        self._inflight.pop(key).set_result(vector)

    def _write_behind(self, items: list[tuple[CacheKey, Vector]]) -> None:
        """Store in Redis without making the caller wait for the round trip."""
        assert self.redis is not None
        task = asyncio.ensure_future(self.redis.put_many(items))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def clear(self, prefix: bytes = b"") -> dict[str, int]:
        removed = {"memory": self.memory.clear(prefix)}
        if self.redis is not None:
            removed["redis"] = await self.redis.clear(prefix)
        return removed

    async def close(self) -> None:
        await asyncio.gather(*self._writes, return_exceptions=True)
        if self.redis is not None:
            await self.redis.close()
