"""A model whose workers cannot load fails its start once, with the reason; no crash-loop.

The broken file passes our header checks and a vocabulary-only load (it declares a
wider embedding than its tensors have), so only the workers' full load fails, exactly
where a context too large for the machine fails: in llama.cpp, in the worker.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import free_port, serving
from tests.fixtures.variants import misdeclared_width_copy

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def broken_gguf(minilm_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return misdeclared_width_copy(minilm_gguf, tmp_path_factory.mktemp("broken") / "wide.gguf")


def test_one_model_that_cannot_load_fails_the_start_once(broken_gguf: Path) -> None:
    command = [sys.executable, "-m", "embellama", "serve", "--port", str(free_port())]
    command += ["--model-path", str(broken_gguf), "--workers", "2", "--cache-size", "0"]
    command += ["--engine", "llama.cpp"]  # the workers' full load is where it fails
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    log = done.stderr
    assert "restarting" not in log, log
    assert "Traceback" not in log.split("embellama.server: startup failed")[-1], log
    [line] = [entry for entry in log.splitlines() if "embellama.server: startup failed" in entry]
    assert "no worker for model 'wide' could start" in line
    assert "wrong shape" in line  # llama.cpp's own first error line
    assert "per worker" in line  # and our estimate
    # Each worker tried once: two loads, not a loop of them.
    assert log.count("embellama.backends: worker") == 2, log


def test_among_several_models_the_failed_one_is_reported_and_the_others_serve(
    minilm_gguf: Path, broken_gguf: Path, tmp_path: Path, server_logs: Path
) -> None:
    config = tmp_path / "models.toml"
    config.write_text(
        f'[[models]]\nname = "minilm"\npath = "{minilm_gguf}"\nworkers = 1\n'
        f'[[models]]\nname = "wide"\naliases = ["wide-alias"]\npath = "{broken_gguf}"\n'
        'workers = 1\nengine = "llama.cpp"\n'
    )
    with serving(["--config", str(config), "--cache-size", "0"], server_logs) as server:
        ready = httpx.get(server.url + "/ready")
        assert ready.status_code == 200
        body = ready.json()
        assert body["status"] == "degraded"
        assert "wrong shape" in body["failed"]["wide"]
        assert body["models"]["minilm"]["ready"] is True

        cards = {card["id"]: card for card in httpx.get(server.url + "/v1/models").json()["data"]}
        assert cards["minilm"]["status"] == "ready"
        assert cards["wide"]["status"] == "failed" and "wrong shape" in cards["wide"]["error"]
        assert "wide" in httpx.get(server.url + "/info").json()["failed_models"]

        for name in ("wide", "wide-alias"):
            refused = httpx.post(server.url + "/v1/embeddings", json={"model": name, "input": "x"})
            assert refused.status_code == 503
            assert "failed to start" in refused.json()["error"]["message"]
        served = httpx.post(server.url + "/v1/embeddings", json={"model": "minilm", "input": "x"})
        assert served.status_code == 200
        assert "restarting" not in server.log()


def test_on_onnx_runtime_the_graph_build_fails_the_start_once_before_any_worker(
    broken_gguf: Path,
) -> None:
    """`auto` runs the file on ONNX Runtime: the server builds the graph once before its
    workers start, so the tensor that disagrees with the header is named once, and no
    worker loads (or holds the weights several times over) for nothing."""
    command = [sys.executable, "-m", "embellama", "serve", "--port", str(free_port())]
    command += ["--model-path", str(broken_gguf), "--workers", "2", "--cache-size", "0"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    log = done.stderr
    [line] = [entry for entry in log.splitlines() if "embellama.server: startup failed" in entry]
    assert "no worker for model 'wide' could start" in line
    assert "tensor token_embd.weight has wrong shape" in line and "per worker" in line
    assert "embellama.backends: worker" not in log, log
