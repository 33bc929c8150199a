"""Ollama's API on a real server, driven by the official `ollama` Python client (embed,
embeddings, list, show) and LangChain's `OllamaEmbeddings`: the vectors are those of
/v1/embeddings, counts and durations are real, errors come in Ollama's shape."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import numpy as np
import ollama
import pytest

from tests.e2e.server import ServerProcess
from tests.tolerances import assert_batch_invariant

pytestmark = pytest.mark.slow

TEXTS = ["Local embeddings run on your own machine.", "vectors, retrieval and search"]
LONG = "word " * 1200  # over MiniLM's 512-token context


@pytest.fixture
def client(server: ServerProcess) -> Iterator[ollama.Client]:
    with ollama.Client(host=server.url) as opened:
        yield opened


def _openai(server: ServerProcess, texts: list[str], **extra: object) -> np.ndarray:
    body = {"input": texts, "model": "minilm", **extra}
    answer = httpx.post(server.url + "/v1/embeddings", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return np.array([row["embedding"] for row in answer.json()["data"]])


def test_embed_matches_v1_embeddings(server: ServerProcess, client: ollama.Client) -> None:
    for name in ("minilm", "minilm:latest", "text-embedding-3-small:latest"):
        answer = client.embed(model=name, input=TEXTS)
        assert_batch_invariant(answer.embeddings, _openai(server, TEXTS))
        assert answer.model == "minilm"
        assert answer.total_duration is not None and answer.total_duration > 0
        assert answer.load_duration == 0
    tokens = httpx.post(server.url + "/tokenize", json={"content": TEXTS[0], "add_special": True})
    single = client.embed(model="minilm", input=TEXTS[0])
    assert single.prompt_eval_count == len(tokens.json()["tokens"])  # a real count
    assert np.allclose(np.linalg.norm(single.embeddings, axis=1), 1.0, atol=1e-5)
    cut = client.embed(model="minilm", input=TEXTS, dimensions=64)
    assert np.array(cut.embeddings).shape == (2, 64)


def test_legacy_embeddings_match_v1_embeddings(
    server: ServerProcess, client: ollama.Client
) -> None:
    answer = client.embeddings(model="minilm:latest", prompt=TEXTS[1])
    assert_batch_invariant(answer.embedding, _openai(server, [TEXTS[1]]))
    assert client.embeddings(model="minilm", prompt="").embedding == []


def test_truncate_defaults_to_true_as_ollama(server: ServerProcess, client: ollama.Client) -> None:
    answer = httpx.post(server.url + "/api/embed", json={"model": "minilm", "input": LONG})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-truncated"] == "0"
    assert answer.json()["prompt_eval_count"] == 512
    expected = _openai(server, [LONG], truncate="end")
    assert_batch_invariant(answer.json()["embeddings"], expected)
    with pytest.raises(ollama.ResponseError) as refused:
        client.embed(model="minilm", input=LONG, truncate=False)
    assert refused.value.status_code == 400 and "512" in refused.value.error
    assert "leave truncate true" in refused.value.error  # Ollama's field, not truncate='end'
    assert httpx.post(server.url + "/api/embed", json={"input": "x"}).headers["x-truncated"] == (
        "none"
    )


def test_list_show_ps_and_version(server: ServerProcess, client: ollama.Client) -> None:
    listed = {model.model for model in client.list().models}
    assert listed == {"minilm:latest", "text-embedding-3-small:latest"}
    shown = client.show("minilm:latest")
    assert shown.capabilities == ["embedding"]
    assert shown.details is not None and shown.details.family == "bert"
    assert shown.modelinfo is not None and shown.modelinfo["bert.embedding_length"] == 384
    running = client.ps().models
    assert [m.model for m in running] == ["minilm:latest"] and running[0].context_length == 512
    version = httpx.get(server.url + "/api/version").json()["version"]
    assert tuple(int(part) for part in version.split(".")) >= (0, 3, 0)  # /api/embed's


def test_errors_come_in_ollamas_shape(server: ServerProcess, client: ollama.Client) -> None:
    with pytest.raises(ollama.ResponseError) as missing:
        client.embed(model="no-such-model", input="x")
    assert missing.value.status_code == 404 and "no-such-model" in missing.value.error
    with pytest.raises(ollama.ResponseError) as unknown:
        client.show("no-such-model")
    assert unknown.value.status_code == 404
    cases = [
        ("POST", "/api/embed", b"{not json", 400),
        ("POST", "/api/embed", b'{"input": 3}', 400),
        ("POST", "/api/embed", b'{"input": ["a", 2]}', 400),
        ("POST", "/api/embed", b'{"input": "a", "truncate": "yes"}', 400),
        ("POST", "/api/embeddings", b'{"model": "minilm"}', 400),
        ("POST", "/api/embed", b"[" * 300_000, 413),
        ("GET", "/api/embed", b"", 405),
        ("GET", "/api/generate", b"", 404),
    ]
    for method, path, body, status in cases:
        answer = httpx.request(method, server.url + path, content=body, timeout=60)
        assert answer.status_code == status, (path, body[:40], answer.text)
        error = answer.json()["error"]
        assert isinstance(error, str) and error, answer.text
    # keep_alive and options (unknown keys too) are accepted and ignored, as Ollama does
    ignored = {"model": "minilm", "input": "x", "keep_alive": "5m", "options": {"num_ctx": 8}}
    assert httpx.post(server.url + "/api/embed", json=ignored).status_code == 200
    assert httpx.get(server.url + "/health").status_code == 200  # still serving


def test_langchain_ollama_embeddings(server: ServerProcess) -> None:
    from langchain_ollama import OllamaEmbeddings

    embedder = OllamaEmbeddings(model="minilm", base_url=server.url)
    try:
        documents = embedder.embed_documents(TEXTS)
        query = embedder.embed_query(TEXTS[0])
    finally:  # LangChain never closes the ollama client's connection pool itself
        if embedder._client is not None:
            embedder._client._client.close()
    assert_batch_invariant(documents, _openai(server, TEXTS))
    assert_batch_invariant(query, _openai(server, TEXTS[:1]))
