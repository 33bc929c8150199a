"""Model quirks through a real server and the OpenAI SDK: Dense layers after pooling
(served when the pooling commutes with them, refused at start when it does not) and a
decoder's EOS (`--add-eos`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from openai import OpenAI

from embellama import EmbeddingEngine
from tests.e2e.server import serving
from tests.fixtures.tiny_gemma import TinyGemma, build_tiny_gemma
from tests.tolerances import assert_batch_invariant

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> TinyGemma:
    return build_tiny_gemma(tmp_path_factory.mktemp("tiny_gemma_server"))


def test_served_vectors_equal_the_librarys(gemma: TinyGemma, server_logs: Path) -> None:
    texts = ["dense layers after pooling", "a second text"]
    with EmbeddingEngine.from_path(gemma.gguf) as engine:
        expected = engine.embed(texts)
    args = ["--model-path", str(gemma.gguf), "--model-name", "gemma", "--cache-size", "0"]
    with serving(args, server_logs) as server:
        client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        response = client.embeddings.create(model="gemma", input=texts)
        got = np.array([item.embedding for item in response.data])
    assert_batch_invariant(got, expected)


def test_a_non_commuting_pooling_fails_at_start_in_one_line(gemma: TinyGemma) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "embellama",
            "serve",
            "--model-path",
            str(gemma.gguf),
            "--pooling",
            "max",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "not 'max'" in done.stderr


def test_add_eos_through_the_server(
    tmp_path_factory: pytest.TempPathFactory, server_logs: Path
) -> None:
    from tests.fixtures.tiny_llama import build_tiny_llama

    llama = build_tiny_llama(tmp_path_factory.mktemp("tiny_llama_server"))
    texts = ["Hello world", "the quick brown fox"]
    with EmbeddingEngine.from_path(llama.gguf, add_eos=True) as with_eos:
        expected = with_eos.embed(texts)
        assert with_eos.tokenize(texts[0])[-1] == 2  # </s>
    with EmbeddingEngine.from_path(llama.gguf) as plain:
        without = plain.embed(texts)
    args = ["--model-path", str(llama.gguf), "--model-name", "tiny", "--add-eos"]
    with serving([*args, "--cache-size", "0"], server_logs) as server:
        client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
        got = np.array(
            [d.embedding for d in client.embeddings.create(model="tiny", input=texts).data]
        )
    assert_batch_invariant(got, expected)
    assert float(np.abs(got - without).max()) > 1e-2  # the EOS really changes the vector
