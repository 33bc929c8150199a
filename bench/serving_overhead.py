"""Serving overhead against llama-server, ABBA, with a client that barely costs CPU.

embellama (defaults, cache off: computation against computation) and llama-server
(-np 8, with its default HTTP threads and with --threads-http 32) on the same GGUF and
threads. Scenarios: one short text per request from 16 keep-alive connections, and 32
texts per request from 4. Every round uses texts no earlier round sent. Rounds alternate
the server order (A B C, C B A, ...); medians of the per-round ratios go to
bench/serving_overhead.md. Client: bench/fast_client.py (asyncio streams, one process).

    python bench/serving_overhead.py [--rounds 6] [--extra-args "--workers 1"] [--client wrk]

`--client wrk` drives the one-text scenario with wrk (a C client, one thread, 6 s per run,
800 bodies cycled by a Lua script) and writes bench/serving_overhead_wrk.md.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.batch_budget import machine
from bench.corpus import mixed_texts, short_texts
from bench.fast_client import post_all
from bench.load import HERE, THREADS, Server, llama_server_binary
from bench.wrk_check import lua_for_bodies, run_wrk
from embellama import prepare_default_model

SHORT_PER_ROUND = 800
BATCHES_PER_ROUND = 20


def _llama_server(binary: str, model: Path, port: int, http_threads: int | None) -> Server:
    command = [binary, "-m", str(model), "--embedding", "--pooling", "mean"]
    command += ["-t", str(THREADS), "-tb", str(THREADS), "-np", "8", "-c", "4096"]
    command += ["-b", "512", "-ub", "512", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--log-disable"]
    name = "llama-server -np 8"
    if http_threads:
        command += ["--threads-http", str(http_threads)]
        name += f" --threads-http {http_threads}"
    return Server(name, command, port)


def _body(texts: list[str]) -> bytes:
    return json.dumps({"input": texts, "model": "m"}).encode()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--extra-args", default="", help="more embellama serve flags")
    parser.add_argument("--client", choices=["python", "wrk"], default="python")
    args = parser.parse_args()
    model = prepare_default_model().path
    binary = llama_server_binary()
    ours = [sys.executable, "-m", "embellama", "serve", "--model-path", str(model)]
    ours += ["--model-name", "m", "--cache-size", "0", "--log-level", "warning"]
    ours += [*shlex.split(args.extra_args), "--port", "18501"]
    label = "embellama" + (f" {args.extra_args}" if args.extra_args else " (defaults)")
    servers = [
        Server(label, ours, 18501),
        _llama_server(binary, model, 18502, 32),
        _llama_server(binary, model, 18503, None),
    ]
    blocks = args.rounds * len(servers) * 2  # one block of fresh texts per run
    shorts = short_texts(SHORT_PER_ROUND * blocks + 100, seed=404)
    batches = [mixed_texts(32, seed=9000 + i) for i in range(BATCHES_PER_ROUND * blocks)]
    scripts = Path(tempfile.mkdtemp())

    def fast_client(server: Server, bodies: list[bytes], connections: int) -> float:
        run = post_all(server.url, bodies, connections)
        assert set(run.statuses) == {200}, (server.name, run.statuses)
        return run.throughput

    def wrk(server: Server, bodies: list[bytes], connections: int) -> float:
        script = scripts / f"{connections}.lua"  # one body set per scenario, reused
        if not script.exists():
            script.write_text(lua_for_bodies(bodies))
        result = run_wrk(server.url + "/v1/embeddings", script, connections, 6)
        assert result["non_2xx"] == 0, (server.name, result)
        # wrk stops with requests in flight; let the server finish them before the next run.
        time.sleep(2)
        return result["rps"]

    if args.client == "wrk":
        # One scenario: a 6 s window holds ~18 requests of 32 texts, too few to compare.
        short_bodies = [_body([t]) for t in shorts[:SHORT_PER_ROUND]]
        scenarios: dict[str, Callable[[Server, int], float]] = {
            "1 text/request, 16 connections": lambda s, k: wrk(s, short_bodies, 16),
        }
    else:  # fresh texts every run
        scenarios = {
            "1 text/request, 16 connections": lambda s, k: fast_client(
                s,
                [_body([t]) for t in shorts[k * SHORT_PER_ROUND : (k + 1) * SHORT_PER_ROUND]],
                16,
            ),
            "32 texts/request, 4 connections": lambda s, k: fast_client(
                s,
                [_body(b) for b in batches[k * BATCHES_PER_ROUND : (k + 1) * BATCHES_PER_ROUND]],
                4,
            ),
        }
    samples: dict[tuple[str, str], list[float]] = {
        (name, s.name): [] for name in scenarios for s in servers
    }
    block = 0
    with tempfile.TemporaryDirectory() as scratch:
        try:
            for server in servers:
                server.start(Path(scratch))
                post_all(server.url, [_body([t]) for t in shorts[-100:]], 4)  # warm-up
            for round_index in range(args.rounds):
                order = servers if round_index % 2 == 0 else servers[::-1]
                for name, scenario in scenarios.items():
                    for server in order:
                        per_second = scenario(server, block)
                        block += 1
                        texts = per_second * (1 if name.startswith("1 ") else 32)
                        samples[(name, server.name)].append(texts)
                        print(f"{round_index} {name} {server.name}: {texts:.1f}", flush=True)
        finally:
            for server in servers:
                server.stop()
    lines = [
        "# Serving overhead: embellama vs llama-server (ABBA)",
        "",
        f"Machine: {machine()}. all-MiniLM-L6-v2 F16, {THREADS} threads everywhere, loopback.",
        (
            "Client: wrk (C, one thread, keep-alive, 6 s per run, the same bodies cycled). "
            if args.client == "wrk"
            else "Client: bench/fast_client.py (Python asyncio streams, keep-alive); fresh "
            "texts every run. "
        )
        + f"{args.rounds} rounds, server order reversed every other round; embeddings/s,",
        "median (min-max); ratios are per round against the tuned llama-server.",
        "",
        f"Reproduce: `python bench/serving_overhead.py --rounds {args.rounds}"
        + (f' --extra-args "{args.extra_args}"' if args.extra_args else "")
        + (" --client wrk`" if args.client == "wrk" else "`"),
        "",
        "| scenario | server | emb/s | vs llama-server --threads-http 32 |",
        "|---|---|---:|---:|",
    ]
    reference = servers[1].name
    for name in scenarios:
        for server in servers:
            values = samples[(name, server.name)]
            ratios = [v / r for v, r in zip(values, samples[(name, reference)], strict=True)]
            lines.append(
                f"| {name} | {server.name} | {statistics.median(values):.1f} "
                f"({min(values):.0f}-{max(values):.0f}) | {statistics.median(ratios):.2f}× "
                f"({min(ratios):.2f}-{max(ratios):.2f}) |"
            )
    out = HERE / ("serving_overhead_wrk.md" if args.client == "wrk" else "serving_overhead.md")
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
