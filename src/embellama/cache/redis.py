"""The shared tier: raw little-endian float32 vectors in Redis, under a namespace, with a TTL.

One pipelined round trip per batch (MGET, then SETs with EX). Redis is an accelerator,
never a dependency: a timeout, an error or a value of the wrong size counts as a miss,
the outage is logged once (and its end once), and the next call tries again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from embellama.cache.keys import CacheKey

__all__ = ["RedisTier"]

_log = logging.getLogger("embellama.cache")
Vector = npt.NDArray[np.float32]
# Seconds Redis is left alone after a failure before the next call tries it again.
RETRY_AFTER_FAILURE = 1.0
# At most one "unavailable" line per this many seconds: a flapping link (or timeouts on a
# loaded machine) is counted in metrics every time, but logged as one outage.
LOG_INTERVAL = 30.0


class RedisTier:
    def __init__(
        self, url: str, *, namespace: str, ttl: float | None, timeout: float = 0.02
    ) -> None:
        import redis.asyncio as aioredis

        # For logs and /info: never the password of redis://user:password@host.
        self.url = url if "@" not in url else url.split("://")[0] + "://…@" + url.rsplit("@", 1)[1]
        self.namespace = namespace.encode() + b":"
        self.ttl = ttl
        self.timeout = timeout
        self.errors = 0
        self.timeouts = 0
        self.bad_values = 0
        self._down = False
        self._retry_at = 0.0
        self._logged_at = -LOG_INTERVAL
        self._outage_logged = False
        self._client = aioredis.Redis.from_url(
            url,  # the real one, credentials included
            socket_timeout=max(timeout * 5, 0.1),
            socket_connect_timeout=max(timeout * 5, 0.1),
            health_check_interval=0,
        )

    def _name(self, key: CacheKey) -> bytes:
        return self.namespace + key

    async def get_many(self, keys: Sequence[CacheKey], dim: int) -> list[Vector | None]:
        if not keys or self._resting():
            return [None] * len(keys)
        try:
            values = await asyncio.wait_for(
                self._client.mget([self._name(key) for key in keys]), self.timeout
            )
        except Exception as exc:  # any failure is a miss; Redis never fails a request
            self._failed(exc)
            return [None] * len(keys)
        self._recovered()
        return [self._decode(value, dim) for value in values]

    def _decode(self, value: bytes | str | None, dim: int) -> Vector | None:
        if value is None:
            return None
        if isinstance(value, str):  # a client configured to decode; never ours
            value = value.encode("latin-1")
        if len(value) != 4 * dim:  # garbage, or another model's vector: recompute
            self.bad_values += 1
            return None
        return np.frombuffer(value, dtype="<f4").astype(np.float32)

    async def put_many(self, items: Sequence[tuple[CacheKey, Vector]]) -> None:
        if not items or self._resting():
            return
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                for key, vector in items:
                    data = np.ascontiguousarray(vector, dtype="<f4").tobytes()
                    pipe.set(self._name(key), data, ex=int(self.ttl) if self.ttl else None)
                await asyncio.wait_for(pipe.execute(), self.timeout * 5)
        except Exception as exc:
            self._failed(exc)
            return
        self._recovered()

    async def clear(self, prefix: bytes = b"") -> int:
        """Delete this namespace's keys (of one model when `prefix` is its tag)."""
        removed = 0
        pattern = self.namespace + prefix + b"*"
        batch: list[bytes] = []
        async for name in self._client.scan_iter(match=pattern, count=1000):
            batch.append(name)
            if len(batch) >= 1000:
                removed += int(await self._client.delete(*batch))
                batch = []
        if batch:
            removed += int(await self._client.delete(*batch))
        return removed

    def _resting(self) -> bool:
        """After a failure, skip Redis for a second: an outage costs requests nothing."""
        return self._down and time.monotonic() < self._retry_at

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._retry_at = now + RETRY_AFTER_FAILURE
        if isinstance(exc, TimeoutError):
            self.timeouts += 1
        else:
            self.errors += 1
        if not self._down:
            self._down = True
            if now - self._logged_at >= LOG_INTERVAL:
                self._logged_at, self._outage_logged = now, True
                _log.warning(
                    "Redis cache at %s unavailable (%s); computing instead until it is back",
                    self.url,
                    type(exc).__name__,
                )

    def _recovered(self) -> None:
        if self._down:
            self._down = False
            if self._outage_logged:
                self._outage_logged = False
                _log.warning("Redis cache at %s is back", self.url)

    async def close(self) -> None:
        await self._client.aclose()
