"""Lifecycle chaos: reload (API and SIGHUP), unload, load and cache clears while every
route is under concurrent load, then a drain. The server process must never die, and
every answer must be one of the statuses a client can act on, never a 500.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import ServerProcess, serving
from tests.fixtures.tiny_xlmr import build_tiny_xlmr

pytestmark = pytest.mark.slow

ADMIN = {"Authorization": "Bearer chaos-admin-key-0042"}
# What a request may meet while its model comes and goes: served, not loaded (404), or
# being unloaded / no worker yet / the server draining (503). Never a 500.
EXPECTED = {
    (200, None),
    (404, "model_not_found"),
    (503, "model_unloading"),
    (503, "no_worker"),
}
LIFECYCLE_OPERATIONS = 50  # unloads and reloads together
BUDGET_SECONDS = 55.0
# Big enough that tokenizing (off the event loop) and pieces take a while, so unloads
# and reloads land in the middle of them, where freed memory used to kill the process.
TEXT = "the lifetime of a model under load, " * 14000
DOCUMENTS = ["Local embeddings run on your own machine.", "bread: flour, water, salt"]


def _config(minilm: Path, reranker: Path, generation: int) -> str:
    # Each reload changes both models' aliases: both are retired and replaced.
    return f"""
[server]
admin_key = ["chaos-admin-key-0042"]
request_timeout = 30
cache_size = "16MB"

[[models]]
name = "minilm"
path = "{minilm}"
aliases = ["minilm-{generation % 2}"]
workers = 1
threads_per_worker = 1

