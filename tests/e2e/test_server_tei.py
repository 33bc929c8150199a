"""TEI's API on a real server: `huggingface_hub.InferenceClient(base_url=...)` embeds
through it (strings, lists, normalize, truncate, prompt_name), a TEI-shaped rerank
client gets TEI's `[{index, score, text?}]`, /tokenize answers TEI's tokens with spans
to TEI's body (llama-server's shape to its own), /decode gives the text back, and errors
come in TEI's shape and statuses."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from huggingface_hub import InferenceClient

from embellama import EmbeddingEngine
from tests.e2e.server import ServerProcess, serving
from tests.fixtures.tiny_xlmr import TinyXlmr, build_tiny_xlmr
from tests.tolerances import RERANK_BATCH_INVARIANCE_ATOL, assert_batch_invariant

pytestmark = pytest.mark.slow

TEXTS = ["Local embeddings run on your own machine.", "vectors, retrieval and search"]
QUERY = "how do local embeddings work?"
LONG = "word " * 1200  # over MiniLM's 512-token context


@pytest.fixture(scope="module")
def reranker(tmp_path_factory: pytest.TempPathFactory) -> TinyXlmr:
    return build_tiny_xlmr(tmp_path_factory.mktemp("xlmr-reranker-tei"), classifier=True)


@pytest.fixture(scope="module")
def tei(
    reranker: TinyXlmr,
    minilm_gguf: Path,
    server_logs: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    config = tmp_path_factory.mktemp("tei-config") / "embellama.toml"
    config.write_text(f"""
[server]
max_inputs_per_request = 8
max_body_bytes = 200000
max_tokenize_tokens = 4096

[[models]]
name = "minilm"
path = "{minilm_gguf}"
kind = "embedding"
workers = 1
threads_per_worker = 1
document_prefix = "passage: "
query_prefix = "query: "

