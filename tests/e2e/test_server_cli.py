"""`embellama serve` as an operator starts it: defaults, environment, bad values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.server import serving, start_server


def test_no_arguments_serves_the_default_model_quickly(
    minilm_gguf: Path, server_logs: Path
) -> None:
    # No flags at all; the port comes from the environment only to avoid clashes here.
    process = start_server([], server_logs, port_in_env=True)
    try:
        elapsed = process.wait_ready(timeout=30)
        assert elapsed < 10, elapsed
        models = httpx.get(process.url + "/v1/models").json()["data"]
        assert [m["id"] for m in models] == ["all-MiniLM-L6-v2"]
        info = httpx.get(process.url + "/info").json()
        assert info["models"][0]["dimensions"] == 384
    finally:
        assert process.stop() == 0, process.log()


def test_invalid_values_fail_at_start_in_one_line() -> None:
    for args, env, expected in [
        (["--workers", "0"], {}, "argument --workers: must be >= 1, got 0"),
        (["--log-format", "xml"], {}, "invalid choice: 'xml'"),
        ([], {"EMBELLAMA_QUEUE_SIZE": "lots"}, "invalid EMBELLAMA_QUEUE_SIZE='lots'"),
        (["--model-path", "/missing.gguf"], {}, "model file not found: /missing.gguf"),
        (["--port", "99999"], {}, "argument --port: must be between 1 and 65535, got 99999"),
        (["--cache-url", "http://x"], {}, "argument --cache-url: expected redis://"),
        ([], {"EMBELLAMA_CACHE_URL": "http://x"}, "invalid EMBELLAMA_CACHE_URL: expected"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "embellama.cli.main", "serve", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**_base_env(), **env},
            check=False,
        )
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], done.stderr


def _base_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EMBELLAMA_") or k == "EMBELLAMA_HOME"
    }


def test_non_loopback_without_keys_warns(minilm_gguf: Path, server_logs: Path) -> None:
    """Binding beyond loopback without a key is allowed, but said loudly at start."""
    with serving(["--model-path", str(minilm_gguf), "--host", "0.0.0.0"], server_logs) as process:
        assert "reachable beyond this machine, without any API key" in process.log()
    with serving(
        ["--model-path", str(minilm_gguf), "--host", "0.0.0.0", "--api-key", "sk-some-key-123456"],
        server_logs,
    ) as keyed:
        assert "without any API key" not in keyed.log()
