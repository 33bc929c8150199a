"""LangChain, LlamaIndex and Haystack, each in .venv-clients as their users install them
(`make .venv-clients`), against one real keyed server: every call's vectors must be
`/v1/embeddings`' for the same texts, every ranking `/v1/rerank`'s for the same query."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.e2e.server import ServerProcess, serving
from tests.fixtures.tiny_xlmr import TinyXlmr, build_tiny_xlmr
from tests.tolerances import RERANK_BATCH_INVARIANCE_ATOL, assert_batch_invariant

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLIENTS_PYTHON = ROOT / ".venv-clients" / "bin" / "python"
SCRIPTS = ROOT / "tests" / "clients"
KEY = "sk-clients-route-key-0123456789"
TEXTS = [
    "Local embeddings run on your own machine.",
    "vectors, retrieval and search",
    "Café naïve: 東京の天気は晴れ 🙂",
]
QUERY = "how do local embeddings work?"
# Over MiniLM's 512-token context, and unlike itself: cutting its start or its end differs.
LONG = " ".join(f"item {number}" for number in range(600))
# Whatever a client would read from its user's environment instead of the job's key.
_FOREIGN = ("HF_TOKEN", "HF_API_TOKEN", "HUGGINGFACEHUB_API_TOKEN", "JINA_API_KEY")


@pytest.fixture(scope="module")
def clients_python() -> Path:
    if not CLIENTS_PYTHON.exists():
        pytest.fail(f"{CLIENTS_PYTHON} is missing: run `make .venv-clients` (make test builds it)")
    return CLIENTS_PYTHON


@pytest.fixture(scope="module")
def reranker(tmp_path_factory: pytest.TempPathFactory) -> TinyXlmr:
    return build_tiny_xlmr(tmp_path_factory.mktemp("xlmr-reranker-clients"), classifier=True)


@pytest.fixture(scope="module")
def keyed(
    reranker: TinyXlmr,
    minilm_gguf: Path,
    server_logs: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ServerProcess]:
    """Keyed, so a client that dropped its key would get 401s, not a pass."""
    config = tmp_path_factory.mktemp("clients-config") / "embellama.toml"
    config.write_text(f"""
[[models]]
name = "minilm"
path = "{minilm_gguf}"
kind = "embedding"
workers = 1
threads_per_worker = 1

[[models]]
name = "reranker"
path = "{reranker.gguf}"
kind = "rerank"
workers = 1
threads_per_worker = 1
""")
    with serving(["--config", str(config), "--api-key", KEY], server_logs) as process:
        refused = httpx.post(process.url + "/embed", json={"inputs": "a"}, timeout=60)
        assert refused.status_code == 401, refused.text
        yield process


def _run(python: Path, script: str, server: ServerProcess) -> dict[str, Any]:
    """One client script in the clients' interpreter; its output drained by `run`."""
    job = {"url": server.url, "key": KEY, "model": "minilm", "reranker": "reranker", "long": LONG}
    env = {name: value for name, value in os.environ.items() if name not in _FOREIGN}
    env.update(HF_HUB_DISABLE_TELEMETRY="1", HAYSTACK_TELEMETRY_ENABLED="False")
    done = subprocess.run(
        [str(python), str(SCRIPTS / script)],
        input=json.dumps({**job, "texts": TEXTS, "query": QUERY}),
        capture_output=True,
        text=True,
        env=env,
        cwd=SCRIPTS,
        timeout=300,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stderr}\n{server.log()[-3000:]}"
    answers: dict[str, Any] = json.loads(done.stdout)
    return answers


def _vectors(server: ServerProcess, texts: list[str], **extra: object) -> np.ndarray:
    answer = _keyed_post(server, "/v1/embeddings", {"input": texts, "model": "minilm", **extra})
    return np.array([row["embedding"] for row in answer["data"]])


def _ranking(server: ServerProcess) -> list[tuple[str, float]]:
    body = {"model": "reranker", "query": QUERY, "documents": TEXTS}
    answer = _keyed_post(server, "/v1/rerank", body)
    return [(TEXTS[hit["index"]], hit["relevance_score"]) for hit in answer["results"]]


