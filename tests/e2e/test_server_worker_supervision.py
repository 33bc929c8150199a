"""Supervised workers against real signals: a hung decode (a worker stopped with
SIGSTOP, the parent cannot tell it from a decode that never returns) is killed and
replaced, and a stop signal to the whole process group drains instead of poisoning."""

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
from tests.e2e.test_server_resilience import _restarts
from tests.tolerances import assert_batch_invariant

pytestmark = pytest.mark.slow

# A SIGSTOP hang never ends, so any deadline finds it; this one stays far above a healthy
# decode of these small inputs on a busy machine (1.5 s measured at load 9 on 2 cores).
HANG_TIMEOUT = "4"


def _model_ready(server: ServerProcess) -> tuple[int, dict[str, object]]:
    response = httpx.get(server.url + "/ready", timeout=5)
    return response.status_code, next(iter(response.json()["models"].values()))


async def _post_watching_ready(
    server: ServerProcess, body: dict[str, object]
) -> tuple[httpx.Response, list[tuple[int, dict[str, object]]]]:
    """Send `body` and poll /ready until it is answered."""
    seen = []
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        request = asyncio.create_task(client.post("/v1/embeddings", json=body))
        while not request.done():
            ready = await client.get("/ready")
            seen.append((ready.status_code, next(iter(ready.json()["models"].values()))))
            await asyncio.sleep(0.02)
        return await request, seen


def test_hung_worker_is_killed_replaced_and_its_work_retried(
    minilm_gguf: Path, server_logs: Path, engine: EmbeddingEngine
) -> None:
    args = ["--model-path", str(minilm_gguf), "--workers", "1", "--threads-per-worker", "1"]
    args += ["--cache-size", "0", "--worker-hang-timeout", HANG_TIMEOUT, "--request-timeout", "30"]
    with serving(args, server_logs) as server:
        [hung] = server.worker_pids()
        os.kill(hung, signal.SIGSTOP)  # from now on its decode never returns
        status, model = _model_ready(server)
        assert (status, model["reason"]) == (200, None)  # idle: nothing shows yet

        text = "a decode that hangs is retried on the replacement"
        started = time.monotonic()
        response, seen = asyncio.run(_post_watching_ready(server, {"input": text}))
        took = time.monotonic() - started

        assert response.status_code == 200, response.text
        vector = np.asarray(response.json()["data"][0]["embedding"])
        assert_batch_invariant(vector, engine.embed(text))
        assert float(HANG_TIMEOUT) <= took < 25, took
        reasons = [str(m["reason"]) for status, m in seen if status == 503]
        assert any("hung" in reason and f"pid {hung}" in reason for reason in reasons), seen
        assert _restarts(server) == 1
        assert hung not in server.worker_pids()
        status, model = _model_ready(server)
        assert (status, model["workers_alive"], model["reason"]) == (200, 1, None)
        assert "killing it as hung" in server.log()
        info = httpx.get(server.url + "/info").json()["models"][0]
        assert info["worker_hang_timeout_seconds"] == float(HANG_TIMEOUT)


def test_input_that_hangs_twice_is_answered_like_one_that_crashes_twice(
    minilm_gguf: Path, server_logs: Path
) -> None:
    marker = 4242  # the test hook stops the worker (SIGSTOP) on a batch holding it
    env = {"EMBELLAMA_TEST_HANG_ON_TOKEN": str(marker)}
    args = ["--model-path", str(minilm_gguf), "--workers", "1", "--threads-per-worker", "1"]
    args += ["--worker-hang-timeout", HANG_TIMEOUT, "--request-timeout", "45"]
    with serving(args, server_logs, env) as server:
        body = {"input": [[101, 2023, 102], [101, marker, 102]]}
        first = httpx.post(server.url + "/v1/embeddings", json=body, timeout=60)
        assert first.status_code == 400, first.text
        error = first.json()["error"]
        assert (error["code"], error["param"]) == ("input_crashed_worker", "input[1]")
        assert _restarts(server) == 2

        again = httpx.post(server.url + "/v1/embeddings", json=body, timeout=60)
        assert again.status_code == 400 and again.json()["error"]["param"] == "input[1]"
        assert _restarts(server) == 2  # refused before reaching a worker
        fine = httpx.post(server.url + "/v1/embeddings", json={"input": "healthy"}, timeout=60)
        assert fine.status_code == 200


def _in_flight(server: ServerProcess) -> None:
    """Until the scheduler holds a request and a worker has started on it."""
    deadline = time.monotonic() + 30
    while _model_ready(server)[1]["queued"] == 0:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
