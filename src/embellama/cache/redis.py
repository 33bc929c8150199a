"""The shared tier: raw little-endian float32 vectors in Redis, under a namespace, with a TTL.

One pipelined round trip per batch (MGET, then SETs with PX). Redis is an accelerator,
never a dependency: a timeout, an error or a value of the wrong size counts as a miss,
the outage is logged once (and its end once), and the next call tries again. A call's
time limit grows with its payload (a 2,048 x 1,024-dim MGET is 8 MiB), and one call
that runs out of time rests nothing: only an error, or timeouts in a row, do.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from embellama.cache.keys import CacheKey
from embellama.errors import CacheUnavailableError, ConfigError

__all__ = ["RedisTier"]

_log = logging.getLogger("embellama.cache")
Vector = npt.NDArray[np.float32]
# Seconds Redis is left alone after a failure before the next call tries it again.
RETRY_AFTER_FAILURE = 1.0
# At most one "unavailable" line per this many seconds: a flapping link (or timeouts on a
# loaded machine) is counted in metrics every time, but logged as one outage.
LOG_INTERVAL = 30.0
# Time allowed per MiB a call moves, on top of its base timeout: 20 MiB/s. Moving and
# parsing (redis-py, no hiredis) an 8 MiB MGET took 100 ms on a busy 2-core host over
# loopback; a network adds ~8 ms/MiB at 1 Gbit/s. Generous on purpose: a miss of that
# many vectors costs seconds of decoding, so waiting for them is still the cheaper way.
SECONDS_PER_MIB = 0.05
# Timeouts in a row that rest the tier: one slow call (a huge MGET on a busy link) says
# little about the next small one; a Redis that answers nothing times out every call.
TIMEOUTS_BEFORE_REST = 3
# What SCAN's MATCH reads as a pattern rather than as itself.
_GLOB = re.compile(rb"([\\*?\[\]])")


class RedisTier:
    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        ttl: float | None,
        read_timeout: float = 0.02,
        write_timeout: float = 0.1,
    ) -> None:
        import redis.asyncio as aioredis

        if ttl is not None and not ttl >= 1:  # under 1 s, EX was 0 and every SET failed
            raise ConfigError(f"cache TTL must be at least 1 second, got {ttl}")
        if not (read_timeout > 0 and write_timeout > 0):
            raise ConfigError("Redis read and write timeouts must be > 0")
        # For logs and /info: never the password of redis://user:password@host.
        self.url = url if "@" not in url else url.split("://")[0] + "://…@" + url.rsplit("@", 1)[1]
        self.namespace = namespace.encode() + b":"
        self.ttl = ttl
        self.read_timeout = read_timeout
        self.write_timeout = write_timeout
        self.errors = 0
        self.timeouts = 0
        self.bad_values = 0
        self._down = False
        self._timeouts_in_a_row = 0
        self._retry_at = 0.0
        self._logged_at = -LOG_INTERVAL
        self._outage_logged = False
        self._client = aioredis.Redis.from_url(
            url,  # the real one, credentials included
            # A backstop per socket operation; each call's own limit is shorter or scaled.
            socket_timeout=max(write_timeout, 1.0),
            socket_connect_timeout=max(read_timeout * 5, 0.1),
            health_check_interval=0,
        )

    def timeout_for(self, base: float, payload_bytes: int) -> float:
        """The time a call moving `payload_bytes` of vectors may take."""
        return base + SECONDS_PER_MIB * payload_bytes / (1 << 20)

    def _name(self, key: CacheKey) -> bytes:
        return self.namespace + key

    async def get_many(self, keys: Sequence[CacheKey], dim: int) -> list[Vector | None]:
        if not keys or self._resting():
            return [None] * len(keys)
        try:
            values = await asyncio.wait_for(
                self._client.mget([self._name(key) for key in keys]),
                self.timeout_for(self.read_timeout, 4 * dim * len(keys)),
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
        expiry = round(self.ttl * 1000) if self.ttl is not None else None
        try:
            async with self._client.pipeline(transaction=False) as pipe:
                size = 0
                for key, vector in items:
                    data = np.ascontiguousarray(vector, dtype="<f4").tobytes()
                    pipe.set(self._name(key), data, px=expiry)
                    size += len(data)
                await asyncio.wait_for(pipe.execute(), self.timeout_for(self.write_timeout, size))
        except Exception as exc:
            self._failed(exc)
            return
        self._recovered()

    async def clear(self, prefix: bytes = b"") -> int:
        """Delete this namespace's keys (of one model when `prefix` is its tag).

        Unlike a lookup this one must not fail quietly: a caller told "cleared" would
        trust vectors that are still there. Redis failing it is `CacheUnavailableError`.
        """
        try:
            return await self._clear(prefix)
        except Exception as exc:
            self._failed(exc)
            raise CacheUnavailableError(
                f"the Redis cache at {self.url} failed while clearing ({type(exc).__name__}); "
                "it may still hold vectors of this namespace: retry the clear"
            ) from exc

    async def _clear(self, prefix: bytes) -> int:
        removed = 0
        # The namespace is matched as written: "team*" must not clear "teamB:".
        pattern = _GLOB.sub(rb"\\\1", self.namespace + prefix) + b"*"
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
        if isinstance(exc, TimeoutError):
            self.timeouts += 1
            self._timeouts_in_a_row += 1
            if self._timeouts_in_a_row < TIMEOUTS_BEFORE_REST:
                return  # one slow call: the next one still asks
        else:
            self.errors += 1
        self._retry_at = now + RETRY_AFTER_FAILURE
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
        self._timeouts_in_a_row = 0
        if self._down:
            self._down = False
            if self._outage_logged:
                self._outage_logged = False
                _log.warning("Redis cache at %s is back", self.url)

    async def close(self) -> None:
        await self._client.aclose()