[[models]]
name = "reranker"
path = "{reranker.gguf}"
kind = "rerank"
workers = 1
threads_per_worker = 1
""")
    with serving(["--config", str(config)], server_logs) as process:
        yield process


def _openai(server: ServerProcess, texts: list[str], **extra: object) -> np.ndarray:
    body = {"input": texts, "model": "minilm", **extra}
    answer = httpx.post(server.url + "/v1/embeddings", json=body, timeout=60)
    assert answer.status_code == 200, answer.text
    return np.array([row["embedding"] for row in answer.json()["data"]])


def test_feature_extraction_matches_v1_embeddings(tei: ServerProcess) -> None:
    client = InferenceClient(base_url=tei.url)
    one = client.feature_extraction(TEXTS[0])
    assert one.shape == (1, 384)
    assert_batch_invariant(one, _openai(tei, TEXTS[:1]))
    both = client.feature_extraction(TEXTS)
    assert_batch_invariant(both, _openai(tei, TEXTS))
    raw = client.feature_extraction(TEXTS, normalize=False)
    assert_batch_invariant(raw, _openai(tei, TEXTS, normalize=False))
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0, atol=1e-3)
    query = client.feature_extraction(TEXTS[0], prompt_name="query")
    assert_batch_invariant(query, _openai(tei, TEXTS[:1], input_type="query"))
    assert not np.allclose(query, one, atol=1e-3)  # the prefix went in


def test_truncate_and_its_direction(tei: ServerProcess) -> None:
    client = InferenceClient(base_url=tei.url)
    right = client.feature_extraction(LONG + "tail", truncate=True)
    assert_batch_invariant(right, _openai(tei, [LONG + "tail"], truncate="end"))
    left = client.feature_extraction("head " + LONG, truncate=True, truncation_direction="left")
    assert_batch_invariant(left, _openai(tei, ["head " + LONG], truncate="start"))
    answer = httpx.post(tei.url + "/embed", json={"inputs": ["x", LONG], "truncate": True})
    assert answer.status_code == 200 and answer.headers["x-truncated"] == "1"
    refused = httpx.post(tei.url + "/embed", json={"inputs": LONG})  # TEI: truncate false
    assert refused.status_code == 413, refused.text
    assert refused.json()["error_type"] == "Validation"
    # The advice names TEI's own fields, not the OpenAI route's truncate='end'.
    assert "pass truncate: true (truncation_direction" in refused.json()["error"]
    assert "'end'" not in refused.json()["error"]


def test_embed_all_and_the_root_route(tei: ServerProcess) -> None:
    tokens = httpx.post(tei.url + "/embed_all", json={"inputs": TEXTS}, timeout=60).json()
    counts = [
        len(
            httpx.post(tei.url + "/tokenize", json={"content": t, "add_special": True}).json()[
                "tokens"
            ]
        )
        for t in TEXTS
    ]
    assert [len(vectors) for vectors in tokens] == counts
    assert all(len(vector) == 384 for vectors in tokens for vector in vectors)
    root = httpx.post(tei.url + "/", json={"inputs": TEXTS}, timeout=60)
    assert_batch_invariant(root.json(), _openai(tei, TEXTS))
    ranks = httpx.post(tei.url + "/", json={"query": QUERY, "texts": TEXTS}, timeout=60).json()
    assert sorted(rank["index"] for rank in ranks) == [0, 1]


def test_tei_rerank_shape_and_the_cohere_shape_by_body(
    tei: ServerProcess, reranker: TinyXlmr
) -> None:
    with EmbeddingEngine.from_path(reranker.gguf) as engine:
        logits = {i: engine.rerank(QUERY, [t]).hits[0].logit for i, t in enumerate(TEXTS)}
    body = {"query": QUERY, "texts": TEXTS, "raw_scores": True, "return_text": True}
    ranks = httpx.post(tei.url + "/rerank", json=body, timeout=60).json()
    assert isinstance(ranks, list)
    assert [rank["score"] for rank in ranks] == sorted((r["score"] for r in ranks), reverse=True)
    for rank in ranks:
        assert set(rank) == {"index", "score", "text"} and rank["text"] == TEXTS[rank["index"]]
        assert abs(rank["score"] - logits[rank["index"]]) <= RERANK_BATCH_INVARIANCE_ATOL
    plain = httpx.post(tei.url + "/rerank", json={"query": QUERY, "texts": TEXTS}).json()
    assert all(set(rank) == {"index", "score"} and 0 < rank["score"] < 1 for rank in plain)
    cohere = httpx.post(tei.url + "/rerank", json={"query": QUERY, "documents": TEXTS}).json()
    assert cohere["model"] == "reranker" and len(cohere["results"]) == 2


def test_errors_come_in_teis_shape_and_statuses(tei: ServerProcess) -> None:
    cases: list[tuple[str, str, bytes, int, str]] = [
        ("POST", "/embed", b'{"inputs": []}', 400, "Empty"),
        (
            "POST",
            "/embed",
            b'{"inputs": ["a", "b", "c", "d", "e", "f", "g", "h", "i"]}',
            413,
            "Validation",
        ),
        ("POST", "/embed", b'{"inputs": 3}', 422, "Validation"),
        ("POST", "/embed", b'{"inputs": "a", "normalize": "yes"}', 422, "Validation"),
        ("POST", "/embed", b'{"inputs": "a", "truncation_direction": "Up"}', 422, "Validation"),
        ("POST", "/embed", b'{"inputs": "a", "prompt_name": "nope"}', 422, "Validation"),
        ("POST", "/embed", b"{not json", 422, "Validation"),
        ("POST", "/embed", b"[" * 300_000, 413, "Validation"),
        ("POST", "/embed_all", b'{"inputs": []}', 400, "Empty"),
        ("POST", "/rerank", b'{"query": "q", "texts": []}', 400, "Empty"),
        ("POST", "/rerank", b'{"query": "q", "texts": ["a", 1]}', 422, "Validation"),
        ("POST", "/", b'{"inputs": 1}', 422, "Validation"),
        ("GET", "/embed", b"", 405, "Validation"),
    ]
    for method, path, body, status, kind in cases:
        answer = httpx.request(method, tei.url + path, content=body, timeout=60)
        assert answer.status_code == status, (path, body[:40], answer.text)
        assert answer.json()["error_type"] == kind, answer.text
        assert isinstance(answer.json()["error"], str)
    # /rerank with `documents` keeps the OpenAI-style error of the Cohere/Jina routes
    jina = httpx.post(tei.url + "/rerank", json={"query": "q", "documents": []})
    assert jina.status_code == 400 and jina.json()["error"]["param"] == "documents"
    assert httpx.get(tei.url + "/health").status_code == 200  # still serving


def test_info_has_teis_keys_beside_ours(tei: ServerProcess) -> None:
    info = httpx.get(tei.url + "/info").json()
    assert info["max_client_batch_size"] == info["max_inputs_per_request"] == 8
    assert info["max_input_length"] == 512 and info["model_id"] == "minilm"
    assert info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["models"][0]["name"] == "minilm"  # ours still there


TOKENIZED = ["Héllo,  Wörld!\nnew line", "日本語 and emoji 😀 ok"]


def _tokenize(server: ServerProcess, body: dict[str, object]) -> httpx.Response:
    return httpx.post(server.url + "/tokenize", json=body, timeout=60)


def _words(tokens: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [token for token in tokens if not token["special"]]


def test_tei_tokenize_lists_tokens_with_spans_into_each_input(tei: ServerProcess) -> None:
    one = _tokenize(tei, {"inputs": TOKENIZED[0]})
    assert one.status_code == 200, one.text
    [tokens] = one.json()
    assert [set(token) for token in tokens] == [{"id", "text", "special", "start", "stop"}] * len(
        tokens
    )
    first, *_, last = tokens
    assert first == {"id": 101, "text": "[CLS]", "special": True, "start": None, "stop": None}
    assert last["id"] == 102 and last["special"] and last["start"] is None
    words = _words(tokens)
    assert [t["text"] for t in words] == ["Héllo", ",", "Wörld", "!", "new", "line"]
    both = _tokenize(tei, {"inputs": TOKENIZED}).json()
    assert len(both) == 2 and both[0] == tokens
    for text, listed in zip(TOKENIZED, both, strict=True):
        starts = [t["start"] for t in _words(listed)]
        assert starts == sorted(starts)
        for token in _words(listed):
            assert text[token["start"] : token["stop"]] == token["text"]
    # The ids are those /v1/embeddings decodes (llama-server's shape, same route)
    ids = _tokenize(tei, {"content": TOKENIZED[1], "add_special": True}).json()["tokens"]
    assert [t["id"] for t in both[1]] == ids
    assert "😀" in [t["text"] for t in _words(both[1])]  # MiniLM's [UNK] covers the emoji


def test_tei_tokenize_without_special_tokens_and_with_a_prompt(tei: ServerProcess) -> None:
    plain = _tokenize(tei, {"inputs": "hello world", "add_special_tokens": False}).json()
    assert [t["text"] for t in plain[0]] == ["hello", "world"]
    assert not any(t["special"] for t in plain[0])
    prompted = _tokenize(tei, {"inputs": "hello world", "prompt_name": "query"}).json()[0]
    # TEI tokenizes prompt + input together: the prompt's tokens are listed, and offsets
    # count from the prompt's start
    assert [t["text"] for t in _words(prompted)] == ["query", ":", "hello", "world"]
    assert [(t["start"], t["stop"]) for t in _words(prompted)][2:] == [(7, 12), (13, 18)]


def test_the_llama_server_body_keeps_its_shape(tei: ServerProcess) -> None:
    answer = _tokenize(tei, {"content": "hello world", "with_pieces": True})
    assert answer.json() == {
        "tokens": [{"id": 7592, "piece": " hello"}, {"id": 2088, "piece": " world"}]
    }
    both = _tokenize(tei, {"content": "hello", "inputs": "hello"})  # `content` decides
    assert both.json() == {"tokens": [7592]}
    wrong = _tokenize(tei, {"content": 3})
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "content"


def test_decode_gives_tokenizes_text_back(tei: ServerProcess) -> None:
    listed = _tokenize(tei, {"inputs": TOKENIZED}).json()
    ids = [[t["id"] for t in tokens] for tokens in listed]
    texts = httpx.post(tei.url + "/decode", json={"ids": ids}).json()
    assert texts == ["hello, world! new line", "日 本 語 and emoji ok"]
    one = httpx.post(tei.url + "/decode", json={"ids": ids[0], "skip_special_tokens": False})
    assert one.json() == ["[CLS] hello, world! new line[SEP]"]


def test_tokenize_and_decode_refuse_bad_bodies_in_teis_shape(tei: ServerProcess) -> None:
    many = {"inputs": ["a"] * 9}
    cases: list[tuple[str, object, int, str]] = [
        ("/tokenize", {"inputs": []}, 400, "Empty"),
        ("/tokenize", {"inputs": ""}, 422, "Validation"),
        ("/tokenize", {"inputs": 7}, 422, "Validation"),
        ("/tokenize", {"inputs": ["a", None]}, 422, "Validation"),
        ("/tokenize", many, 413, "Validation"),
        ("/tokenize", {"inputs": "a", "add_special_tokens": "no"}, 422, "Validation"),
        ("/tokenize", {"inputs": "a", "prompt_name": "nope"}, 422, "Validation"),
        ("/tokenize", {"inputs": "word " * 5000}, 413, "Validation"),  # over 4,096 tokens
        ("/tokenize", {"inputs": ["word " * 800] * 6}, 413, "Validation"),  # all together
        ("/tokenize", {"inputs": "a", "model": "nope"}, 404, "Validation"),
        ("/decode", {"ids": []}, 400, "Empty"),
        ("/decode", {"ids": 5}, 422, "Validation"),
        ("/decode", {"ids": ["a", "b"]}, 422, "Validation"),
        ("/decode", {"ids": [1, True]}, 422, "Validation"),
        ("/decode", {"ids": [[1], "x"]}, 422, "Validation"),
        ("/decode", {"ids": [-1]}, 422, "Tokenizer"),
        ("/decode", {"ids": [[101], [7592, 10**6]]}, 422, "Tokenizer"),
        ("/decode", {"ids": [2**70]}, 422, "Validation"),
        ("/decode", {"ids": [[1]] * 9}, 413, "Validation"),
        ("/decode", {"ids": [1] * 5000}, 413, "Validation"),
        ("/decode", {}, 422, "Validation"),
    ]
    for path, body, status, kind in cases:
        answer = httpx.post(tei.url + path, json=body, timeout=60)
        assert answer.status_code == status, (path, str(body)[:60], answer.text)
        assert answer.json()["error_type"] == kind, answer.text
        assert isinstance(answer.json()["error"], str)
    named = httpx.post(tei.url + "/decode", json={"ids": [[101], [7592, 10**6]]}).json()
    assert "1000000" in named["error"] and "input 1" in named["error"]
    assert _tokenize(tei, {"inputs": "still serving"}).status_code == 200
