"""`input_type` through real servers: the configured prefix is applied, shown and counted;
a model without prefixes is served unchanged and says so in a header."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from embellama import EmbeddingEngine
from tests.e2e.server import ServerProcess, serving, start_server
from tests.tolerances import assert_batch_invariant

TEXT = "how do vector databases work"


@pytest.fixture(scope="module")
def prefixed(minilm_gguf: Path, server_logs: Path) -> Iterator[ServerProcess]:
    args = ["--model-path", str(minilm_gguf), "--model-name", "m"]
    args += ["--query-prefix", "query: ", "--document-prefix", "passage: "]
    with serving(args, server_logs) as process:
        yield process


def _post(server: ServerProcess, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(server.url + "/v1/embeddings", json=body, timeout=30)


def test_the_configured_prefix_is_applied(prefixed: ServerProcess) -> None:
    typed = _post(
        prefixed, {"input": [TEXT], "input_type": "search_query", "encoding_format": "base64"}
    )
    glued = _post(prefixed, {"input": ["query: " + TEXT], "encoding_format": "base64"})
    assert typed.status_code == glued.status_code == 200
    assert typed.headers["x-prefix"] == "applied" and glued.headers["x-prefix"] == "none"
    assert typed.json()["data"] == glued.json()["data"]
    assert typed.json()["usage"]["prompt_tokens"] == glued.json()["usage"]["prompt_tokens"]
    card = httpx.get(prefixed.url + "/v1/models/m").json()
    assert card["prompts"]["query_prefix"] == "query: "
    assert card["prompts"]["document_prefix"] == "passage: "


def test_token_ids_are_never_prefixed_and_say_so(prefixed: ServerProcess) -> None:
    ids = httpx.post(
        prefixed.url + "/tokenize", json={"content": TEXT, "add_special": True}, timeout=30
    )
    ids = ids.json()["tokens"]
    typed = _post(prefixed, {"input": [ids], "input_type": "query", "encoding_format": "base64"})
    plain = _post(prefixed, {"input": [ids], "encoding_format": "base64"})
    assert typed.status_code == plain.status_code == 200, typed.text
    assert typed.headers["x-prefix"] == plain.headers["x-prefix"] == "none"
    assert typed.json()["data"] == plain.json()["data"]  # nothing was put in front
    per_token = _post(prefixed, {"input": [TEXT], "input_type": "query", "pooling": "none"})
    assert per_token.status_code == 200 and per_token.headers["x-prefix"] == "applied"


def test_input_type_through_the_openai_sdk(prefixed: ServerProcess) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=prefixed.url + "/v1", api_key="unused", max_retries=0)
    typed = client.embeddings.create(model="m", input=[TEXT], extra_body={"input_type": "query"})
    glued = client.embeddings.create(model="m", input=["query: " + TEXT])
    assert typed.data[0].embedding == glued.data[0].embedding
    assert typed.usage.prompt_tokens == glued.usage.prompt_tokens


def test_a_model_without_prefixes_serves_unchanged(server: ServerProcess) -> None:
    typed = _post(server, {"input": [TEXT], "input_type": "document", "encoding_format": "base64"})
    plain = _post(server, {"input": [TEXT], "encoding_format": "base64"})
    assert typed.status_code == 200 and typed.headers["x-prefix"] == "none"
    assert typed.json()["data"] == plain.json()["data"]


def test_a_bad_input_type_is_a_400(server: ServerProcess) -> None:
    response = _post(server, {"input": [TEXT], "input_type": "classification"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input_type"


def test_chunked_long_document_through_the_openai_sdk(server: ServerProcess) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    long_text = " ".join(f"paragraph {n} of a long report on retrieval." for n in range(250))
    chunked = client.embeddings.create(
        model="minilm", input=[long_text], extra_body={"truncate": "chunk", "chunk_overlap": 32}
    )
    assert len(chunked.data[0].embedding) == 384
    assert chunked.usage.prompt_tokens > 1000  # every token of the document is counted
    refused = httpx.post(server.url + "/v1/embeddings", json={"input": [long_text]}, timeout=30)
    assert refused.status_code == 400  # without chunk (or end/start) it stays an error
    info = httpx.get(server.url + "/info").json()
    assert "chunk" in info["truncation_modes"]
    assert info["models"][0]["max_chunks_per_input"] == 64


def test_per_token_vectors_for_late_interaction(
    server: ServerProcess, engine: EmbeddingEngine
) -> None:
    from openai import OpenAI

    client = OpenAI(base_url=server.url + "/v1", api_key="unused", max_retries=0)
    texts = ["late interaction retrieval", "colbert style"]
    response = client.embeddings.create(
        model="minilm",
        input=texts,
        encoding_format="float",
        dimensions=64,
        extra_body={"pooling": "none"},
    )
    expected = engine.embed_per_token(texts)
    for item, tokens in zip(response.data, expected, strict=True):
        got = np.array(item.embedding)
        assert got.shape == (len(tokens), 64)  # one vector per token, cut to 64
        cut = tokens[:, :64] / np.linalg.norm(tokens[:, :64], axis=1, keepdims=True)
        assert_batch_invariant(got, cut)
    assert response.usage.prompt_tokens == sum(len(t) for t in expected)
    raw = _post(server, {"input": texts, "pooling": "none", "encoding_format": "base64"})
    first = raw.json()["data"][0]["embedding"]
    assert len(first) == len(expected[0])
    assert np.frombuffer(base64.b64decode(first[0]), "<f4").shape == (384,)
    too_many = _post(server, {"input": ["word " * 500] * 40, "pooling": "none", "truncate": True})
    assert too_many.status_code == 400 and "per request" in too_many.json()["error"]["message"]
    bad = _post(server, {"input": texts, "pooling": "max"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "pooling"


@pytest.fixture(scope="module")
def instructed(minilm_gguf: Path, server_logs: Path) -> Iterator[ServerProcess]:
    args = ["--model-path", str(minilm_gguf), "--model-name", "m"]
    args += ["--instruction-template", "Instruct: {instruction}\\nQuery:"]
    with serving([*args, "--max-instruction-length", "64"], server_logs) as process:
        yield process


def test_the_instruction_cap_is_shown_and_enforced(instructed: ServerProcess) -> None:
    """Each input is tokenized behind the instruction: its length is bounded, and a
    client can read the bound in /info."""
    assert httpx.get(instructed.url + "/info").json()["max_instruction_length"] == 64
    body = {"input": [TEXT], "input_type": "query", "encoding_format": "base64"}
    fits = _post(instructed, {**body, "instruction": "f" * 64})
    assert fits.status_code == 200 and fits.headers["x-prefix"] == "applied", fits.text
    over = _post(instructed, {**body, "instruction": "f" * 65})
    assert over.status_code == 400, over.text
    error = over.json()["error"]
    assert (error["param"], error["code"]) == ("instruction", "invalid_value")
    assert "64" in error["message"] and "65" in error["message"]


def test_the_default_instruction_cap(server: ServerProcess) -> None:
    info = httpx.get(server.url + "/info").json()
    assert info["max_instruction_length"] == 2048
    assert info["max_tokenize_tokens"] == 1 << 18
    body = {"input": [TEXT], "input_type": "query"}
    assert _post(server, {**body, "instruction": "i" * 2048}).status_code == 200
    over = _post(server, {**body, "instruction": "i" * 2049})
    assert over.status_code == 400 and over.json()["error"]["param"] == "instruction"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"instruction": "find passages"}, "instruction"),
        ({"instruction": "find passages", "truncate": True}, "instruction"),
        ({"chunk_overlap": 16}, "chunk_overlap"),
        ({"chunk_overlap": 16, "truncate": "end"}, "chunk_overlap"),
    ],
)
def test_an_option_that_would_do_nothing_is_a_400(
    instructed: ServerProcess, body: dict[str, Any], param: str
) -> None:
    """`instruction` without input_type, `chunk_overlap` without truncate="chunk": the
    caller meant something the request would silently not do."""
    response = _post(instructed, {"input": [TEXT], **body})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and param in error["message"]
    assert httpx.get(instructed.url + "/health").status_code == 200


def test_a_bad_instruction_template_fails_the_start(minilm_gguf: Path, server_logs: Path) -> None:
    """Refused at load, in one line naming the setting, instead of on every query."""
    args = ["--model-path", str(minilm_gguf), "--workers", "1"]
    process = start_server(
        [*args, "--instruction-template", "Q: {instruction} {task}"], server_logs
    )
    try:
        assert process.process.wait(60) != 0
    finally:
        process.stop()
    failure = [line for line in process.log().splitlines() if "server: startup failed" in line]
    assert len(failure) == 1 and "instruction_template" in failure[0], process.log()[-2000:]
    assert "{task}" in failure[0] and "Traceback" not in process.log()
