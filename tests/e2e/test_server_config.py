"""A TOML config with two models, per-key limits, admin API, and reloads under load."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from embellama import EmbeddingEngine, Pooling
from tests.e2e.server import ServerProcess, serving
from tests.tolerances import assert_batch_invariant

ADMIN = {"Authorization": "Bearer admin-secret-key-42"}


def _config(minilm: Path, *, second_pooling: str = "cls", extra: str = "") -> str:
    return f"""
[server]
admin_key = ["admin-secret-key-42"]
request_timeout = 30
cache_size = 0  # the repeated texts must reach the models being swapped

[[models]]
name = "mean-model"
path = "{minilm}"
aliases = ["text-embedding-3-small"]
workers = 1
threads_per_worker = 1

[[models]]
name = "second-model"
path = "{minilm}"
pooling = "{second_pooling}"
workers = 1
threads_per_worker = 1
{extra}
"""


@pytest.fixture
def configured(
    minilm_gguf: Path, server_logs: Path, tmp_path: Path
) -> Iterator[tuple[ServerProcess, Path]]:
    config = tmp_path / "embellama.toml"
    config.write_text(_config(minilm_gguf))
    with serving(["--config", str(config)], server_logs) as process:
        yield process, config


def _embed(server: ServerProcess, model: str, text: str = "two models at once") -> np.ndarray:
    response = httpx.post(
        server.url + "/v1/embeddings", json={"input": text, "model": model}, timeout=30
    )
    assert response.status_code == 200, response.text
    return np.array(response.json()["data"][0]["embedding"])


def test_two_models_each_give_their_own_vectors(
    configured: tuple[ServerProcess, Path], minilm_gguf: Path
) -> None:
    server, _ = configured
    with (
        EmbeddingEngine.from_path(minilm_gguf) as mean,
        EmbeddingEngine.from_path(minilm_gguf, pooling=Pooling.CLS) as cls,
    ):
        assert_batch_invariant(_embed(server, "mean-model"), mean.embed("two models at once"))
        assert_batch_invariant(
            _embed(server, "text-embedding-3-small"), mean.embed("two models at once")
        )
        assert_batch_invariant(_embed(server, "second-model"), cls.embed("two models at once"))
    names = sorted(m["id"] for m in httpx.get(server.url + "/v1/models").json()["data"])
    assert names == ["mean-model", "second-model", "text-embedding-3-small"]


def test_admin_api(configured: tuple[ServerProcess, Path], minilm_gguf: Path) -> None:
    server, _ = configured
    assert httpx.get(server.url + "/admin/workers").status_code == 401
    assert (
        httpx.get(
            server.url + "/admin/workers", headers={"Authorization": "Bearer nope"}
        ).status_code
        == 401
    )
    workers = httpx.get(server.url + "/admin/workers", headers=ADMIN).json()
    assert set(workers) == {"mean-model", "second-model"}
    assert workers["mean-model"][0]["state"] == "ready" and workers["mean-model"][0]["pid"] > 0

    loaded = httpx.post(
        server.url + "/admin/models/extra/load",
        headers=ADMIN,
        json={"path": str(minilm_gguf), "pooling": "max", "workers": 1},
        timeout=60,
    )
    assert loaded.status_code == 200, loaded.text
    assert _embed(server, "extra").shape == (384,)
    shown = httpx.get(server.url + "/admin/config", headers=ADMIN).json()
    assert shown["server"]["admin_key"] == ["…y-42"]  # masked, never the key
    assert {m["name"]: m["loaded_by"] for m in shown["models"]}["extra"] == "admin"
    reloaded = httpx.post(server.url + "/admin/reload", headers=ADMIN, timeout=60)
    assert reloaded.status_code == 200 and "extra" in reloaded.json()["models"]
    assert _embed(server, "extra").shape == (384,)  # a reload keeps admin-loaded models
    bad_types = httpx.post(
        server.url + "/admin/models/typed/load",
        headers=ADMIN,
        json={"path": str(minilm_gguf), "threads_per_worker": 1.5},
    )
    assert bad_types.status_code == 400 and "must be an integer" in bad_types.text
    clash = httpx.post(
        server.url + "/admin/models/extra/load", headers=ADMIN, json={"path": str(minilm_gguf)}
    )
    assert clash.status_code == 400
    # Outside the models directory: one answer whether the file exists or not.
    outside = [
        httpx.post(server.url + "/admin/models/bad/load", headers=ADMIN, json={"path": path})
        for path in ("/missing.gguf", "/etc/passwd", str(minilm_gguf.parent / ".." / ".." / "x"))
    ]
    assert {r.status_code for r in outside} == {403}
    assert len({r.text for r in outside}) == 1 and "passwd" not in outside[0].text
    missing = httpx.post(
        server.url + "/admin/models/bad/load",
        headers=ADMIN,
        json={"path": str(minilm_gguf.parent / "missing.gguf")},
    )
    assert missing.status_code == 400 and "not found" in missing.json()["error"]["message"]

    assert (
        httpx.post(server.url + "/admin/models/extra/unload", headers=ADMIN, timeout=60).status_code
        == 200
    )
    gone = httpx.post(server.url + "/v1/embeddings", json={"input": "x", "model": "extra"})
    assert gone.status_code == 404
    assert _embed(server, "mean-model").shape == (384,)

    drained = httpx.post(server.url + "/admin/drain", headers=ADMIN, timeout=60)
    assert drained.json()["status"] == "idle"
    assert httpx.get(server.url + "/ready").status_code == 503
    refused = httpx.post(server.url + "/v1/embeddings", json={"input": "x"})
    assert refused.status_code == 503


@pytest.mark.slow
def test_reload_under_load_loses_nothing(
    configured: tuple[ServerProcess, Path], minilm_gguf: Path
) -> None:
    server, config = configured
    results: list[int] = []

    async def client_loop(model: str, until: float) -> None:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            while time.monotonic() < until:
                response = await client.post(
                    "/v1/embeddings", json={"input": ["reload"] * 4, "model": model}
                )
                results.append(response.status_code)

    async def scenario() -> None:
        until = time.monotonic() + 8
        clients = [
            asyncio.create_task(client_loop(m, until)) for m in ("mean-model", "second-model") * 3
        ]
        await asyncio.sleep(1)
        # Change the second model (pooling), reload through the API while clients send.
        config.write_text(_config(minilm_gguf, second_pooling="max"))
        response = await asyncio.to_thread(
            httpx.post, server.url + "/admin/reload", headers=ADMIN, timeout=60
        )
        assert response.status_code == 200, response.text
        # An invalid config is rejected and the running one keeps serving.
        config.write_text(_config(minilm_gguf, extra="[[models]]\nname = 'broken'\n"))
        bad = await asyncio.to_thread(
            httpx.post, server.url + "/admin/reload", headers=ADMIN, timeout=60
        )
        assert bad.status_code == 400
        assert "'path' is required" in bad.json()["error"]["message"]
        # SIGHUP with a broken file: logged, rejected, nothing changes.
        os.kill(server.process.pid, signal.SIGHUP)
        await asyncio.gather(*clients)

    asyncio.run(scenario())
    assert results and set(results) == {200}, sorted(set(results))
    assert len(results) > 20
    with EmbeddingEngine.from_path(minilm_gguf, pooling=Pooling.MAX) as max_pooled:
        assert_batch_invariant(
            _embed(server, "second-model"), max_pooled.embed("two models at once")
        )
    assert "reload on SIGHUP rejected" in server.log()


def test_bad_config_fails_at_start_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    config = tmp_path / "bad.toml"
    config.write_text("[server]\nworkerz = 2\n")
    done = subprocess.run(
        [sys.executable, "-m", "embellama.cli.main", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"embellama: error: {config} [server]: unknown key(s) workerz"
    ]


def test_per_key_limits_from_the_file(minilm_gguf: Path, server_logs: Path, tmp_path: Path) -> None:
    config = tmp_path / "keys.toml"
    config.write_text(f"""
[server]
api_key = ["sk-unlimited-key-000001"]

[[keys]]
key = "sk-limited-key-0000002"
requests_per_second = 2

[[models]]
name = "m"
path = "{minilm_gguf}"
""")
    with serving(["--config", str(config)], server_logs) as server:

        def statuses(key: str) -> list[int]:
            headers = {"Authorization": f"Bearer {key}"}
            return [
                httpx.post(
                    server.url + "/v1/embeddings", json={"input": "x"}, headers=headers
                ).status_code
                for _ in range(6)
            ]

        limited = statuses("sk-limited-key-0000002")
        assert 429 in limited and limited.count(200) >= 2, limited
        assert statuses("sk-unlimited-key-000001") == [200] * 6
