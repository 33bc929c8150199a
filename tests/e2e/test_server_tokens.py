"""`/tokenize` and `/detokenize` in llama-server's shapes, on a real server: round trips,
pieces, special tokens, and the same ids the embedding path decodes."""

from __future__ import annotations

import base64
from typing import Any

import httpx
import pytest

from embellama import EmbeddingEngine
from tests.e2e.server import ServerProcess

MIXED = "Hello, мир! 日本語 and emoji 🙂 in one text"


def _post(server: ServerProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + path, json=body, timeout=30)


def test_defaults_are_llama_servers(server: ServerProcess, engine: EmbeddingEngine) -> None:
    plain = _post(server, "/tokenize", {"content": MIXED}).json()["tokens"]
    assert plain == engine.tokenize(MIXED, add_special=False)  # add_special defaults to false
    with_special = _post(server, "/tokenize", {"content": MIXED, "add_special": True})
    assert with_special.json()["tokens"] == [101, *plain, 102]  # [CLS] ... [SEP]
    assert _post(server, "/tokenize", {"content": ""}).json() == {"tokens": []}


def test_ids_equal_what_the_embedding_path_decodes(server: ServerProcess) -> None:
    ids = _post(server, "/tokenize", {"content": MIXED, "add_special": True}).json()["tokens"]

    def embed(value: object) -> tuple[str, int]:
        body = {"input": value, "encoding_format": "base64", "cache": False}
        response = _post(server, "/v1/embeddings", body)
        assert response.status_code == 200, response.text
        return response.json()["data"][0]["embedding"], response.json()["usage"]["prompt_tokens"]

    from_text, from_ids = embed(MIXED), embed(ids)
    assert from_text[1] == from_ids[1] == len(ids)
    assert base64.b64decode(from_text[0]) == base64.b64decode(from_ids[0])  # the same decode


def test_the_embedding_ids_of_a_text_with_special_token_syntax(server: ServerProcess) -> None:
    """README: `add_special: true` with `parse_special: false` gives exactly the ids
    `/v1/embeddings` decodes; the default `parse_special: true` reads "[SEP]" as the
    separator token, which embedding never does."""
    text = "what is [SEP] in bert [CLS]"
    tokenize = {"content": text, "add_special": True}
    literal = _post(server, "/tokenize", {**tokenize, "parse_special": False}).json()["tokens"]
    parsed = _post(server, "/tokenize", tokenize).json()["tokens"]
    assert parsed.count(102) == 2 and literal.count(102) == 1  # [SEP] read, or the end only

    def embed(value: object) -> tuple[bytes, int]:
        body = {"input": value, "encoding_format": "base64", "cache": False}
        response = _post(server, "/v1/embeddings", body)
        assert response.status_code == 200, response.text
        data = response.json()
        return base64.b64decode(data["data"][0]["embedding"]), data["usage"]["prompt_tokens"]

    from_text = embed(text)
    assert embed(literal) == from_text and from_text[1] == len(literal)
    assert embed(parsed)[0] != from_text[0]


def test_round_trip_and_pieces(server: ServerProcess) -> None:
    # MiniLM's WordPiece vocabulary is uncased and splits CJK into characters, so text
    # comes back normalized; the ids, though, must survive the round trip exactly.
    text = "Hello, мир! 日本語 and more"
    ids = _post(server, "/tokenize", {"content": text}).json()["tokens"]
    back = _post(server, "/detokenize", {"tokens": ids}).json()["content"]
    assert back.strip() == "hello, мир! 日 本 語 and more"
    assert _post(server, "/tokenize", {"content": back}).json()["tokens"] == ids
    pieces = _post(server, "/tokenize", {"content": MIXED, "with_pieces": True}).json()["tokens"]
    assert all(set(token) == {"id", "piece"} for token in pieces)
    # Pieces are llama.cpp's: a word-initial piece carries its leading space.
    words = [p["piece"].strip() for p in pieces if isinstance(p["piece"], str)]
    assert words[:2] == ["hello", ","] and "日" in words and "[UNK]" in words  # 🙂 is unknown


def test_special_token_syntax(server: ServerProcess) -> None:
    parsed = _post(server, "/tokenize", {"content": "a [SEP] b"}).json()["tokens"]
    literal = _post(server, "/tokenize", {"content": "a [SEP] b", "parse_special": False})
    assert 102 in parsed and 102 not in literal.json()["tokens"]


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("/tokenize", {}, "content"),
        ("/tokenize", {"content": 5}, "content"),
        ("/tokenize", {"content": "x", "with_pieces": "yes"}, "with_pieces"),
        ("/tokenize", {"content": "x", "model": "nope"}, "model"),
        ("/detokenize", {"tokens": "1 2"}, "tokens"),
        ("/detokenize", {"tokens": [1, True]}, "tokens"),
        ("/detokenize", {"tokens": [10**9]}, "tokens"),
    ],
)
def test_bad_bodies(server: ServerProcess, path: str, body: dict[str, Any], param: str) -> None:
    response = _post(server, path, body)
    assert response.status_code in (400, 404), response.text
    assert response.json()["error"]["param"] == param
