"""What the drop-in routes cost: c16 single-text throughput through Ollama's /api/embed,
Cohere's /v2/embed and TEI's /embed, each as a ratio to /v1/embeddings on the same
server, in ABBA order (v1, adapter, adapter, v1) per round so drift cancels. Every
request carries a new text (no cache hits). A route that answers 404 (not built in this
tree) is skipped. The issue's bar: each adapter within 3 % (ratio >= 0.97).

    python bench/adapters.py                      # 6 rounds of 800 requests per leg
    python bench/adapters.py --rounds 1 --requests 32   # a smoke check
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
from pathlib import Path

import httpx
import orjson

from bench.fast_client import post_all
from bench.load import Server
from embellama import prepare_default_model

CONCURRENCY = 16
BASE = "/v1/embeddings"
# Each route's body for one text, as its clients send it.
ROUTES: dict[str, object] = {
    "/api/embed": lambda text: {"model": "m", "input": text},
    "/v2/embed": lambda text: {
        "model": "m",
        "texts": [text],
        "input_type": "search_document",
        "embedding_types": ["float"],
    },
    "/embed": lambda text: {"inputs": text},
}
_counter = itertools.count()


def _body(path: str, text: str) -> bytes:
    if path == BASE:
        return orjson.dumps({"input": text, "model": "m"})
    make = ROUTES[path]
    assert callable(make)
    return orjson.dumps(make(text))


def _texts(n: int) -> list[str]:
    return [f"a short sentence of ten words or so, number {next(_counter)}" for _ in range(n)]


def _leg(server: Server, path: str, requests: int) -> float:
    run = post_all(server.url, [_body(path, t) for t in _texts(requests)], CONCURRENCY, path)
    assert set(run.statuses) == {200}, (path, run.statuses)
    return run.throughput


def _served(server: Server, path: str) -> bool:
    answer = httpx.post(server.url + path, content=_body(path, "probe"), timeout=60)
    if answer.status_code == 404:
        return False
    assert answer.status_code == 200, (path, answer.text)
    return True


def measure(server: Server, path: str, rounds: int, requests: int) -> list[float]:
    """One ratio per round: adapter throughput over /v1/embeddings', legs in ABBA order."""
    ratios = []
    for _ in range(rounds):
        base_a = _leg(server, BASE, requests)
        adapter = _leg(server, path, requests) + _leg(server, path, requests)
        base_b = _leg(server, BASE, requests)
        ratios.append(adapter / (base_a + base_b))
    return ratios


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=800, help="requests per leg")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    model = prepare_default_model().path
    command = [sys.executable, "-m", "embellama", "serve", "--model-path", str(model)]
    command += ["--model-name", "m", "--workers", str(args.workers), "--cache-size", "0"]
    server = Server("embellama", [*command, "--port", "18931"], 18931)
    with tempfile.TemporaryDirectory() as logs:
        server.start(Path(logs))
        try:
            _leg(server, BASE, CONCURRENCY * 2)  # warm up
            print(f"| route | ratio to {BASE} (median of {args.rounds}) | rounds |")
            print("|---|---|---|")
            for path in ROUTES:
                if not _served(server, path):
                    print(f"| {path} | skipped: 404 in this tree | |")
                    continue
                ratios = measure(server, path, args.rounds, args.requests)
                shown = ", ".join(f"{r:.3f}" for r in ratios)
                print(f"| {path} | {statistics.median(ratios):.3f} | {shown} |")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
