"""A real 32K-context decoder GGUF served with the defaults, as a new user would.

Gemma 3 270M (Q4_K_M, 253 MB, n_ctx_train 32,768) from PyPI: the same architecture and
context length as the decoder embedders people serve. With a context sized to the
trained length and one micro-batch per context, its workers asked for 33 GB and
crash-looped; this checks it starts, embeds, survives a worker crash and stays small.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from openai import OpenAI

from tests.e2e.server import ServerProcess, free_port, serving, start_server

pytestmark = pytest.mark.slow

ARGS = ("--allow-unverified-architecture", "--cache-size", "0")
# Each worker maps the file (shared) and holds its own KV cache and buffers; the
# seed's target for a worker's proportional set size.
PSS_PER_WORKER_FILE_MULTIPLE = 2


def _pss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no Pss line for {pid}")


def _embed(server: ServerProcess, texts: list[str]) -> list[list[float]]:
    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    with client:
        response = client.embeddings.create(model="gemma", input=texts, timeout=300)
    return [item.embedding for item in response.data]


def test_defaults_start_embed_survive_a_crash_and_stay_small(
    gemma3_gguf: Path, server_logs: Path
) -> None:
    args = ["--model-path", str(gemma3_gguf), "--model-name", "gemma", *ARGS]

    process = start_server(args, server_logs)
    try:
        ready_after = process.wait_ready(timeout=30)
        log = process.log()
        assert "restarting" not in log, log
        assert "32768-token context" in log, log  # the trained context fits here
        info = httpx.get(process.url + "/info").json()["models"][0]
        assert info["max_tokens_per_input"] == 32768
        assert 0 < info["memory_per_worker_bytes"] < 2 << 30

        vectors = np.asarray(_embed(process, ["hello world", "a second, longer text"]))
        assert vectors.shape == (2, 640)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

        pids = process.worker_pids()
        assert len(pids) == 2
        file_size = gemma3_gguf.stat().st_size
        pss = [_pss(pid) for pid in pids]
        assert max(pss) < PSS_PER_WORKER_FILE_MULTIPLE * file_size, pss

        os.kill(pids[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            live = process.worker_pids()
            if len(live) == 2 and pids[0] not in live:
                break
            time.sleep(0.2)
        again = np.asarray(_embed(process, ["hello world", "a second, longer text"]))
        assert np.array_equal(again, vectors)  # the replacement computes the same bits
        print(f"\nready in {ready_after:.1f} s; PSS per worker:", [p >> 20 for p in pss], "MiB")
    finally:
        assert process.stop() == 0, process.log()


def test_long_inputs_up_to_the_announced_context(gemma3_gguf: Path, server_logs: Path) -> None:
    args = ["--model-path", str(gemma3_gguf), "--model-name", "gemma", "--n-ctx", "4096", *ARGS]
    args += ["--request-timeout", "300"]  # 2,000 tokens of a 270M decoder, on 2 cores
    with serving(args, server_logs) as server:
        sentence = "The committee met again to discuss the annual budget and its many lines. "
        ids = httpx.post(server.url + "/tokenize", json={"content": sentence * 150}).json()
        assert 2000 <= len(ids["tokens"]) < 4096
        vector = _embed(server, [sentence * 150])[0]  # truncate is off by default
        assert len(vector) == 640

        too_long = httpx.post(
            server.url + "/v1/embeddings", json={"input": [sentence * 300]}, timeout=60
        )
        assert too_long.status_code == 400
        error = too_long.json()["error"]
        assert error["param"] == "input[0]" and "4096" in error["message"]


def test_a_context_that_cannot_fit_fails_at_start_in_one_line(
    gemma3_gguf: Path, server_logs: Path
) -> None:
    command = [sys.executable, "-m", "embellama", "serve", "--port", str(free_port())]
    command += ["--model-path", str(gemma3_gguf), *ARGS, "--n-ctx", "32768"]
    command += ["--memory-limit", "1GiB"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    assert "--n-ctx 32768" in lines[0] and "GiB" in lines[0] and "1.0 GiB available" in lines[0]
