"""A real server runs the default model on ONNX Runtime beside the same file on llama.cpp.

Both come from one TOML file (`engine` is a `[[models]]` key); the ONNX Runtime model
runs in worker processes, is named in `/v1/models` and `/info`, gives the library's
vectors on the same engine through the official OpenAI SDK, agrees with llama.cpp to the
reference bound, and keeps serving after bad input and under concurrent callers. A file
the engine cannot run fails the start with the reason.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
from openai import OpenAI

from embellama import EmbeddingEngine
from tests.e2e.server import ServerProcess, free_port, serving
from tests.tolerances import REFERENCE_MIN_COSINE, assert_batch_invariant, min_cosine

pytestmark = pytest.mark.slow

TEXTS = ["hello world", "Embeddings for search and RAG", "日本語のテキスト", "emoji 🙂 text"]
MIXED = [" ".join(["word"] * (8 + (5 * index) % 33)) + f" {index}" for index in range(20)]


@pytest.fixture(scope="module")
def both(
    minilm_gguf: Path, server_logs: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    config = tmp_path_factory.mktemp("onnx-config") / "models.toml"
    config.write_text(
        f'[[models]]\nname = "ort"\npath = "{minilm_gguf}"\nengine = "onnxruntime"\n'
        "workers = 2\nthreads_per_worker = 1\n"
        f'[[models]]\nname = "cpp"\npath = "{minilm_gguf}"\nworkers = 1\nengine = "llama.cpp"\n'
        "threads_per_worker = 1\n"
    )
    with serving(["--config", str(config)], server_logs) as process:
        yield process


@pytest.fixture(scope="module")
def onnx_library(minilm_gguf: Path) -> Iterator[EmbeddingEngine]:
    with EmbeddingEngine.from_path(minilm_gguf, engine="onnxruntime") as engine:
        yield engine


def test_the_engine_is_named_in_models_and_info(both: ServerProcess) -> None:
    cards = {card["id"]: card for card in httpx.get(both.url + "/v1/models").json()["data"]}
    assert (cards["ort"]["engine"], cards["cpp"]["engine"]) == ("onnxruntime", "llama.cpp")
    info = {model["name"]: model for model in httpx.get(both.url + "/info").json()["models"]}
    assert (info["ort"]["engine"], info["cpp"]["engine"]) == ("onnxruntime", "llama.cpp")


def test_vectors_equal_the_library_on_the_same_engine_and_agree_with_llama_cpp(
    both: ServerProcess, onnx_library: EmbeddingEngine
) -> None:
    client = OpenAI(base_url=both.url + "/v1", api_key="unused", max_retries=0)
    got = np.array([d.embedding for d in client.embeddings.create(model="ort", input=TEXTS).data])
    assert_batch_invariant(got, onnx_library.embed(TEXTS))
    other = client.embeddings.create(model="cpp", input=TEXTS)
    assert min_cosine(got, [item.embedding for item in other.data]) >= REFERENCE_MIN_COSINE


def test_the_same_request_twice_gives_the_same_bytes(both: ServerProcess) -> None:
    body = {"model": "ort", "input": MIXED, "cache": False}
    first, second = (httpx.post(both.url + "/v1/embeddings", json=body) for _ in range(2))
    assert first.status_code == second.status_code == 200
    assert first.json()["data"] == second.json()["data"]


def test_concurrent_callers_get_their_text_alone(
    both: ServerProcess, onnx_library: EmbeddingEngine
) -> None:
    def one(text: str) -> list[float]:
        response = httpx.post(
            both.url + "/v1/embeddings",
            json={"model": "ort", "input": text, "encoding_format": "float", "cache": False},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        vector: list[float] = response.json()["data"][0]["embedding"]
        return vector

    with ThreadPoolExecutor(16) as pool:
        got = list(pool.map(one, MIXED))
    assert_batch_invariant(got, np.concatenate([onnx_library.embed([t]) for t in MIXED]))


def test_per_token_output(both: ServerProcess, onnx_library: EmbeddingEngine) -> None:
    response = httpx.post(
        both.url + "/v1/embeddings",
        json={
            "model": "ort",
            "input": "hello there",
            "pooling": "none",
            "encoding_format": "float",
        },
    )
    assert response.status_code == 200, response.text
    tokens = np.array(response.json()["data"][0]["embedding"])
    expected = onnx_library.embed_per_token("hello there")  # unnormalized; the server's are
    assert_batch_invariant(tokens, expected / np.linalg.norm(expected, axis=1, keepdims=True))


def test_bad_input_is_a_client_error_and_the_server_keeps_serving(both: ServerProcess) -> None:
    for body in (
        {"model": "ort", "input": ""},
        {"model": "ort", "input": [[10**9]]},  # a token id outside the vocabulary
        {"model": "ort", "input": "x " * 5000},  # past the context, truncation off
    ):
        refused = httpx.post(both.url + "/v1/embeddings", json=body)
        assert refused.status_code == 400, (body, refused.text)
    served = httpx.post(both.url + "/v1/embeddings", json={"model": "ort", "input": "still here"})
    assert served.status_code == 200


def test_a_file_the_engine_cannot_run_fails_the_start_with_why(gemma3_gguf: Path) -> None:
    command = [sys.executable, "-m", "embellama", "serve", "--port", str(free_port())]
    command += ["--model-path", str(gemma3_gguf), "--engine", "onnxruntime", "--workers", "1"]
    command.append("--allow-unverified-architecture")  # past that check, to the engine's
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert (
        "engine 'onnxruntime' runs the 'bert' and 'nomic-bert' architectures only" in done.stderr
    ), done.stderr


def test_an_unknown_engine_is_refused_naming_the_choices(minilm_gguf: Path) -> None:
    command = [sys.executable, "-m", "embellama", "serve", "--port", str(free_port())]
    command += ["--model-path", str(minilm_gguf), "--engine", "torch"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "onnxruntime" in done.stderr and "llama.cpp" in done.stderr, done.stderr
