"""Rerank over HTTP: a cross-encoder beside an embedding model from one config file,
called with the official `cohere` SDK (its ClientV2 posts to /v2/rerank), a Jina-style
body, and llama-server's field names; under concurrent mixed traffic."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import cohere
import httpx
import numpy as np
import pytest

from embellama import EmbeddingEngine
from tests.e2e.server import ServerProcess, serving
from tests.fixtures.tiny_xlmr import TinyXlmr, build_tiny_xlmr
from tests.tolerances import RERANK_BATCH_INVARIANCE_ATOL, assert_batch_invariant

pytestmark = pytest.mark.slow

QUERY = "how do local embeddings work?"
DOCUMENTS = [
    "Local embeddings run on your own machine.",
    "A recipe for bread: flour, water, salt.",
    "日本語のテキスト 中文 русский",
    "vectors, retrieval and search",
    "a",
]
ROUTES = ("/v1/rerank", "/rerank", "/v1/reranking", "/reranking", "/v2/rerank")


@pytest.fixture(scope="module")
def reranker(tmp_path_factory: pytest.TempPathFactory) -> TinyXlmr:
    return build_tiny_xlmr(tmp_path_factory.mktemp("xlmr-reranker-e2e"), classifier=True)


@pytest.fixture(scope="module")
def expected(reranker: TinyXlmr) -> dict[int, float]:
    """The library's logits, each pair scored alone."""
    with EmbeddingEngine.from_path(reranker.gguf) as engine:
        return {i: engine.rerank(QUERY, [d]).hits[0].logit for i, d in enumerate(DOCUMENTS)}


