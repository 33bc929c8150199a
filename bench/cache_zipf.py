"""The embedding cache under a Zipf-distributed query stream, and under churn.

Stream: 10,000 distinct short texts, popularity ~ 1/rank^1.1, 50,000 requests of one
text each (fixed seed), 16 keep-alive connections (bench/fast_client.py). Servers, one
after another on the same GGUF and threads: embellama with the cache off, with the
memory cache (the default), with memory + Redis (a real redis-server), and llama-server
(-np 8 --threads-http 32, when bench/peers can build it). A server without a cache
computes every request whatever the stream repeats, so it runs the stream's first
10,000 requests. Then: hit latency at concurrency 1, and 60 s of always-new texts
against an 8 MB cache (bytes held and RSS sampled). Writes bench/cache_zipf.md.

    python bench/cache_zipf.py [--requests 50000] [--churn-seconds 60]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.batch_budget import machine
from bench.corpus import short_texts
from bench.fast_client import Run, post_all
from bench.load import HERE, THREADS, Server
from embellama import prepare_default_model
from tests.e2e.redis_server import start_redis

DISTINCT = 10_000
ZIPF_S = 1.1
UNCACHED_REQUESTS = 10_000


def zipf_stream(requests: int, seed: int = 2024) -> list[str]:
    texts = [f"{text} ({rank})" for rank, text in enumerate(short_texts(DISTINCT, seed=31))]
    weights = 1.0 / np.arange(1, DISTINCT + 1) ** ZIPF_S
    picks = np.random.default_rng(seed).choice(DISTINCT, size=requests, p=weights / weights.sum())
    return [texts[i] for i in picks]


def bodies(texts: list[str]) -> list[bytes]:
    return [json.dumps({"input": [t], "model": "m"}).encode() for t in texts]


def embellama(name: str, model: Path, port: int, *extra: str) -> Server:
    command = [sys.executable, "-m", "embellama", "serve", "--model-path", str(model)]
    command += ["--model-name", "m", "--port", str(port), "--log-level", "warning", *extra]
    return Server(name, command, port)


def llama_server(model: Path, port: int) -> Server | None:
    build = subprocess.run(
        ["bash", str(HERE / "peers" / "build_llama_server.sh")], capture_output=True, text=True
    )
    if build.returncode != 0:
        return None
    command = [build.stdout.strip(), "-m", str(model), "--embedding", "--pooling", "mean"]
    command += ["-t", str(THREADS), "-tb", str(THREADS), "-np", "8", "-c", "4096"]
    command += ["-b", "512", "-ub", "512", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-disable", "--threads-http", "32"]
    return Server("llama-server -np 8 --threads-http 32", command, port)


def churn(server: Server, seconds: float) -> list[tuple[float, float, float]]:
    """Always-new texts for `seconds`; samples of (elapsed s, cache MB, RSS MB)."""
    samples = []
    started = time.monotonic()
    batch = 0
    while time.monotonic() - started < seconds:
        texts = [f"churn {batch} {n} " + t for n, t in enumerate(short_texts(400, seed=batch))]
        run = post_all(server.url, bodies(texts), 16)
        assert set(run.statuses) == {200}, run.statuses
        metrics = httpx.get(server.url + "/metrics").text
        cache_bytes = next(
            float(line.split()[1])
            for line in metrics.splitlines()
            if line.startswith("embellama_cache_bytes ")
        )
        samples.append((time.monotonic() - started, cache_bytes / 1e6, server.rss_mb()))
        batch += 1
    return samples


def row(name: str, run: Run) -> str:
    hit_rate = run.cache_hits / run.requests if run.requests else 0.0
    return (
        f"| {name} | {run.requests} | {hit_rate:.1%} | {run.throughput:.1f} | "
        f"{run.percentile_ms(50):.2f} | {run.percentile_ms(99):.2f} | {run.statuses} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=50_000)
    parser.add_argument("--churn-seconds", type=float, default=60)
    args = parser.parse_args()
    model = prepare_default_model().path
    stream = zipf_stream(args.requests)
    distinct = len(set(stream))
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        redis = start_redis(Path(scratch))
        servers = [
            (embellama("embellama, cache off", model, 18401, "--cache-size", "0"), False),
            (embellama("embellama, memory cache (default)", model, 18402), True),
            (
                embellama("embellama, memory + Redis", model, 18403, "--cache-url", redis.url),
                True,
            ),
        ]
        peer = llama_server(model, 18404)
        if peer is not None:
            servers.append((peer, False))
        results: dict[str, Run] = {}
        hit_latency: dict[str, Run] = {}
        try:
            for server, cached in servers:
                server.start(Path(scratch))
                requests = stream if cached else stream[:UNCACHED_REQUESTS]
                post_all(server.url, bodies(stream[:50]), 4)  # warm-up
                results[server.name] = post_all(server.url, bodies(requests), 16)
                print(row(server.name, results[server.name]), flush=True)
                if cached:  # the 200 most popular texts are cached by now: all hits
                    popular = list(dict.fromkeys(stream))[:200]
                    hit_latency[server.name] = post_all(server.url, bodies(popular * 5), 1)
                else:
                    hit_latency[server.name] = post_all(server.url, bodies(stream[-300:]), 1)
                server.stop()
            churner = embellama("embellama, 8MB cache", model, 18405, "--cache-size", "8MB")
            churner.start(Path(scratch))
            samples = churn(churner, args.churn_seconds)
            churner.stop()
        finally:
            for server, _ in servers:
                server.stop()
            redis.stop()
    off = results["embellama, cache off"]
    lines += [
        "# Embedding cache: Zipf query stream and churn",
        "",
        f"Machine: {machine()}. all-MiniLM-L6-v2 F16, {THREADS} threads, one text per request,",
        f"16 keep-alive connections (bench/fast_client.py). Stream: {args.requests} requests over",
        f"{DISTINCT} distinct texts, Zipf s = {ZIPF_S} ({distinct} distinct texts requested).",
        f"Servers without a cache run the first {UNCACHED_REQUESTS} requests (they compute every",
        "one, so repeats change nothing for them). One run per server, in table order.",
        "",
        "Reproduce: `python bench/cache_zipf.py`",
        "",
        "| server | requests | hit rate | req/s | p50 ms | p99 ms | statuses |",
        "|---|---:|---:|---:|---:|---:|---|",
        *(row(name, run) for name, run in results.items()),
        "",
        "| server | throughput vs cache off | c1 p50 ms (hits where cached) | c1 p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for name, run in results.items():
        latency = hit_latency[name]
        lines.append(
            f"| {name} | {run.throughput / off.throughput:.2f}× | "
            f"{latency.percentile_ms(50):.2f} | {latency.percentile_ms(99):.2f} |"
        )
    lines += [
        "",
        f"Churn: {args.churn_seconds:g} s of always-new texts against `--cache-size 8MB`;",
        "cache bytes (the bound counts keys, vectors and overhead) and server RSS (server plus",
        "worker), sampled after each 400 requests:",
        "",
        "| t (s) | cache MB | RSS MB |",
        "|---:|---:|---:|",
        *(f"| {t:.0f} | {mb:.2f} | {rss:.0f} |" for t, mb, rss in samples),
        "",
    ]
    (HERE / "cache_zipf.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
