"""Operating the server: exact metrics, API keys, rate limits, masked secrets."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from openai import AuthenticationError, OpenAI

from embellama.cli.options import default_workers
from tests.e2e.server import ServerProcess, serving

KEYS = ("sk-test-alpha-0123456789", "sk-test-bravo-9876543210")


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        base, _, label_text = series.partition("{")
        if base == name and all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            return float(value)
    return 0.0


@pytest.fixture(scope="module")
def secured(
    minilm_gguf: Path, server_logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    key_file = tmp_path_factory.mktemp("keys") / "keys.txt"
    key_file.write_text(f"# team keys\n{KEYS[1]}\n")
    with serving(
        [
            "--model-path",
            str(minilm_gguf),
            "--model-name",
            "minilm",
            "--api-key",
            KEYS[0],
            "--api-key-file",
            str(key_file),
            "--rate-limit-rps",
            "5",
            "--log-format",
            "json",
        ],
        server_logs,
    ) as process:
        yield process


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def test_api_keys(secured: ServerProcess) -> None:
    url = secured.url + "/v1/embeddings"
    missing = httpx.post(url, json={"input": "x"})
    assert missing.status_code == 401
    assert missing.json()["error"]["code"] == "invalid_api_key"
    assert missing.headers["x-request-id"]
    assert (
        httpx.post(url, json={"input": "x"}, headers=_auth("sk-test-alpha-01234567XX")).status_code
        == 401
    )
    assert (
        httpx.post(url, json={"input": "x"}, headers={"Authorization": KEYS[0]}).status_code == 401
    )
    for key in KEYS:
        assert httpx.post(url, json={"input": "x"}, headers=_auth(key)).status_code == 200
    for public in ("/health", "/ready", "/metrics"):
        assert httpx.get(secured.url + public).status_code == 200, public
    assert httpx.get(secured.url + "/v1/models").status_code == 401
    with (
        OpenAI(base_url=secured.url + "/v1", api_key="wrong", max_retries=0) as wrong,
        pytest.raises(AuthenticationError),
    ):
        wrong.embeddings.create(model="minilm", input="x")
    with OpenAI(base_url=secured.url + "/v1", api_key=KEYS[1], max_retries=0) as ok:
        assert len(ok.embeddings.create(model="minilm", input="x").data[0].embedding) == 384


def test_keys_never_leak(secured: ServerProcess) -> None:
    for key, suffix in zip(KEYS, ("…6789", "…3210"), strict=True):
        info = httpx.get(secured.url + "/info", headers=_auth(key)).json()
        assert info["auth"]["api_keys"] == [suffix]  # the caller's own, no other tenant's
        assert info["auth"]["requests_per_second"] == 5
    time.sleep(0.2)
    log = secured.log()
    assert all(key not in log for key in KEYS)
    assert '"request_id"' in log and '"status": 401' in log


def test_json_log_lines_are_plain_and_access_lines_name_the_client(
    secured: ServerProcess,
) -> None:
    """uvicorn's records carry `color_message` (ANSI escapes); a log pipeline gets none."""
    assert httpx.get(secured.url + "/health").status_code == 200
    time.sleep(0.2)
    entries = [json.loads(line) for line in secured.log().splitlines() if line.startswith("{")]
    assert any(e["logger"].startswith("uvicorn") for e in entries)
    assert not [e for e in entries if "color_message" in e or "\x1b" in json.dumps(e)]
    access = [e for e in entries if e["logger"] == "embellama.access"]
    assert access and all(e["client"] for e in access)
    assert any(e["path"] == "/health" and e["client"] == "addr:127.0.0.1" for e in access)


def test_rate_limit_then_recovery(secured: ServerProcess) -> None:
    time.sleep(1.5)  # let the bucket refill after the other tests
    statuses = []
    limited = None
    for _ in range(12):
        response = httpx.post(
            secured.url + "/v1/embeddings", json={"input": "x"}, headers=_auth(KEYS[1])
        )
        statuses.append(response.status_code)
        if response.status_code == 429:
            limited = response
    assert statuses.count(200) >= 5 and limited is not None, statuses
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    wait = int(limited.headers["retry-after"])
    assert 1 <= wait <= 2
    assert limited.headers["x-ratelimit-limit-requests"] == "5"
    # The other key has its own bucket.
    assert (
        httpx.post(
            secured.url + "/v1/embeddings", json={"input": "x"}, headers=_auth(KEYS[0])
        ).status_code
        == 200
    )
    time.sleep(wait)
    after = httpx.post(secured.url + "/v1/embeddings", json={"input": "x"}, headers=_auth(KEYS[1]))
    assert after.status_code == 200
    assert int(after.headers["x-ratelimit-remaining-requests"]) >= 0


def test_metrics_count_exactly(minilm_gguf: Path, server_logs: Path) -> None:
    args = ["--model-path", str(minilm_gguf), "--model-name", "minilm", "--cache-size", "0"]
    with serving(args, server_logs) as server:  # every request computes: exact counts
        url = server.url + "/v1/embeddings"
        for _ in range(3):
            assert httpx.post(url, json={"input": ["one two", "three"]}).status_code == 200
        assert httpx.post(url, json={"input": ""}).status_code == 400
        assert httpx.post(url, json={"input": "x", "model": "nope"}).status_code == 404
        text = httpx.get(server.url + "/metrics").text
        assert (
            _metric(
                text,
                "embellama_requests_total",
                route="/v1/embeddings",
                status="200",
                model="minilm",
            )
            == 3
        )
        assert _metric(text, "embellama_requests_total", route="/v1/embeddings", status="400") == 1
        assert _metric(text, "embellama_requests_total", route="/v1/embeddings", status="404") == 1
        assert _metric(text, "embellama_rejected_requests_total", reason="validation") == 2
        assert _metric(text, "embellama_inputs_total", model="minilm") == 6
        assert _metric(text, "embellama_tokens_total", model="minilm") == 3 * (4 + 3)
        assert _metric(text, "embellama_batch_size_count", model="minilm") >= 3
        assert _metric(text, "embellama_batch_tokens_sum", model="minilm") == 21
        assert (
            _metric(
                text, "embellama_stage_duration_seconds_count", stage="inference", model="minilm"
            )
            == 3
        )
        assert (
            _metric(text, "embellama_request_duration_seconds_count", route="/v1/embeddings") == 5
        )
        assert _metric(text, "embellama_workers_alive", model="minilm") == default_workers(0)
        assert _metric(text, "embellama_queue_depth", model="minilm") == 0
        assert _metric(text, "embellama_process_resident_memory_bytes") > 0
        assert _metric(text, "embellama_worker_resident_memory_bytes", model="minilm") > 0