def _keyed_post(server: ServerProcess, path: str, body: Mapping[str, object]) -> Any:
    """The reference answer, from the server's own route, with the API key."""
    answer = httpx.post(
        server.url + path, json=body, headers={"Authorization": f"Bearer {KEY}"}, timeout=60
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def langchain(clients_python: Path, keyed: ServerProcess) -> dict[str, Any]:
    return _run(clients_python, "check_langchain.py", keyed)


@pytest.fixture(scope="module")
def llamaindex(clients_python: Path, keyed: ServerProcess) -> dict[str, Any]:
    return _run(clients_python, "check_llamaindex.py", keyed)


@pytest.fixture(scope="module")
def haystack(clients_python: Path, keyed: ServerProcess) -> dict[str, Any]:
    return _run(clients_python, "check_haystack.py", keyed)


@pytest.mark.parametrize(
    ("call", "texts"),
    [
        ("embed_documents", TEXTS),
        ("embed_query", [QUERY]),
        ("aembed_documents", TEXTS),
        ("aembed_query", [QUERY]),
    ],
)
def test_langchain_hugging_face_endpoint_embeddings(
    langchain: dict[str, Any], keyed: ServerProcess, call: str, texts: list[str]
) -> None:
    assert_batch_invariant(langchain[call], _vectors(keyed, texts))


@pytest.mark.parametrize(
    ("call", "texts"), [("openai_embed_documents", TEXTS), ("openai_embed_query", [QUERY])]
)
def test_langchain_openai_embeddings(
    langchain: dict[str, Any], keyed: ServerProcess, call: str, texts: list[str]
) -> None:
    assert_batch_invariant(langchain[call], _vectors(keyed, texts))


def test_langchain_gets_teis_413_naming_the_limit_for_a_text_over_the_context(
    langchain: dict[str, Any],
) -> None:
    """Sent before the script's other calls, which then succeed: the server serves on."""
    refused = langchain["too_long"]
    assert refused["status"] == 413, refused
    assert "input 0 has" in refused["message"]
    assert "more than the model's limit of 512" in refused["message"]


def test_langchain_model_kwargs_truncate_cuts_at_the_end(
    langchain: dict[str, Any], keyed: ServerProcess
) -> None:
    assert_batch_invariant(langchain["cut"], _vectors(keyed, [LONG], truncate="end"))


def test_langchain_refuses_a_url_as_model_so_the_readme_names_model_kwargs(
    langchain: dict[str, Any],
) -> None:
    """If a later pin accepts `model="http://..."` again, the README should say so."""
    assert langchain["refuses_url_as_model"] is True


@pytest.mark.parametrize("client", ["ollama", "tei"])
@pytest.mark.parametrize(
    ("call", "texts"),
    [
        ("get_text_embedding", TEXTS[:1]),
        ("get_text_embedding_batch", TEXTS),
        ("get_query_embedding", [QUERY]),
    ],
)
def test_llamaindex_embeddings(
    llamaindex: dict[str, Any], keyed: ServerProcess, client: str, call: str, texts: list[str]
) -> None:
    assert_batch_invariant(llamaindex[client][call], _vectors(keyed, texts))


@pytest.mark.parametrize("client", ["ollama", "tei"])
def test_llamaindex_texts_over_the_context_are_cut_at_the_end(
    llamaindex: dict[str, Any], keyed: ServerProcess, client: str
) -> None:
    assert_batch_invariant(llamaindex[client]["long"], _vectors(keyed, [LONG], truncate="end"))


@pytest.mark.parametrize(
    ("component", "texts", "normalize"),
    [
        ("text_embedder", [QUERY], False),
        ("text_embedder_normalized", [QUERY], True),
        ("text_embedder_long", [LONG], False),
        ("document_embedder", TEXTS, False),
    ],
)
def test_haystack_tei_embedders(
    haystack: dict[str, Any],
    keyed: ServerProcess,
    component: str,
    texts: list[str],
    normalize: bool,
) -> None:
    cut = {"truncate": "end"} if texts == [LONG] else {}  # Haystack's truncate=True
    assert_batch_invariant(haystack[component], _vectors(keyed, texts, normalize=normalize, **cut))


@pytest.mark.parametrize("ranker", ["tei_ranker", "jina_ranker"])
def test_haystack_rankers(haystack: dict[str, Any], keyed: ServerProcess, ranker: str) -> None:
    expected = _ranking(keyed)
    got = [(content, score) for content, score in haystack[ranker]]
    assert [content for content, _ in got] == [content for content, _ in expected]
    np.testing.assert_allclose(
        [score for _, score in got],
        [score for _, score in expected],
        atol=RERANK_BATCH_INVARIANCE_ATOL,
        rtol=0,
    )
