"""A TCP link of bounded bandwidth on loopback, in its own process: what a network
between the server and Redis adds that loopback does not (time per byte).

    python -m tests.e2e.slow_link LISTEN_PORT TARGET_PORT MIB_PER_SECOND
"""

from __future__ import annotations

import asyncio
import sys

_PIECE = 64 * 1024


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, rate: float) -> None:
    """Forward at most `rate` bytes per second: each piece waits its time on the wire."""
    try:
        while data := await reader.read(_PIECE):
            writer.write(data)
            await writer.drain()
            await asyncio.sleep(len(data) / rate)
    finally:
        writer.close()


async def _serve(listen: int, target: int, rate: float) -> None:
    async def connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(
            _pipe(reader, upstream_writer, rate),
            _pipe(upstream_reader, writer, rate),
            return_exceptions=True,
        )

    server = await asyncio.start_server(connect, "127.0.0.1", listen)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    listen_port, target_port, mib_per_second = sys.argv[1:4]
    asyncio.run(_serve(int(listen_port), int(target_port), float(mib_per_second) * (1 << 20)))
