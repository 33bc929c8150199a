"""Nothing slow runs on the server's event loop: `/health` answers within 50 ms while a
multi-MB input is tokenized, while 2,048 short inputs are tokenized behind a maximal
instruction, and while a large model file's card is first served."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.server import ServerProcess, serving
from tests.fixtures.tiny_encoders import build_tiny_encoder

pytestmark = pytest.mark.slow

# What /health may take at worst while the loop is otherwise busy: a request that waits
# behind blocking work waits for all of it (seconds for a hash, ~0.6 s for this text).
HEALTH_BUDGET_SECONDS = 0.05


@pytest.fixture(scope="module")
def big_model_server(
    minilm_gguf: Path, server_logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """The default model padded to a sparse 1.2 GB file: hashing it would take seconds."""
    big = tmp_path_factory.mktemp("big-model") / "padded.gguf"
    shutil.copyfile(minilm_gguf, big)
    with big.open("r+b") as handle:
        handle.truncate(1_200_000_000)
    with serving(["--model-path", str(big), "--model-name", "big"], server_logs) as process:
        yield process


@pytest.fixture(scope="module")
def instructed_server(
    server_logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A tiny random encoder on MiniLM's vocabulary (decoding is cheap, tokenizing is
    not) with an instruction template and the default limits."""
    encoder = build_tiny_encoder(tmp_path_factory.mktemp("tiny-instructed"), "bert").gguf
    args = ["--model-path", str(encoder), "--model-name", "tiny", "--n-ctx", "512"]
    args += ["--instruction-template", "Instruct: {instruction}\\nQuery:"]
    with serving(args, server_logs) as process:
        yield process


def _health_latencies_during(server: ServerProcess, work: Callable[[], object]) -> list[float]:
    done = threading.Event()
    outcome: list[object] = []

    def run() -> None:
        outcome.append(work())
        done.set()

    latencies = []
    with httpx.Client(base_url=server.url, timeout=10) as client:
        client.get("/health")  # connection is up before the clock starts
        worker = threading.Thread(target=run)
        worker.start()
        while not done.is_set():
            started = time.perf_counter()
            assert client.get("/health").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.005)
        worker.join()
    assert outcome, "the work did not finish"
    return latencies


def test_health_stays_fast_while_a_huge_input_is_tokenized(
    big_model_server: ServerProcess,
) -> None:
    text = "retrieval augmented generation with local embeddings " * 80_000  # 4.2 MB

    def embed() -> int:
        response = httpx.post(
            big_model_server.url + "/v1/embeddings",
            json={"input": text, "truncate": True},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        return int(response.json()["usage"]["prompt_tokens"])

    latencies = _health_latencies_during(big_model_server, embed)
    assert len(latencies) >= 5, latencies
    assert max(latencies) < HEALTH_BUDGET_SECONDS, sorted(latencies)[-5:]


def test_health_stays_fast_while_a_12mb_token_id_body_is_parsed(
    big_model_server: ServerProcess,
) -> None:
    # 2,048 lists of five-digit ids, the last one outside the vocabulary: everything up
    # to the vocabulary check runs (decode, shape and type checks), nothing is decoded.
    ids = [10_000 + i % 20_000 for i in range(990)]
    body = orjson.dumps({"input": [ids] * 2047 + [[*ids[:-1], 10**6]], "truncate": True})
    assert len(body) > 12_000_000

    def embed() -> None:
        response = httpx.post(
            big_model_server.url + "/v1/embeddings",
            content=body,
            headers={"content-type": "application/json"},
            timeout=60,
        )
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_token_id"

    latencies = _health_latencies_during(big_model_server, embed)
    print(f"/health max {max(latencies) * 1000:.1f} ms over {len(latencies)} polls")
    assert len(latencies) >= 5, latencies
    assert max(latencies) < HEALTH_BUDGET_SECONDS, sorted(latencies)[-5:]


def test_health_stays_fast_while_model_cards_are_served(big_model_server: ServerProcess) -> None:
    def cards() -> None:
        for path in ("/v1/models", "/v1/models/big", "/info", "/v1/models"):
            assert httpx.get(big_model_server.url + path, timeout=60).status_code == 200

    latencies = _health_latencies_during(big_model_server, cards)
    assert max(latencies) < HEALTH_BUDGET_SECONDS, sorted(latencies)[-5:]


def test_health_stays_fast_while_inputs_are_tokenized_behind_a_long_instruction(
    instructed_server: ServerProcess,
) -> None:
    """2,048 one-word queries are 20 kB of text, but each is tokenized behind a 2,048-char
    instruction: 4 MB of text, which must be tokenized off the loop like a 4 MB input."""
    info = httpx.get(instructed_server.url + "/info").json()
    most, longest = info["max_inputs_per_request"], info["max_instruction_length"]
    instruction = ("find the passages that answer " * 100)[:longest]
    body = {
        "input": [f"query {n}" for n in range(most)],
        "input_type": "query",
        "instruction": instruction,
        "cache": False,
        "encoding_format": "base64",
    }

    def embed() -> int:
        response = httpx.post(instructed_server.url + "/v1/embeddings", json=body, timeout=120)
        assert response.status_code == 200, response.text
        assert response.headers["x-prefix"] == "applied"
        tokens = int(response.json()["usage"]["prompt_tokens"])
        assert tokens > most * 250, tokens  # the instruction's tokens are in every input
        return tokens

    latencies = _health_latencies_during(instructed_server, embed)
    print(f"/health max {max(latencies) * 1000:.1f} ms over {len(latencies)} polls")
    assert len(latencies) >= 5, latencies
    assert max(latencies) < HEALTH_BUDGET_SECONDS, sorted(latencies)[-5:]
