"""Rerank throughput against llama-server's /v1/rerank, ABBA, same model and threads.

The model is a random XLM-RoBERTa cross-encoder the size of MiniLM-L6 (384 wide, 6
layers; tests/fixtures/tiny_xlmr.py), converted by the stock converter to F32 GGUF:
random weights score like trained ones cost. Each request is 1 query x 100 documents of
about 100 tokens, sent one after another from one client; every run uses documents no
earlier run sent. Also checks that both servers give the same logits.

    python bench/rerank.py [--rounds 6]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.batch_budget import machine
from bench.load import HERE, THREADS, Server, llama_server_binary
from tests.fixtures.tiny_llama import tiny_corpus
from tests.fixtures.tiny_xlmr import build_tiny_xlmr

DOCUMENTS = 100
REQUESTS_PER_RUN = 4
QUERY = "how do local embeddings and rerankers work together?"


def _documents(count: int, seed: int) -> list[list[str]]:
    """`count` requests' documents, each ~100 tokens of the fixture's vocabulary."""
    rng = random.Random(seed)
    lines = tiny_corpus(4000, seed=seed)
    return [[" ".join(rng.sample(lines, 9)) for _ in range(DOCUMENTS)] for _ in range(count)]


def _probe() -> tuple[str, dict[str, object]]:
    return ("/v1/rerank", {"query": "q", "documents": ["d"], "model": "m"})


def _servers(binary: str, model: Path) -> list[Server]:
    ours = [sys.executable, "-m", "embellama", "serve", "--model-path", str(model)]
    ours += ["--model-name", "m", "--log-level", "warning", "--port", "18601"]
    peer = [binary, "-m", str(model), "--rerank", "-t", str(THREADS), "-tb", str(THREADS)]
    peer += ["-np", "8", "-c", "4096", "-b", "512", "-ub", "512", "--threads-http", "32"]
    peer += ["--host", "127.0.0.1", "--port", "18602", "--log-disable"]
    return [
        Server("embellama (defaults)", ours, 18601, probe=_probe()),
        Server("llama-server -np 8 --threads-http 32", peer, 18602, probe=_probe()),
    ]


def _rerank(client: httpx.Client, documents: list[str]) -> dict[str, Any]:
    body = {"model": "m", "query": QUERY, "documents": documents, "raw_scores": True}
    response = client.post("/v1/rerank", json=body)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


def _run(server: Server, requests: list[list[str]]) -> float:
    """Pairs/s over `requests`, sent one after another."""
    with httpx.Client(base_url=server.url, timeout=300) as client:
        started = time.perf_counter()
        for documents in requests:
            _rerank(client, documents)
        return len(requests) * DOCUMENTS / (time.perf_counter() - started)


def _check(server: Server, documents: list[str]) -> tuple[dict[int, float], int]:
    """Logits by document index, and the request's tokens (untimed)."""
    with httpx.Client(base_url=server.url, timeout=300) as client:
        data = _rerank(client, documents)
    return {r["index"]: r["relevance_score"] for r in data["results"]}, data["usage"][
        "total_tokens"
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    binary = llama_server_binary()
    with tempfile.TemporaryDirectory() as scratch:
        model = build_tiny_xlmr(Path(scratch), classifier=True, hidden=384, layers=6).gguf
        servers = _servers(binary, model)
        runs = args.rounds * len(servers)
        requests = _documents(runs * REQUESTS_PER_RUN + 1, seed=77)
        samples: dict[str, list[float]] = {s.name: [] for s in servers}
        try:
            for server in servers:
                server.start(Path(scratch))
                _run(server, requests[-1:])  # warm-up
            block = 0
            for round_index in range(args.rounds):
                order = servers if round_index % 2 == 0 else servers[::-1]
                for server in order:
                    chunk = requests[block * REQUESTS_PER_RUN : (block + 1) * REQUESTS_PER_RUN]
                    block += 1
                    rate = _run(server, chunk)
                    samples[server.name].append(rate)
                    print(f"{round_index} {server.name}: {rate:.1f} pairs/s")
            (ours_logits, tokens), (peer_logits, _) = (_check(s, requests[-1]) for s in servers)
            agreement = max(abs(ours_logits[i] - peer_logits[i]) for i in ours_logits)
        finally:
            for server in servers:
                server.stop()
    ours, peer = (samples[s.name] for s in servers)
    ratios = [a / b for a, b in zip(ours, peer, strict=True)]
    lines = [
        "# Rerank throughput: embellama vs llama-server (ABBA)",
        "",
        f"Machine: {machine()}. A random XLM-RoBERTa cross-encoder of MiniLM-L6's size (384",
        f"wide, 6 layers, F32 GGUF from the stock converter), {THREADS} threads everywhere,",
        f"loopback. Each request: 1 query x {DOCUMENTS} documents, {tokens} tokens in all",
        f"(~{tokens // DOCUMENTS} per pair); {REQUESTS_PER_RUN} requests per run, one client,",
        f"one after another. {args.rounds} rounds, order reversed every other round.",
        "",
        "Reproduce: `python bench/rerank.py" + f" --rounds {args.rounds}`",
        "",
        "| server | pairs/s, median (min-max) |",
        "|---|---:|",
        *(
            f"| {s.name} | {statistics.median(samples[s.name]):.1f} "
            f"({min(samples[s.name]):.0f}-{max(samples[s.name]):.0f}) |"
            for s in servers
        ),
        "",
        f"Ratio embellama / llama-server per round: median **{statistics.median(ratios):.2f}×** "
        f"({min(ratios):.2f}-{max(ratios):.2f}).",
        "",
        "Same request, both servers: max |logit difference| over the 100 documents "
        f"{agreement:.1e} (llama-server returns the raw logit; embellama with "
        "`raw_scores: true`).",
    ]
    (HERE / "rerank.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
