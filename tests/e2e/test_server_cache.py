"""The cache through real servers and a real Redis: exact hits, replicas sharing vectors,
single-flight, bypass, invalidation, and a Redis outage under load that clients never see."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from embellama import EmbeddingEngine
from tests.e2e.redis_server import RedisServer, start_redis
from tests.e2e.server import ServerProcess, serving
from tests.tolerances import assert_batch_invariant

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": "Bearer cache-admin-key-0001"}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def replicas(
    minilm_gguf: Path, server_logs: Path, redis_server: RedisServer
) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    args = [
        "--model-path",
        str(minilm_gguf),
        "--model-name",
        "m",
        "--cache-url",
        redis_server.url,
        "--cache-namespace",
        "replicas-test",
        "--admin-key",
        "cache-admin-key-0001",
        "--threads-per-worker",
        "1",
    ]
    with serving(args, server_logs) as a, serving(args, server_logs) as b:
        yield a, b


def _embed(server: ServerProcess, body: dict[str, Any], **headers: str) -> httpx.Response:
    response = httpx.post(
        server.url + "/v1/embeddings", json={"model": "m", **body}, headers=headers, timeout=60
    )
    assert response.status_code == 200, response.text
    return response


def _hits(response: httpx.Response) -> int:
    return int(response.headers["x-cache-hits"])


def _metric(server: ServerProcess, name: str) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.mark.parametrize(
    ("encoding", "dimensions"), [("float", None), ("base64", None), ("float", 128), ("base64", 64)]
)
def test_a_hit_returns_the_miss_bytes(
    replicas: tuple[ServerProcess, ServerProcess], encoding: str, dimensions: int | None
) -> None:
    server, _ = replicas
    texts = [f"exact hit check {encoding} {dimensions} {n}" for n in range(3)]
    body: dict[str, Any] = {"input": texts, "encoding_format": encoding}
    if dimensions:
        body["dimensions"] = dimensions
    miss = _embed(server, body)
    hit = _embed(server, body)
    assert (_hits(miss), _hits(hit)) == (0, 3)
    assert hit.json()["data"] == miss.json()["data"]
    usage = hit.json()["usage"]
    assert usage["prompt_tokens"] == miss.json()["usage"]["prompt_tokens"]
    assert usage["prompt_tokens_details"]["cached_tokens"] == usage["prompt_tokens"]
    assert miss.json()["usage"]["prompt_tokens_details"]["cached_tokens"] == 0


def _wait_for_hit(server: ServerProcess, body: dict[str, Any]) -> httpx.Response:
    """Redis is written behind the response: allow the write its round trip."""
    deadline = time.monotonic() + 5
    while True:
        response = _embed(server, body)
        if _hits(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_replicas_share_vectors_through_redis(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    a, b = replicas
    body = {"input": ["shared between replicas"], "encoding_format": "base64"}
    first = _embed(a, body)
    assert _hits(first) == 0
    on_b = _wait_for_hit(b, body)
    assert _hits(on_b) == 1  # B never computed it: Redis had A's vector
    assert on_b.json()["data"] == first.json()["data"]


def test_sixteen_concurrent_requests_for_one_new_text_decode_it_once(
    replicas: tuple[ServerProcess, ServerProcess],
) -> None:
    server, _ = replicas
    before = _metric(server, "embellama_batch_size_sum")

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            return await asyncio.gather(
                *(
                    client.post("/v1/embeddings", json={"input": "one new text", "model": "m"})
                    for _ in range(16)
                )
            )

    responses = asyncio.run(burst())
    assert {r.status_code for r in responses} == {200}
    assert len({str(r.json()["data"]) for r in responses}) == 1
    assert _metric(server, "embellama_batch_size_sum") - before == 1


def test_bypass_by_body_or_header(replicas: tuple[ServerProcess, ServerProcess]) -> None:
    server, _ = replicas
    body = {"input": ["bypass me"]}
    _embed(server, body)
    assert _hits(_embed(server, body)) == 1
    assert _hits(_embed(server, {**body, "cache": False})) == 0
    assert _hits(_embed(server, body, **{"cache-control": "no-cache"})) == 0


def test_clear_covers_memory_and_redis(
    replicas: tuple[ServerProcess, ServerProcess], redis_server: RedisServer
) -> None:
    a, b = replicas
    body = {"input": ["clear me please"]}
    _embed(a, body)
    assert _hits(_wait_for_hit(b, body)) == 1
    assert httpx.post(a.url + "/admin/cache/clear", json={}).status_code == 401
    cleared = httpx.post(a.url + "/admin/cache/clear", headers=ADMIN, json={"model": "m"})
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["removed"]["redis"] >= 1
    assert list(redis_server.client().scan_iter(match="replicas-test:*")) == []
    assert _hits(_embed(a, body)) == 0
    info = httpx.get(a.url + "/info").json()["cache"]
    assert info["namespace"] == "replicas-test" and info["memory_bytes"] == 256_000_000
    for name in ("hits", "misses", "evictions", "redis_errors", "redis_timeouts"):
        assert f"embellama_cache_{name}_total" in httpx.get(a.url + "/metrics").text
    assert "embellama_cache_bytes" in httpx.get(a.url + "/metrics").text


def test_redis_outage_under_load_is_invisible_to_clients(
    replicas: tuple[ServerProcess, ServerProcess],
    redis_server: RedisServer,
    engine: EmbeddingEngine,
) -> None:
    a, b = replicas
    failures_before = sum(
        _metric(s, f"embellama_cache_redis_{k}_total")
        for s in replicas
        for k in ("errors", "timeouts")
    )
    outcomes: list[tuple[int, str, Any]] = []

    async def client_loop(server: ServerProcess, offset: int, until: float) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            n = offset
            while time.monotonic() < until:
                text = f"outage text number {n}"  # always new: every one asks Redis
                body = {
                    "input": [text],
                    "model": "m",
                    "encoding_format": "base64",
                    "cache": n % 5 != 0,  # some requests bypass the cache altogether
                }
                response = await client.post("/v1/embeddings", json=body)
                ok = response.status_code == 200
                outcomes.append(
                    (
                        response.status_code,
                        text,
                        response.json()["data"][0]["embedding"] if ok else None,
                    )
                )
                n += 8

    async def scenario() -> None:
        until = time.monotonic() + 5
        loops = [asyncio.create_task(client_loop(s, i, until)) for i, s in enumerate((a, b) * 4)]
        await asyncio.sleep(1)
        redis_server.stop()
        await asyncio.sleep(2.5)
        await asyncio.to_thread(redis_server.start)
        await asyncio.gather(*loops)

    asyncio.run(scenario())
    assert len(outcomes) > 100
    assert {status for status, _, _ in outcomes} == {200}
    texts = sorted({text for _, text, _ in outcomes})
    expected = dict(zip(texts, engine.embed(texts), strict=True))
    for _, text, data in outcomes:
        assert_batch_invariant(np.frombuffer(base64.b64decode(data), "<f4"), expected[text])
    failures = sum(
        _metric(s, f"embellama_cache_redis_{k}_total")
        for s in replicas
        for k in ("errors", "timeouts")
    )
    assert failures > failures_before
    for server in replicas:  # one line when it went away, one when it came back; no flood
        assert server.log().count("unavailable") <= 2, server.log()[-2000:]
    body = {"input": ["after the outage"]}
    time.sleep(1.2)  # past the back-off after the last failure
    _embed(a, body)
    assert _hits(_wait_for_hit(b, body)) == 1
