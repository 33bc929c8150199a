"""A minimal keep-alive HTTP/1.1 load client on asyncio streams, for fixed request counts.

httpx costs ~1 ms of client CPU per request, which on 2 cores caps what a fast server
(cache hits) can show; this client only writes bytes and reads `Content-Length` bodies.
Each of `concurrency` connections sends its next body as soon as the last answer is in.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Run", "post_all"]


@dataclass
class Run:
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    cache_hits: int = 0
    # embellama's per-request stage timings (x-tokenize-time, x-queue-time,
    # x-inference-time headers, in ms), where the server sends them.
    stage_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")


async def _connection(host: str, port: int, path: str, bodies: deque[bytes], run: Run) -> None:
    head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n".encode()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while bodies:
            body = bodies.popleft()
            started = time.perf_counter()
            try:
                fields = await _exchange(reader, writer, head, body, run)
            except (asyncio.IncompleteReadError, ConnectionError):
                # The server closed an idle keep-alive connection: reconnect, send again.
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                started = time.perf_counter()
                fields = await _exchange(reader, writer, head, body, run)
            run.latencies.append(time.perf_counter() - started)
            if fields.get("connection", "").lower() == "close":
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
    finally:
        writer.close()


async def _exchange(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    head: bytes,
    body: bytes,
    run: Run,
) -> dict[str, str]:
    writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
    header = await reader.readuntil(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {
        name.strip().lower(): value.strip()
        for name, _, value in (line.partition(":") for line in lines[1:] if line)
    }
    await reader.readexactly(int(fields.get("content-length", "0")))
    run.statuses[status] = run.statuses.get(status, 0) + 1
    run.cache_hits += int(fields.get("x-cache-hits", "0"))
    for stage in ("tokenize", "queue", "inference"):
        value = fields.get(f"x-{stage}-time")
        if value is not None:
            run.stage_ms.setdefault(stage, []).append(float(value))
    return fields


def post_all(
    url: str, bodies: Iterable[bytes], concurrency: int, path: str = "/v1/embeddings"
) -> Run:
    """POST every body to `path` (in order, over `concurrency` connections); wall time
    included."""
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    queue = deque(bodies)
    run = Run()

    async def scenario() -> None:
        await asyncio.gather(
            *(_connection(host, int(port), path, queue, run) for _ in range(concurrency))
        )

    started = time.perf_counter()
    asyncio.run(scenario())
    run.seconds = time.perf_counter() - started
    return run
