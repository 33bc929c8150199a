"""A worker killed under load and a SIGTERM under load: nothing accepted is lost."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from embellama import EmbeddingEngine
from tests.e2e.server import ServerProcess, serving, start_server
from tests.tolerances import assert_batch_invariant

pytestmark = pytest.mark.slow

TEXTS = [f"resilience check number {i} with some words about vectors" for i in range(32)]


async def _client_loop(
    url: str, text: str, until: float, results: list[tuple[int, object]]
) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        while time.monotonic() < until:
            try:
                response = await client.post(
                    "/v1/embeddings", json={"input": [text], "encoding_format": "float"}
                )
            except httpx.HTTPError as exc:
                results.append((-1, repr(exc)))
                continue
            body = response.json()
            results.append(
                (
                    response.status_code,
                    body["data"][0]["embedding"] if response.status_code == 200 else body,
                )
            )


@pytest.mark.parametrize(
    "crash", [signal.SIGKILL, signal.SIGSEGV, signal.SIGABRT], ids=["kill", "segv", "abort"]
)
def test_worker_crash_under_load(
    crash: signal.Signals, minilm_gguf: Path, server_logs: Path, engine: EmbeddingEngine
) -> None:
    with serving(
        [
            "--model-path",
            str(minilm_gguf),
            "--workers",
            "2",
            "--threads-per-worker",
            "1",
            "--request-timeout",
            "20",
            "--cache-size",  # every request computes, so crashes meet work in flight
            "0",
        ],
        server_logs,
    ) as server:
        before = server.worker_pids()
        assert len(before) == 2, before
        expected = {text: engine.embed(text) for text in TEXTS}
        results: dict[str, list[tuple[int, object]]] = {text: [] for text in TEXTS}

        async def scenario() -> None:
            until = time.monotonic() + 6
            clients = [
                asyncio.create_task(_client_loop(server.url, t, until, results[t])) for t in TEXTS
            ]
            await asyncio.sleep(1.5)
            os.kill(before[0], crash)
            await asyncio.gather(*clients)

        asyncio.run(scenario())
        total = 0
        for text, outcomes in results.items():
            for status, payload in outcomes:
                total += 1
                assert status in (200, 503), (status, payload)
                if status == 200:
                    assert_batch_invariant(np.asarray(payload), expected[text])
        assert total > 100
        assert sum(1 for o in results.values() for s, _ in o if s == 200) > 0.9 * total

        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ready = httpx.get(server.url + "/ready").json()
            if next(iter(ready["models"].values()))["workers_alive"] == 2:
                break
            time.sleep(0.1)
        after = server.worker_pids()
        assert len(after) == 2 and before[0] not in after, (before, after)
        assert (
            httpx.post(server.url + "/v1/embeddings", json={"input": "after the crash"}).status_code
            == 200
        )


def test_sigterm_under_load_finishes_accepted_requests(
    minilm_gguf: Path, server_logs: Path
) -> None:
    args = ["--model-path", str(minilm_gguf), "--workers", "1", "--cache-size", "0"]
    server = start_server(args, server_logs)  # no cache: the repeated payload is real work
    server.wait_ready()
    payload = {"input": [" ".join(["drain"] * 200)] * 24}

    async def scenario() -> list[httpx.Response | BaseException]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            tasks = [
                asyncio.create_task(client.post("/v1/embeddings", json=payload)) for _ in range(12)
            ]
            await asyncio.sleep(0.5)
            server.process.send_signal(signal.SIGTERM)
            return await asyncio.gather(*tasks, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    code = server.process.wait(60)
    assert code == 0, server.log()
    answered = [o for o in outcomes if isinstance(o, httpx.Response)]
    assert answered, outcomes
    for response in answered:
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]) == 24
    for failure in (o for o in outcomes if not isinstance(o, httpx.Response)):
        assert isinstance(failure, httpx.ConnectError), failure  # never accepted


def test_poison_input_is_refused_not_retried_forever(minilm_gguf: Path, server_logs: Path) -> None:
    """An input that crashes the worker twice gets a non-retryable 400 naming it; sent
    again, it is refused without crashing anything, and everyone else is served."""
    marker = 4242  # any id in the vocabulary; the test hook aborts the worker on it
    env = {"EMBELLAMA_TEST_CRASH_ON_TOKEN": str(marker)}
    with serving(["--model-path", str(minilm_gguf), "--workers", "1"], server_logs, env) as server:
        cached = httpx.post(server.url + "/v1/embeddings", json={"input": [[101, 2023, 102]]})
        assert cached.status_code == 200
        # Input 0 now comes from the cache, so only input 1 is decoded: the error must
        # still name its place in this request, not in the decode.
        body = {"input": [[101, 2023, 102], [101, marker, 102]]}
        first = httpx.post(server.url + "/v1/embeddings", json=body, timeout=60)
        assert first.status_code == 400, first.text
        error = first.json()["error"]
        assert (error["code"], error["param"]) == ("input_crashed_worker", "input[1]")
        restarts = _restarts(server)
        assert restarts == 2

        again = httpx.post(server.url + "/v1/embeddings", json=body, timeout=60)
        assert again.status_code == 400 and again.json()["error"]["param"] == "input[1]"
        assert _restarts(server) == restarts  # refused before reaching a worker
        assert "embellama_poison_inputs_refused_total" in _metric_lines(server, 1.0)
        fine = httpx.post(server.url + "/v1/embeddings", json={"input": "healthy"}, timeout=60)
        assert fine.status_code == 200


def _metric_lines(server: ServerProcess, value: float) -> str:
    text = httpx.get(server.url + "/metrics").text
    return "\n".join(line.split("{")[0] for line in text.splitlines() if line.endswith(f" {value}"))


def _restarts(server: ServerProcess) -> int:
    deadline = time.monotonic() + 30
    while True:
        workers = httpx.get(server.url + "/ready").json()
        if workers["models"] and all(m["workers_alive"] for m in workers["models"].values()):
            break
        assert time.monotonic() < deadline, workers
        time.sleep(0.1)
    for line in httpx.get(server.url + "/metrics").text.splitlines():
        if line.startswith("embellama_worker_restarts_total"):
            return int(float(line.rsplit(" ", 1)[1]))
    raise AssertionError("no restart metric")