[[models]]
name = "reranker"
path = "{reranker}"
aliases = ["reranker-{generation % 2}"]
kind = "rerank"
workers = 1
threads_per_worker = 1
"""


ROUTES: dict[str, tuple[str, str, dict[str, Any] | None]] = {
    "embeddings": (
        "POST",
        "/v1/embeddings",
        {"model": "minilm", "input": ["chaos text", "and another", "a third one"]},
    ),
    "rerank": (
        "POST",
        "/v1/rerank",
        {"model": "reranker", "query": "local embeddings", "documents": DOCUMENTS},
    ),
    "tokenize": ("POST", "/tokenize", {"model": "minilm", "content": TEXT, "with_pieces": True}),
    "detokenize": (
        "POST",
        "/detokenize",
        {"model": "minilm", "tokens": list(range(1000, 21000))},
    ),
    "models": ("GET", "/v1/models", None),
    "info": ("GET", "/info", None),
}


class Chaos:
    def __init__(self, server: ServerProcess) -> None:
        self.server = server
        self.statuses: Counter[tuple[str, int, str | None]] = Counter()
        self.unexpected: list[str] = []
        self.transport_errors: list[str] = []
        self.deaths = 0
        self.operations: Counter[str] = Counter()

    async def client(self, route: str, until: float) -> None:
        method, path, body = ROUTES[route]
        async with httpx.AsyncClient(base_url=self.server.url, timeout=60) as client:
            while time.monotonic() < until:
                try:
                    response = await client.request(method, path, json=body)
                except httpx.HTTPError as exc:
                    self.transport_errors.append(f"{route}: {exc!r}")
                    await asyncio.sleep(0.05)
                    continue
                code = None if response.status_code == 200 else _code(response)
                self.statuses[(route, response.status_code, code)] += 1
                if (response.status_code, code) not in EXPECTED:
                    self.unexpected.append(f"{route}: {response.status_code} {response.text[:300]}")

    def lifecycle_count(self) -> int:
        """Unloads and reloads so far: each retires a model under traffic."""
        ops = self.operations
        return ops["reload"] + ops["reload (SIGHUP)"] + ops["unload"]

    def alive(self) -> bool:
        if self.server.process.poll() is not None:
            self.deaths += 1
            return False
        return True


def _code(response: httpx.Response) -> str | None:
    try:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}, error
        return str(error["code"])
    except (ValueError, KeyError, TypeError):
        return "not-openai-shaped"


async def _admin(client: httpx.AsyncClient, path: str, body: bytes = b"") -> None:
    response = await client.post(path, headers=ADMIN, content=body)
    assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"


async def _lifecycle(chaos: Chaos, config: Path, paths: tuple[Path, Path], until: float) -> None:
    generation = 0
    async with httpx.AsyncClient(base_url=chaos.server.url, timeout=120) as admin:

        async def reload_api() -> None:
            nonlocal generation
            generation += 1
            config.write_text(_config(*paths, generation))
            await _admin(admin, "/admin/reload")
            chaos.operations["reload"] += 1

        async def reload_sighup() -> None:
            nonlocal generation
            generation += 1
            config.write_text(_config(*paths, generation))
            os.kill(chaos.server.process.pid, signal.SIGHUP)
            alias = f"minilm-{generation % 2}"
            while alias not in (await admin.get("/v1/models")).text:  # reload applied
                await asyncio.sleep(0.02)
            chaos.operations["reload (SIGHUP)"] += 1

        def unload_and_load(name: str) -> Callable[[], Awaitable[None]]:
            async def cycle() -> None:
                await _admin(admin, f"/admin/models/{name}/unload")
                chaos.operations["unload"] += 1
                await asyncio.sleep(0.05)  # traffic meets the missing model meanwhile
                await _admin(admin, f"/admin/models/{name}/load")
                chaos.operations["load"] += 1

            return cycle

        async def clear_cache() -> None:
            await _admin(admin, "/admin/cache/clear")
            chaos.operations["cache clear"] += 1

        steps = [
            reload_api,
            unload_and_load("minilm"),
            clear_cache,
            reload_sighup,
            unload_and_load("reranker"),
        ]
        step = 0
        while chaos.lifecycle_count() < LIFECYCLE_OPERATIONS and time.monotonic() < until:
            if not chaos.alive():
                return
            try:
                await steps[step % len(steps)]()
            except httpx.HTTPError as exc:  # the server went away under the change
                chaos.transport_errors.append(f"admin: {exc!r}")
            step += 1


def test_lifecycle_chaos_never_kills_the_server(
    minilm_gguf: Path, server_logs: Path, tmp_path: Path
) -> None:
    reranker = build_tiny_xlmr(tmp_path / "xlmr", classifier=True).gguf
    config = tmp_path / "chaos.toml"
    config.write_text(_config(minilm_gguf, reranker, 0))
    with serving(["--config", str(config)], server_logs) as server:
        chaos = Chaos(server)

        async def scenario() -> float:
            started = time.monotonic()
            until = started + BUDGET_SECONDS
            lifecycle = asyncio.create_task(
                _lifecycle(chaos, config, (minilm_gguf, reranker), until)
            )
            clients = [
                asyncio.create_task(chaos.client(route, until))
                for route in (*ROUTES, "tokenize", "detokenize", "embeddings")
            ]
            await lifecycle
            # The clients go on a moment after the last change, then stop with it.
            stop = time.monotonic() + 1.0
            for task in clients:
                task.cancel()
            await asyncio.sleep(max(0.0, stop - time.monotonic()))
            await asyncio.gather(*clients, return_exceptions=True)
            return time.monotonic() - started

        elapsed = asyncio.run(scenario())
        alive = chaos.alive()
        assert alive and chaos.deaths == 0, (
            f"the server died (exit {server.process.returncode}) after "
            f"{dict(chaos.operations)}:\n{server.log()[-3000:]}"
        )
        workers = httpx.get(server.url + "/admin/workers", headers=ADMIN, timeout=30).json()
        restarts = sum(w["restarts"] for slots in workers.values() for w in slots)
        # Drain last: idle, then new work is refused with a 503 until an undrain.
        drained = httpx.post(server.url + "/admin/drain", headers=ADMIN, timeout=60)
        refused = httpx.post(server.url + "/v1/embeddings", json={"input": "x"}, timeout=30)
        print(
            f"\nlifecycle chaos, {elapsed:.1f} s: operations {dict(chaos.operations)}; "
            f"responses by status {dict(_by_status(chaos))}; per route "
            f"{dict(_by_route(chaos))}; worker restarts {restarts}; "
            f"server process deaths {chaos.deaths}; transport errors "
            f"{len(chaos.transport_errors)}"
        )
        assert not chaos.transport_errors, chaos.transport_errors[:5]
        assert not chaos.unexpected, chaos.unexpected[:5]
        # 50 in CI; a machine shared by many test runs gets through fewer in the budget.
        assert chaos.lifecycle_count() >= 15, dict(chaos.operations)
        for route in ROUTES:  # every route was served between the changes
            assert chaos.statuses[(route, 200, None)] > 0, route
        assert drained.status_code == 200 and drained.json()["status"] == "idle"
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "draining"


def _by_status(chaos: Chaos) -> Counter[str]:
    counts: Counter[str] = Counter()
    for (_, status, code), n in chaos.statuses.items():
        counts[f"{status} {code}" if code else str(status)] += n
    return counts


def _by_route(chaos: Chaos) -> Counter[str]:
    counts: Counter[str] = Counter()
    for (route, _, _), n in chaos.statuses.items():
        counts[route] += n
    return counts
