"""The official OpenAI SDKs against a real server process give the library's vectors."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import numpy as np
import pytest
from openai import OpenAI

from embellama import EmbeddingEngine
from tests.e2e.server import ServerProcess
from tests.tolerances import assert_batch_invariant, assert_float32_close

TEXTS = ["hello world", "Embeddings for search and RAG", "日本語のテキスト", "emoji 🙂 text"]


@pytest.fixture(scope="module")
def client(server: ServerProcess) -> OpenAI:
    return OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)


def test_default_base64_encoding(client: OpenAI, engine: EmbeddingEngine) -> None:
    response = client.embeddings.create(model="minilm", input=TEXTS)
    got = np.array([item.embedding for item in response.data])
    assert [item.index for item in response.data] == [0, 1, 2, 3]
    assert_batch_invariant(got, engine.embed(TEXTS))
    assert response.usage.prompt_tokens == sum(engine.count_tokens(TEXTS))
    assert response.usage.total_tokens == response.usage.prompt_tokens
    assert response.model == "minilm"


def test_float_dimensions_and_alias(client: OpenAI, engine: EmbeddingEngine) -> None:
    response = client.embeddings.create(
        model="text-embedding-3-small", input=TEXTS, encoding_format="float", dimensions=128
    )
    got = np.array([item.embedding for item in response.data])
    assert got.shape == (4, 128)
    assert_batch_invariant(got, engine.embed(TEXTS, dimensions=128))
    assert_float32_close(np.linalg.norm(got, axis=1), np.ones(len(got)))


def test_token_id_inputs(client: OpenAI, engine: EmbeddingEngine) -> None:
    ids = [engine.tokenize(text) for text in TEXTS]
    response = client.embeddings.create(model="minilm", input=ids, encoding_format="float")
    got = np.array([item.embedding for item in response.data])
    assert_batch_invariant(got, engine.embed(TEXTS))
    single = client.embeddings.create(model="minilm", input=ids[0])
    assert_batch_invariant(single.data[0].embedding, engine.embed(TEXTS[0]))


def test_same_request_twice_gives_the_same_bytes(server: ServerProcess) -> None:
    # "cache": false: the second answer is computed again, not read back.
    body = {"model": "minilm", "input": [*TEXTS, "one more, longer text " * 20], "cache": False}
    first, second = (httpx.post(server.url + "/v1/embeddings", json=body) for _ in range(2))
    assert first.status_code == second.status_code == 200
    assert first.json()["data"] == second.json()["data"]  # base64 of the raw float32 bytes


def test_models_routes(client: OpenAI, server: ServerProcess) -> None:
    names = sorted(model.id for model in client.models.list())
    assert names == ["minilm", "text-embedding-3-small"]
    card = httpx.get(server.url + "/v1/models/minilm").json()
    assert (card["dimensions"], card["context_length"]) == (384, 512)
    info = httpx.get(server.url + "/info").json()
    assert info["max_inputs_per_request"] == 64
    assert info["models"][0]["max_tokens_per_input"] == 512
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/ready")
    assert ready.status_code == 200 and ready.json()["models"]["minilm"]["workers_alive"] == 2


def test_request_id_and_timing_headers(server: ServerProcess) -> None:
    response = httpx.post(
        server.url + "/v1/embeddings",
        json={"input": "x", "model": "minilm"},
        headers={"X-Request-ID": "my-id-123"},
    )
    assert response.headers["x-request-id"] == "my-id-123"
    assert int(response.headers["x-tokens"]) == 3
    assert float(response.headers["x-inference-time"]) > 0
    generated = httpx.get(server.url + "/health").headers["x-request-id"]
    assert len(generated) == 32


NODE_SCRIPT = """
const OpenAI = require('openai');
const client = new OpenAI({ baseURL: process.argv[2], apiKey: 'unused', maxRetries: 0 });
(async () => {
  const texts = JSON.parse(process.argv[3]);
  const base64 = await client.embeddings.create({ model: 'minilm', input: texts });
  const float = await client.embeddings.create({ model: 'minilm', input: texts, encoding_format: 'float' });
  console.log(JSON.stringify({ base64: base64.data.map(d => d.embedding), float: float.data.map(d => d.embedding),
                               usage: base64.usage }));
})().catch(err => { console.error(err); process.exit(1); });
"""


@pytest.fixture(scope="session")
def node_openai(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.fail("node and npm are required for the OpenAI Node SDK test")
    folder = tmp_path_factory.mktemp("node-openai")
    subprocess.run(["npm", "init", "-y"], cwd=folder, check=True, capture_output=True)
    subprocess.run(
        ["npm", "install", "--no-audit", "--no-fund", "openai@4"],
        cwd=folder,
        check=True,
        capture_output=True,
        timeout=300,
    )
    (folder / "embed.js").write_text(NODE_SCRIPT)
    return folder


def test_openai_node_sdk(node_openai: Path, server: ServerProcess, engine: EmbeddingEngine) -> None:
    done = subprocess.run(
        ["node", "embed.js", server.url + "/v1", json.dumps(TEXTS)],
        cwd=node_openai,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    expected = engine.embed(TEXTS)
    for key in ("base64", "float"):
        got = np.array(result[key])
        assert got.shape == (4, 384), key
        assert_batch_invariant(got, expected)
    assert result["usage"]["prompt_tokens"] == sum(engine.count_tokens(TEXTS))