@pytest.fixture(scope="module")
def server(
    reranker: TinyXlmr,
    minilm_gguf: Path,
    server_logs: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    config = tmp_path_factory.mktemp("rerank-config") / "embellama.toml"
    config.write_text(f"""
[server]
max_inputs_per_request = 256

[[models]]
name = "minilm"
path = "{minilm_gguf}"
kind = "embedding"
workers = 1
threads_per_worker = 1

[[models]]
name = "reranker"
path = "{reranker.gguf}"
aliases = ["rerank-english-v3.0"]
kind = "rerank"
workers = 1
threads_per_worker = 1
""")
    with serving(["--config", str(config)], server_logs) as process:
        yield process


def _post(server: ServerProcess, path: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=60)


def test_cohere_sdk_client_v2(server: ServerProcess, expected: dict[int, float]) -> None:
    with httpx.Client(timeout=60) as http:
        client = cohere.ClientV2(api_key="unused", base_url=server.url, httpx_client=http)
        response = client.rerank(
            model="rerank-english-v3.0", query=QUERY, documents=DOCUMENTS, top_n=3
        )
    assert len(response.results) == 3
    best = sorted(expected, key=lambda i: -expected[i])[:3]
    assert [r.index for r in response.results] == best
    for result in response.results:
        score = 1 / (1 + np.exp(-expected[result.index]))
        assert abs(result.relevance_score - score) <= RERANK_BATCH_INVARIANCE_ATOL


def test_jina_body_and_every_alias(server: ServerProcess, expected: dict[int, float]) -> None:
    body = {
        "model": "reranker",
        "query": QUERY,
        "documents": [{"text": d} for d in DOCUMENTS],
        "return_documents": True,
        "raw_scores": True,
    }
    answers = [_post(server, path, body) for path in ROUTES]
    for response in answers:
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["model"] == "reranker"
        assert int(response.headers["x-tokens"]) == data["usage"]["total_tokens"] > 0
        results = data["results"]
        assert sorted(r["index"] for r in results) == list(range(len(DOCUMENTS)))
        assert [r["relevance_score"] for r in results] == sorted(
            (r["relevance_score"] for r in results), reverse=True
        )
        for result in results:
            assert result["document"] == {"text": DOCUMENTS[result["index"]]}
            logit = expected[result["index"]]
            assert abs(result["relevance_score"] - logit) <= RERANK_BATCH_INVARIANCE_ATOL
    first = answers[0].json()["results"]
    assert all(a.json()["results"] == first for a in answers)  # deterministic
    # llama-server's clients send `texts`; no model named: the first reranker answers.
    plain = _post(server, "/reranking", {"query": QUERY, "texts": DOCUMENTS}).json()
    assert plain["model"] == "reranker" and "document" not in plain["results"][0]


def test_errors_name_the_field_and_the_server_keeps_serving(server: ServerProcess) -> None:
    cases: list[tuple[str, dict[str, object], str, str]] = [
        (
            "/v1/rerank",
            {"model": "minilm", "query": "q", "documents": ["d"]},
            "model",
            "wrong_model_kind",
        ),
        ("/v1/embeddings", {"model": "reranker", "input": "text"}, "model", "wrong_model_kind"),
        ("/v1/rerank", {"query": "q", "documents": []}, "documents", "invalid_value"),
        ("/v1/rerank", {"documents": ["d"]}, "query", "missing_required_parameter"),
        ("/v1/rerank", {"query": "q", "documents": ["d", 3]}, "documents[1]", "invalid_value"),
        ("/v1/rerank", {"query": "q", "documents": ["d", ""]}, "documents[1]", "invalid_input"),
        ("/v1/rerank", {"query": "q", "documents": ["d"], "top_n": 0}, "top_n", "invalid_value"),
        (
            "/v1/rerank",
            {"query": "q", "documents": ["x " * 2000], "truncate": False},
            "documents[0]",
            "context_length_exceeded",
        ),
        (
            "/v1/rerank",
            {"query": "q " * 2000, "documents": ["d"]},
            "query",
            "context_length_exceeded",
        ),
        ("/v1/rerank", {"query": "q", "documents": ["d"] * 257}, "documents", "invalid_value"),
    ]
    for path, body, param, code in cases:
        response = _post(server, path, body)
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert (error["param"], error["code"]) == (param, code), (body, error)
    long = _post(server, "/v1/rerank", {"query": "q", "documents": ["x " * 2000]}).json()
    assert long["results"][0]["truncated"] is True
    assert _post(server, "/v1/embeddings", {"model": "minilm", "input": "ok"}).status_code == 200


def test_models_and_info_report_kind(server: ServerProcess) -> None:
    cards = {c["id"]: c for c in httpx.get(server.url + "/v1/models").json()["data"]}
    assert (cards["reranker"]["kind"], cards["minilm"]["kind"]) == ("rerank", "embedding")
    assert cards["reranker"]["verified"] and cards["minilm"]["verified"]
    assert cards["rerank-english-v3.0"]["pooling"] == "rank"
    info = httpx.get(server.url + "/info").json()
    assert info["max_documents_per_request"] == 256
    kinds = {m["name"]: (m["kind"], m["architecture"]) for m in info["models"]}
    assert kinds == {"minilm": ("embedding", "bert"), "reranker": ("rerank", "bert")}


def test_concurrent_reranks_mixed_with_embeddings(
    server: ServerProcess, expected: dict[int, float]
) -> None:
    """24 rerank and 24 embedding requests at once: every answer equals its
    one-at-a-time answer within the batch-invariance bound."""
    texts = [f"text {i} about local embeddings" for i in range(24)]
    alone = _post(server, "/v1/embeddings", {"model": "minilm", "input": texts}).json()

    async def run() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            reranks = [
                client.post(
                    "/v1/rerank", json={"query": QUERY, "documents": DOCUMENTS, "raw_scores": True}
                )
                for _ in range(24)
            ]
            embeds = [
                client.post("/v1/embeddings", json={"model": "minilm", "input": t}) for t in texts
            ]
            return list(await asyncio.gather(*reranks, *embeds))

    responses = asyncio.run(run())
    assert all(r.status_code == 200 for r in responses)
    for response in responses[:24]:
        for result in response.json()["results"]:
            assert abs(result["relevance_score"] - expected[result["index"]]) <= (
                RERANK_BATCH_INVARIANCE_ATOL
            )
    for response, item in zip(responses[24:], alone["data"], strict=True):
        assert_batch_invariant(response.json()["data"][0]["embedding"], item["embedding"])


def test_a_document_that_crashes_the_worker_is_named(reranker: TinyXlmr, server_logs: Path) -> None:
    """The poison-input machinery holds for pairs: the 400 names `documents[i]`, and the
    other documents' requests are served."""
    odd = "ZQX 9731 qzx"
    with EmbeddingEngine.from_path(reranker.gguf) as engine:
        safe = set(engine.tokenize(QUERY)) | set(engine.tokenize(DOCUMENTS[0]))
        marker = next(t for t in engine.tokenize(odd, add_special=False) if t not in safe)
    env = {"EMBELLAMA_TEST_CRASH_ON_TOKEN": str(marker)}
    args = ["--model-path", str(reranker.gguf), "--workers", "1"]
    with serving(args, server_logs, env) as server:
        body: dict[str, object] = {"query": QUERY, "documents": [DOCUMENTS[0], odd]}
        refused = _post(server, "/v1/rerank", body)
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert (error["code"], error["param"]) == ("input_crashed_worker", "documents[1]")
        assert error["message"].startswith("document 1 crashed the model's worker")
        server.wait_ready()  # the crashed worker's replacement
        fine = _post(server, "/v1/rerank", {"query": QUERY, "documents": [DOCUMENTS[0]]})
        assert fine.status_code == 200, fine.text