def test_stop_signal_to_the_process_group_drains_without_blaming_inputs(
    sig: signal.Signals, minilm_gguf: Path, server_logs: Path
) -> None:
    """What systemd (KillMode=control-group), `timeout` and Ctrl-C do: every process of
    the group gets the signal, workers included."""
    args = ["--model-path", str(minilm_gguf), "--workers", "2", "--threads-per-worker", "1"]
    args += ["--cache-size", "0"]  # every input is decoded, so the signal meets decodes
    server = start_server(args, server_logs, new_session=True)
    server.wait_ready()
    texts = [f"drain input number {i} " + "word " * 20 for i in range(400)]

    async def scenario() -> httpx.Response:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            request = asyncio.create_task(client.post("/v1/embeddings", json={"input": texts}))
            await asyncio.to_thread(_in_flight, server)
            os.killpg(server.process.pid, sig)
            return await request

    try:
        response = asyncio.run(scenario())
        code = server.process.wait(60)
    finally:
        server.stop(signal.SIGKILL)
    log = server.log()
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 400
    assert code == 0, log
    assert "restarting" not in log and "failed to start" not in log, log


def test_stop_signal_while_a_worker_starts_is_held_for_it(
    minilm_gguf: Path, server_logs: Path
) -> None:
    """The window before a fresh worker ignores the stop signals (interpreter start,
    imports): a group SIGTERM then must not kill it either."""
    args = ["--model-path", str(minilm_gguf), "--workers", "1", "--cache-size", "0"]
    server = start_server(args, server_logs, new_session=True)
    try:
        server.wait_ready()
        [first] = server.worker_pids()
        os.kill(first, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (fresh := [pid for pid in server.worker_pids() if pid != first]):
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.005)
        os.killpg(server.process.pid, signal.SIGTERM)
        code = server.process.wait(60)
    finally:
        server.stop(signal.SIGKILL)
    log = server.log()
    assert code == 0, log
    assert log.count("restarting") == 1 and "exited with code -9" in log, log
    assert "failed to start" not in log and "code -15" not in log, log
    assert fresh


def test_sighup_to_the_process_group_reloads_and_keeps_every_worker(
    minilm_gguf: Path, server_logs: Path, tmp_path: Path
) -> None:
    """A reload by SIGHUP sent to the group (`kill -HUP -PGID`, a closing terminal):
    the server reloads its file, the workers neither die nor blame what they held."""
    config = tmp_path / "embellama.toml"
    config.write_text(
        f'[server]\ncache_size = 0\n\n[[models]]\npath = "{minilm_gguf}"\n'
        "workers = 2\nthreads_per_worker = 1\n"
    )
    server = start_server(["--config", str(config)], server_logs, new_session=True)
    texts = [f"reload input number {i} " + "word " * 20 for i in range(200)]

    async def scenario() -> httpx.Response:
        async with httpx.AsyncClient(base_url=server.url, timeout=120) as client:
            request = asyncio.create_task(client.post("/v1/embeddings", json={"input": texts}))
            await asyncio.to_thread(_in_flight, server)
            os.killpg(server.process.pid, signal.SIGHUP)
            return await request

    try:
        server.wait_ready()
        response = asyncio.run(scenario())
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]) == 200
        after = httpx.post(server.url + "/v1/embeddings", json={"input": "still here"}, timeout=60)
        assert after.status_code == 200, after.text
        assert server.stop() == 0
    finally:
        server.stop(signal.SIGKILL)
    log = server.log()
    assert "restarting" not in log and "failed to start" not in log, log


def test_stop_signals_from_anyone_but_the_server_never_end_a_worker(
    minilm_gguf: Path, server_logs: Path
) -> None:
    """Every thread of a worker holds them back but one, which drops them: the first
    worker too (starting multiprocessing's resource tracker unblocks SIGINT and SIGTERM
    in the spawning thread). Repeated, since the kernel picks which thread gets each."""
    args = ["--model-path", str(minilm_gguf), "--workers", "2", "--threads-per-worker", "1"]
    with serving(args, server_logs) as server:
        workers = server.worker_pids()
        assert len(workers) == 2
        for _ in range(8):
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                for pid in workers:
                    os.kill(pid, sig)
                time.sleep(0.01)  # one at a time: a signal already pending is not queued
        response = httpx.post(server.url + "/v1/embeddings", json={"input": "unharmed"})
        assert response.status_code == 200, response.text
        assert sorted(server.worker_pids()) == sorted(workers)
        assert "restarting" not in server.log()
