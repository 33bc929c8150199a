"""docs/troubleshooting.md quotes what users really see: the guards' refusals are provoked
on real processes, and each message must match a row of the guide's "Refusals" section,
where a placeholder (N, M, X, URL, `...`) stands for whatever the message holds there."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.server import ServerProcess, free_port, serving
from tests.fixtures.variants import retuned_copy

GUIDE = Path(__file__).parents[2] / "docs" / "troubleshooting.md"
SECTION = "## Refusals from the server's guards"
PLACEHOLDERS = ("N", "M", "A", "B", "W", "X", "P", "F", "F1", "F2", "URL", "OUTPUT")
API_KEY = "readme-api-key-0123456789"
ADMIN_KEY = "readme-admin-key-0123456789"


def _templates() -> list[re.Pattern[str]]:
    """The backticked messages of the section's "you see" column, as patterns."""
    section = GUIDE.read_text().split(SECTION, 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| ")]
    quoted = [span for row in rows for span in re.findall(r"`([^`]+)`", row)]
    # A message has words; a lone name (`refused`, a code, a route) would match anything.
    return [re.compile(_pattern(text)) for text in quoted if len(text.split()) >= 3]


def _pattern(text: str) -> str:
    escaped = re.escape(text).replace(re.escape("..."), ".+?")
    for name in PLACEHOLDERS:
        escaped = re.sub(rf"\b{name}\b", ".+?", escaped)
    return escaped


def _undocumented(messages: list[str]) -> list[str]:
    templates = _templates()
    return [m for m in messages if not any(t.search(m) for t in templates)]


def _start_failure(*args: str, env: dict[str, str] | None = None) -> str:
    """The one line a refused start prints (its exit status must say it failed)."""
    done = subprocess.run(
        [sys.executable, "-m", "embellama", "serve", "--port", str(free_port()), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode != 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def guarded(minilm_gguf: Path, server_logs: Path) -> Iterator[ServerProcess]:
    """Keys, a small tokenize cap and body limit, and a Redis tier nothing listens on."""
    with serving(
        [
            *("--model-path", str(minilm_gguf), "--workers", "1"),
            *("--api-key", API_KEY, "--admin-key", ADMIN_KEY),
            *("--max-tokenize-tokens", "8", "--max-body-bytes", "4096"),
            *("--cache-url", f"redis://127.0.0.1:{free_port()}/0"),
        ],
        server_logs,
    ) as process:
        yield process


def _refusal(server: ServerProcess, path: str, body: object, key: str | None) -> str:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    response = httpx.post(server.url + path, json=body, headers=headers, timeout=30)
    error = response.json()["error"]
    assert response.status_code >= 400
    documented = f"{response.status_code} `{error['code']}`" if error["code"] else ""
    assert documented in GUIDE.read_text(), documented
    return str(error["message"])


@pytest.mark.slow
def test_start_refusals_are_documented(minilm_gguf: Path) -> None:
    tiny = ("--model-path", str(minilm_gguf), "--memory-limit", "20MiB")
    seen = [
        _start_failure("--api-key", "short"),
        _start_failure("--admin-key", ""),
        _start_failure("--api-key", "has a space in it, sixteen+"),
        _start_failure(env={**os.environ, "EMBELLAMA_API_KEY": "abc"}),
        _start_failure(*tiny, "--n-ctx", "512"),
        _start_failure(*tiny),
    ]
    assert not _undocumented(seen), _undocumented(seen)


@pytest.mark.slow
def test_request_refusals_are_documented(guarded: ServerProcess) -> None:
    text = "one two three four five six seven eight nine ten"
    seen = [
        _refusal(guarded, "/v1/embeddings", {"input": "x"}, "not-the-key-0123456789"),
        _refusal(guarded, "/admin/config", {}, API_KEY),
        _refusal(guarded, "/admin/models/x/load", {"path": "/etc/hostname"}, ADMIN_KEY),
        _refusal(guarded, "/tokenize", {"content": text}, API_KEY),
        _refusal(guarded, "/detokenize", {"tokens": list(range(1000, 1010))}, API_KEY),
        _refusal(guarded, "/v1/embeddings", {"input": "x" * 5000}, API_KEY),
        _refusal(guarded, "/admin/cache/clear", {}, ADMIN_KEY),
    ]
    redis_outage = [line for line in guarded.log().splitlines() if "computing instead" in line]
    assert redis_outage, guarded.log()
    seen.append(redis_outage[0])
    assert not _undocumented(seen), _undocumented(seen)


@pytest.mark.slow
def test_a_refused_worker_is_documented(
    minilm_gguf: Path, server_logs: Path, tmp_path: Path
) -> None:
    """The file swapped under a running server, then its worker restarted."""
    served = Path(shutil.copy2(minilm_gguf, tmp_path / "served.gguf"))
    args = ["--model-path", str(served), "--model-name", "m", "--workers", "1"]
    with serving([*args, "--admin-key", ADMIN_KEY], server_logs) as server:
        os.replace(retuned_copy(served, tmp_path / "incoming.gguf"), served)
        os.kill(_worker(server)["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while (row := _worker(server))["state"] != "refused":
            assert time.monotonic() < deadline, f"never refused: {row}\n{server.log()}"
            time.sleep(0.1)
        assert not _undocumented([row["error"]]), row["error"]


def _worker(server: ServerProcess) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
    shown = httpx.get(server.url + "/admin/workers", headers=headers).json()
    row: dict[str, Any] = shown["m"][0]
    return row


def test_placeholders_stand_for_any_value() -> None:
    """The matcher itself: a placeholder takes any value, the words around it do not."""
    pattern = re.compile(_pattern("the text has N tokens, more than the limit of M per request"))
    assert pattern.search("the text has 10 tokens, more than the limit of 8 per request")
    assert not pattern.search("the text has 10 tokens, less than the limit of 8 per request")
