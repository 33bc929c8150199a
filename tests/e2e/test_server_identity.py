"""Model identity through real servers: replicas holding one file at different paths share
a real Redis, a same-size same-mtime retune never gets the original's vectors, a worker
restarted onto a swapped file refuses to serve it until a reload, and admin paths are
stored resolved."""

from __future__ import annotations

import os
import shutil
import signal
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
from tests.fixtures.variants import retuned_copy
from tests.tolerances import assert_batch_invariant

pytestmark = pytest.mark.slow

ADMIN_KEY = "identity-admin-key-0001"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def files(minilm_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Under one models directory: the model, and the same bytes under another name in
    another folder."""
    root = tmp_path_factory.mktemp("identity-models")
    (root / "replica-b").mkdir()
    original = Path(shutil.copy2(minilm_gguf, root / "minilm.gguf"))
    return {
        "root": root,
        "original": original,
        "same": Path(shutil.copy2(minilm_gguf, root / "replica-b" / "renamed.gguf")),
    }


def _args(path: Path, *extra: str) -> list[str]:
    return [
        "--model-path",
        str(path),
        "--model-name",
        "m",
        "--workers",
        "1",
        "--threads-per-worker",
        "1",
        "--admin-key",
        ADMIN_KEY,
        *extra,
    ]


def _embed(server: ServerProcess, text: str) -> httpx.Response:
    response = httpx.post(
        server.url + "/v1/embeddings", json={"model": "m", "input": [text]}, timeout=60
    )
    assert response.status_code == 200, response.text
    return response


def _vector(response: httpx.Response) -> np.ndarray:
    return np.array(response.json()["data"][0]["embedding"])


def _hits(response: httpx.Response) -> int:
    return int(response.headers["x-cache-hits"])


def _shown(server: ServerProcess) -> dict[str, Any]:
    config = httpx.get(server.url + "/admin/config", headers=ADMIN).json()
    model: dict[str, Any] = config["models"][0]
    return model


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


def test_replicas_share_redis_by_content_not_path(
    files: dict[str, Path], server_logs: Path, redis_server: RedisServer, tmp_path: Path
) -> None:
    shared = ("--cache-url", redis_server.url, "--cache-namespace", "identity-test")
    text = "one file, two paths, one cache"
    on_a = Path(shutil.copy2(files["original"], tmp_path / "a.gguf"))
    with (
        serving(_args(on_a, *shared), server_logs) as a,
        serving(_args(files["same"], *shared), server_logs) as b,
    ):
        fingerprint = _shown(a)["fingerprint"]
        assert _shown(b)["fingerprint"] == fingerprint
        assert _shown(b)["cache_tag"] == _shown(a)["cache_tag"]
        first = _embed(a, text)
        assert _hits(first) == 0
        deadline = time.monotonic() + 5  # Redis is written behind the response
        while _hits(on_b := _embed(b, text)) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _hits(on_b) == 1  # B never computed it: A's vector, found under B's path
        assert on_b.json()["data"] == first.json()["data"]
    # A's path now holds a retune with the same size and mtime (a copy kept its stat).
    os.replace(retuned_copy(on_a, tmp_path / "incoming.gguf"), on_a)
    with serving(_args(on_a, *shared), server_logs) as c:
        assert _shown(c)["fingerprint"] != fingerprint
        other = _embed(c, text)
        assert _hits(other) == 0  # same size and mtime, other weights: never A's entry
        assert float(np.max(np.abs(_vector(other) - _vector(first)))) > 1e-3


def _config(models_dir: Path, model: Path) -> str:
    return f"""
[server]
admin_key = ["{ADMIN_KEY}"]
models_dir = "{models_dir}"
request_timeout = 5

[[models]]
name = "m"
path = "{model}"
workers = 1
threads_per_worker = 1
"""


def _workers(server: ServerProcess) -> list[dict[str, Any]]:
    shown = httpx.get(server.url + "/admin/workers", headers=ADMIN).json()
    rows: list[dict[str, Any]] = shown["m"]
    return rows


def _wait_for(server: ServerProcess, state: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (row := _workers(server)[0])["state"] != state:
        assert time.monotonic() < deadline, f"worker never {state}: {row}\n{server.log()}"
        time.sleep(0.1)
    return row


def test_a_restarted_worker_refuses_a_swapped_file_until_a_reload(
    files: dict[str, Path], server_logs: Path, tmp_path: Path
) -> None:
    served = Path(shutil.copy2(files["original"], tmp_path / "served.gguf"))
    config = tmp_path / "embellama.toml"
    config.write_text(_config(tmp_path, served))
    with serving(["--config", str(config)], server_logs) as server:
        text = "computed before the swap"
        before = _embed(server, text)
        assert _hits(_embed(server, text)) == 1
        # A retune moved into place keeping size and mtime, then the worker dies: its
        # replacement finds another file than the one the server tokenizes for.
        swapped = retuned_copy(served, tmp_path / "incoming.gguf")
        os.replace(swapped, served)
        os.kill(_workers(server)[0]["pid"], signal.SIGKILL)
        refused = _wait_for(server, "refused")
        assert "is not the file this model was loaded from" in refused["error"]
        assert httpx.get(server.url + "/ready").status_code == 503
        late = httpx.post(
            server.url + "/v1/embeddings", json={"model": "m", "input": ["new"]}, timeout=30
        )
        assert late.status_code in (503, 504), late.text  # nobody computes it meanwhile
        assert "worker 0 refused to start: " + refused["error"] in server.log()
        for _ in range(20):  # it keeps refusing, never counted ready meanwhile
            assert _workers(server)[0]["state"] == "refused"
            assert httpx.get(server.url + "/ready").status_code == 503
            time.sleep(0.05)

        reloaded = httpx.post(server.url + "/admin/reload", headers=ADMIN, timeout=60)
        assert reloaded.status_code == 200, reloaded.text
        _wait_for(server, "ready")
        after = _embed(server, text)
        assert _hits(after) == 0  # the new file's tag: the old vector is not served
        with EmbeddingEngine.from_path(served) as reference:
            assert_batch_invariant(_vector(after), reference.embed(text))
        assert float(np.max(np.abs(_vector(after) - _vector(before)))) > 1e-3


def test_an_admin_path_is_stored_resolved(
    files: dict[str, Path], server_logs: Path, tmp_path: Path
) -> None:
    """A symlink inside the models directory loads its target, and the target's real path
    is what the config shows and every worker restart opens."""
    link = files["root"] / "latest.gguf"
    if not link.exists():
        link.symlink_to(files["original"])
    args = [*_args(files["original"]), "--models-dir", str(files["root"])]
    with serving(args, server_logs) as server:
        loaded = httpx.post(
            server.url + "/admin/models/linked/load",
            headers=ADMIN,
            json={"path": "latest.gguf", "workers": 1, "threads_per_worker": 1},
            timeout=60,
        )
        assert loaded.status_code == 200, loaded.text
        shown = httpx.get(server.url + "/admin/config", headers=ADMIN).json()["models"]
        paths = {model["name"]: model["path"] for model in shown}
        assert paths["linked"] == os.path.realpath(files["original"])
        refused = httpx.post(
            server.url + "/admin/models/home/load", headers=ADMIN, json={"path": "~/x.gguf"}
        )
        assert refused.status_code == 403, refused.text
