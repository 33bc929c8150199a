"""The largest request each route accepts costs the server a bounded multiple of its body.

A fresh server per route (tiny random encoders on MiniLM's vocabulary, so decoding is
cheap and the heap is the request's, not the model's), its default limits, and the peak
RSS of the server process (VmHWM from /proc) read before and after the request. The
figures printed here are the ones in README's Limits table.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import pytest

from tests.e2e.server import ServerProcess, serving
from tests.fixtures.tiny_encoders import build_tiny_encoder
from tests.fixtures.tiny_xlmr import build_tiny_xlmr

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/PID/status"),
]

MAX_BODY = 16 * 1024 * 1024  # the defaults this test must hold for
MAX_INPUTS = 2048
MAX_TOKENIZE_TOKENS = 1 << 18
MIB = 1024 * 1024


@dataclass(frozen=True)
class Case:
    route: str
    body: Callable[[], bytes]
    # Growth of the peak RSS allowed, as a multiple of the body's size (measured ~2/3 of it).
    multiple: float
    status: int = 200
    code: str | None = None  # the error's code, for a refused body


def _ids_body() -> bytes:
    # Five-digit ids cost a Python int each while decoding; 2,048 lists fill 16 MiB.
    per_input = (MAX_BODY - 4 * MAX_INPUTS) // MAX_INPUTS // 6
    ids = [10_000 + (i % 20_000) for i in range(per_input)]
    return orjson.dumps({"input": [ids] * MAX_INPUTS, "truncate": True, "cache": False})


def _texts_body() -> bytes:
    text = "embedding " * ((MAX_BODY - 4 * MAX_INPUTS) // MAX_INPUTS // 10)
    return orjson.dumps({"input": [text] * MAX_INPUTS, "truncate": True, "cache": False})


def _tokenize_body(with_pieces: bool) -> Callable[[], bytes]:
    # "!" is one token each: the most tokens an accepted /tokenize answer can hold.
    return lambda: orjson.dumps({"content": "!" * MAX_TOKENIZE_TOKENS, "with_pieces": with_pieces})


def _long_text_body() -> bytes:
    # The largest body, refused over the token cap before its tokens are all stored.
    return orjson.dumps({"content": ("a" * 120 + " ") * ((MAX_BODY - 64) // 121)})


def _detokenize_body() -> bytes:
    return orjson.dumps({"tokens": [10_000 + i % 20_000 for i in range(MAX_TOKENIZE_TOKENS)]})


def _many_lists_body(element: bytes) -> Callable[[], bytes]:
    # Millions of tiny inputs: refused from the scan's count, before a list is built.
    def build() -> bytes:
        count = (MAX_BODY - 16) // (len(element) + 1)
        return b'{"input":[' + b",".join([element] * count) + b"]}"

    return build


def _rerank_body() -> bytes:
    document = "reranking " * ((MAX_BODY - 4 * MAX_INPUTS) // MAX_INPUTS // 10)
    return orjson.dumps({"query": "what is reranking", "documents": [document] * MAX_INPUTS})


CASES = {
    # ~2.8 M ids become Python ints while the body is decoded (~36 bytes each): measured 9x.
    "embeddings-token-ids": Case("/v1/embeddings", _ids_body, 12.0),
    "embeddings-texts": Case("/v1/embeddings", _texts_body, 4.0),
    # A 256 KiB body of 262,144 one-byte tokens: llama.cpp's tokenizer itself takes ~80
    # bytes per token while it runs; the cap, not the body, bounds these two.
    "tokenize": Case("/tokenize", _tokenize_body(False), 128.0),
    "tokenize-pieces": Case("/tokenize", _tokenize_body(True), 200.0),
    "tokenize-16mib-text": Case("/tokenize", _long_text_body, 5.0, 413, "too_many_tokens"),
    "detokenize": Case("/detokenize", _detokenize_body, 12.0),
    "rerank": Case("/v1/rerank", _rerank_body, 4.0),
    # 5.6 M empty lists / 4.2 M one-id lists: decoded, they took 815 / 676 MB (50x).
    "embeddings-empty-lists": Case(
        "/v1/embeddings", _many_lists_body(b"[]"), 4.0, 400, "too_many_values"
    ),
    "embeddings-one-id-lists": Case(
        "/v1/embeddings", _many_lists_body(b"[0]"), 4.0, 400, "too_many_values"
    ),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("memory-models")
    encoder = build_tiny_encoder(root / "encoder", "bert").gguf
    reranker = build_tiny_xlmr(root / "reranker", classifier=True).gguf
    return encoder, reranker


@pytest.fixture
def server(
    request: pytest.FixtureRequest,
    models: tuple[Path, Path],
    server_logs: Path,
    tmp_path: Path,
) -> Iterator[ServerProcess]:
    encoder, reranker = models
    chosen = reranker if request.param == "rerank" else encoder
    args = ["--model-path", str(chosen), "--workers", "1", "--threads-per-worker", "1"]
    with serving([*args, "--n-ctx", "64"], server_logs) as process:
        yield process


def _small(route: str) -> object:
    return {
        "/v1/embeddings": {"input": [[1000, 1001], [1002]], "cache": False},
        "/tokenize": {"content": "warm up", "with_pieces": True},
        "/detokenize": {"tokens": [1000, 1001]},
        "/v1/rerank": {"query": "warm", "documents": ["up"]},
    }[route]


def _status(process: ServerProcess, field: str) -> int:
    for line in Path(f"/proc/{process.process.pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} in /proc status")


@pytest.mark.parametrize("server", list(CASES), indirect=True)
def test_peak_rss_of_the_largest_accepted_request(
    server: ServerProcess, request: pytest.FixtureRequest
) -> None:
    case = CASES[request.node.callspec.params["server"]]
    body = case.body()
    assert len(body) <= MAX_BODY
    with httpx.Client(base_url=server.url, timeout=300) as client:
        # Warm up: the route's first call imports code and starts the thread pool.
        assert client.post(case.route, json=_small(case.route)).status_code == 200
        # Reset the high-water mark to the current RSS, so startup's peak (loading the
        # vocabulary) cannot hide the request's.
        Path(f"/proc/{server.process.pid}/clear_refs").write_text("5")
        before = _status(server, "VmHWM")
        started = time.perf_counter()
        response = client.post(
            case.route, content=body, headers={"content-type": "application/json"}
        )
        seconds = time.perf_counter() - started
        assert response.status_code == case.status, response.text[:500]
        if case.code is not None:
            assert response.json()["error"]["code"] == case.code
        after = _status(server, "VmHWM")
        assert client.get("/health").status_code == 200
    growth = max(0, after - before)
    print(
        f"{request.node.callspec.params['server']}: body {len(body) / MIB:.2f} MiB, "
        f"response {len(response.content) / MIB:.2f} MiB, peak RSS +{growth / MIB:.1f} MiB "
        f"({growth / len(body):.1f}x the body), {seconds:.2f} s"
    )
    assert growth < case.multiple * len(body), (growth / MIB, len(body) / MIB)
