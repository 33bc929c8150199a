"""Drain and undrain on a real server: their own error code and /ready reason, a way
back, one audit line per admin call with the caller's masked key, and the client in
every text access line."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.server import ServerProcess, serving

ADMIN_KEY = "sk-admin-drain-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture(scope="module")
def drainable(minilm_gguf: Path, server_logs: Path) -> Iterator[ServerProcess]:
    args = ["--model-path", str(minilm_gguf), "--workers", "1", "--threads-per-worker", "1"]
    with serving([*args, "--admin-key", ADMIN_KEY, "--log-level", "info"], server_logs) as process:
        yield process


def _embed(server: ServerProcess) -> httpx.Response:
    return httpx.post(server.url + "/v1/embeddings", json={"input": "drain me"}, timeout=30)


def test_drain_refuses_with_its_own_code_until_undrain(drainable: ServerProcess) -> None:
    url = drainable.url
    assert _embed(drainable).status_code == 200
    drained = httpx.post(url + "/admin/drain", headers=ADMIN, timeout=60)
    assert drained.json() == {"status": "idle", "queued": 0}

    ready = httpx.get(url + "/ready")
    assert ready.status_code == 503
    assert ready.json()["status"] == "unavailable"
    assert ready.json()["reason"].startswith("draining")
    refused = _embed(drainable)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "draining", refused.text
    rerank = httpx.post(url + "/v1/rerank", json={"query": "q", "documents": ["d"]})
    assert rerank.status_code == 503 and rerank.json()["error"]["code"] == "draining"

    undrained = httpx.post(url + "/admin/undrain", headers=ADMIN)
    assert undrained.json() == {"status": "serving", "was_draining": True}
    assert httpx.get(url + "/ready").json()["status"] == "ready"
    assert _embed(drainable).status_code == 200
    again = httpx.post(url + "/admin/undrain", headers=ADMIN)
    assert again.json() == {"status": "serving", "was_draining": False}


def test_every_admin_call_is_audited_with_the_masked_key(drainable: ServerProcess) -> None:
    url = drainable.url
    assert httpx.get(url + "/admin/config", headers=ADMIN).status_code == 200
    assert httpx.post(url + "/admin/reload", headers=ADMIN).status_code == 400  # no file
    assert httpx.post(url + "/admin/undrain", headers=ADMIN).status_code == 200
    assert httpx.post(url + "/admin/undrain").status_code == 401  # refused: not an action
    time.sleep(0.3)
    log = drainable.log()
    assert ADMIN_KEY not in log
    caller = "admin#0:…6789"
    for line in ("GET /admin/config", "POST /admin/reload", "POST /admin/undrain"):
        assert f"embellama.audit: admin {line} by {caller}: " in log, log
    assert "by None" not in log


def test_text_access_lines_name_the_client(drainable: ServerProcess) -> None:
    assert _embed(drainable).status_code == 200
    assert httpx.get(drainable.url + "/health").status_code == 200
    assert httpx.get(drainable.url + "/admin/workers", headers=ADMIN).status_code == 200
    time.sleep(0.3)
    access = [line for line in drainable.log().splitlines() if "embellama.access" in line]
    for path, client in (
        ("POST /v1/embeddings 200", "addr:127.0.0.1"),
        ("GET /health 200", "addr:127.0.0.1"),
        ("GET /admin/workers 200", "admin#0:…6789"),
    ):
        assert any(re.search(f"{path} .* client={client}", line) for line in access), access
