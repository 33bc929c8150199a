"""Many clients at once, overload (429) and timeouts (504) on real server processes."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import numpy as np
import pytest

from embellama import EmbeddingEngine
from tests.e2e.server import ServerProcess, serving
from tests.tolerances import assert_batch_invariant

WORDS = [
    "search",
    "vector",
    "local",
    "model",
    "fast",
    "exact",
    "query",
    "document",
    "index",
    "latency",
    "llama",
    "embedding",
]


def _texts(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 150))) for _ in range(count)]


async def _post(client: httpx.AsyncClient, payload: Mapping[str, object]) -> httpx.Response:
    return await client.post("/v1/embeddings", json=payload, timeout=120)


@pytest.mark.slow
def test_64_concurrent_clients_match_single_requests(
    server: ServerProcess, engine: EmbeddingEngine
) -> None:
    texts = _texts(64 * 3, seed=11)
    payloads = [
        {"input": texts[i * 3 : i * 3 + (i % 3) + 1], "encoding_format": "float"} for i in range(64)
    ]

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(
            base_url=server.url, limits=httpx.Limits(max_connections=64)
        ) as client:
            return await asyncio.gather(*(_post(client, p) for p in payloads))

    responses = asyncio.run(scenario())
    for payload, response in zip(payloads, responses, strict=True):
        assert response.status_code == 200, response.text
        body = response.json()
        inputs = payload["input"]
        assert isinstance(inputs, list)
        got = np.array([item["embedding"] for item in body["data"]])
        assert [item["index"] for item in body["data"]] == list(range(len(inputs)))
        assert_batch_invariant(got, engine.embed(inputs))
        assert body["usage"]["prompt_tokens"] == sum(engine.count_tokens([str(t) for t in inputs]))


@pytest.fixture(scope="module")
def tight_server(minilm_gguf: Path, server_logs: Path) -> Iterator[ServerProcess]:
    with serving(
        [
            "--model-path",
            str(minilm_gguf),
            "--queue-size",
            "2",
            "--request-timeout",
            "0.5",
            "--max-inputs-per-request",
            "2048",
            "--workers",
            "1",
            "--cache-size",  # identical requests would share one computation, never queue
            "0",
        ],
        server_logs,
    ) as process:
        yield process


def test_queue_full_is_429_with_retry_after(tight_server: ServerProcess) -> None:
    payload = {"input": _texts(60, seed=5)}

    async def scenario() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=tight_server.url) as client:
            return await asyncio.gather(*(_post(client, payload) for _ in range(8)))

    responses = asyncio.run(scenario())
    statuses = sorted(r.status_code for r in responses)
    rejected = [r for r in responses if r.status_code == 429]
    assert rejected, statuses
    for response in rejected:
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["error"]["code"] == "queue_full"
    assert set(statuses) <= {200, 429, 504}
    assert (
        httpx.post(tight_server.url + "/v1/embeddings", json={"input": "after"}).status_code == 200
    )


def test_timeout_is_504_and_server_recovers(tight_server: ServerProcess) -> None:
    response = httpx.post(
        tight_server.url + "/v1/embeddings", json={"input": _texts(1500, seed=8)}, timeout=60
    )
    assert response.status_code == 504, response.text
    assert response.json()["error"]["type"] == "timeout_error"
    # The dropped work does not linger: a small request is answered promptly afterwards.
    ok = httpx.post(
        tight_server.url + "/v1/embeddings", json={"input": "after a timeout"}, timeout=10
    )
    assert ok.status_code == 200


@pytest.mark.slow
def test_disconnected_client_work_is_dropped(minilm_gguf: Path, server_logs: Path) -> None:
    """A client that gives up takes its queued inputs with it: they never reach a worker.

    Compared with a client that stays for the same work, and counted only after that
    work would have finished, so leftover work cannot hide behind an early look.
    """
    args = ["--model-path", str(minilm_gguf), "--workers", "1", "--cache-size", "0"]
    with serving(args, server_logs) as server:  # no cache: the second client recomputes
        texts = _texts(500, seed=21)
        before = _batched_inputs(server)
        started = time.monotonic()
        stayed = httpx.post(server.url + "/v1/embeddings", json={"input": texts}, timeout=120)
        full_seconds = time.monotonic() - started
        assert stayed.status_code == 200
        assert _batched_inputs(server) - before == len(texts)

        before = _batched_inputs(server)
        with pytest.raises(httpx.TimeoutException):
            httpx.post(server.url + "/v1/embeddings", json={"input": texts}, timeout=0.5)
        time.sleep(full_seconds + 1.0)
        computed = _batched_inputs(server) - before
        assert computed < len(texts) / 2, (computed, full_seconds)
        assert (
            httpx.post(server.url + "/v1/embeddings", json={"input": "still here"}).status_code
            == 200
        )


def _batched_inputs(server: ServerProcess) -> float:
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith("embellama_batch_size_sum"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
