"""Side-by-side HTTP benchmark: embellama vs llama-server vs llama-cpp-python's server.

Every server gets the same fixed-seed texts, the same GGUF file and the same number of
threads, on loopback. Servers run at once but are measured one at a time, alternately
(A B C A B C ...) within each round; results are medians over rounds, reported as
ratios in bench/results.md with plots. Every response is validated and errors counted.

    python bench/load.py [--rounds 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.batch_budget import machine
from bench.corpus import mixed_texts, short_texts

HERE = Path(__file__).resolve().parent
THREADS = 2
DIMS = 384


def embellama_command(
    model: Path,
    port: int,
    *flags: str,
    python: str = sys.executable,
    log_level: str | None = "warning",
) -> list[str]:
    """`embellama serve` of this checkout on `model` as "m", cache off (benchmark rounds
    repeat their texts, and cache hits would measure the cache; peers have no cache
    either), warnings only unless `log_level` is None (serve's default)."""
    logging = [] if log_level is None else ["--log-level", log_level]
    return [
        python,
        "-m",
        "embellama.cli.main",
        "serve",
        "--model-path",
        str(model),
        "--model-name",
        "m",
        "--port",
        str(port),
        *logging,
        "--cache-size",
        "0",
        *flags,
    ]


def llama_server_command(
    binary: str, model: Path, port: int, parallel: int, http_threads: int | None
) -> list[str]:
    """llama-server on `model` with mean pooling, THREADS threads, `parallel` slots of 512
    tokens and its default HTTP pool unless `http_threads` is given; logging off."""
    tuned = [] if http_threads is None else ["--threads-http", str(http_threads)]
    return [
        binary,
        "-m",
        str(model),
        "--embedding",
        "--pooling",
        "mean",
        "-t",
        str(THREADS),
        "-tb",
        str(THREADS),
        "-np",
        str(parallel),
        "-c",
        str(512 * parallel),
        "-b",
        "512",
        "-ub",
        "512",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-disable",
        *tuned,
    ]


@dataclass
class Server:
    name: str
    command: list[str]
    port: int
    normalized: bool = True
    dims: int = DIMS  # the width every returned vector must have
    # The request whose 200 says the server is ready (a reranker has no embeddings).
    probe: tuple[str, dict[str, object]] = ("/v1/embeddings", {"input": "warm up", "model": "m"})
    process: subprocess.Popen[bytes] | None = None
    startup_seconds: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log_dir: Path) -> None:
        log = (log_dir / f"{self.name.replace(' ', '_')}.log").open("wb")
        started = time.monotonic()
        self.process = subprocess.Popen(
            self.command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = started + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: see {log.name}")
            try:
                probe = httpx.post(self.url + self.probe[0], json=self.probe[1], timeout=5)
                if probe.status_code == 200:
                    self.startup_seconds = time.monotonic() - started
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise TimeoutError(self.name)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)

    def rss_mb(self) -> float:
        """Resident memory of the server and all its children (workers)."""
        assert self.process is not None
        return sum(rss_of(pid) for pid in _tree(self.process.pid))


def _tree(pid: int) -> list[int]:
    pids = [pid]
    try:  # children of every thread: embellama spawns its workers off the event loop
        children = [
            c for t in Path(f"/proc/{pid}/task").glob("*/children") for c in t.read_text().split()
        ]
    except FileNotFoundError:
        return pids
    for child in children:
        pids.extend(_tree(int(child)))
    return pids


@dataclass
class Outcome:
    texts: int = 0
    errors: int = 0
    unnormalized: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def throughput(self) -> float:
        return self.texts / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) * 1000 if self.latencies else float("nan")


def _check(server: Server, response: httpx.Response, count: int, outcome: Outcome) -> None:
    if response.status_code != 200:
        outcome.errors += 1
        return
    data = response.json().get("data", [])
    if len(data) != count:
        outcome.errors += 1
        return
    for item in data:
        raw = item["embedding"]
        vector = (
            np.frombuffer(base64.b64decode(raw), "<f4") if isinstance(raw, str) else np.asarray(raw)
        )
        if vector.shape != (server.dims,):
            outcome.errors += 1
            return
        if abs(float(np.linalg.norm(vector)) - 1.0) > 1e-3:
            outcome.unnormalized += 1
    outcome.texts += count


async def _closed_loop(
    server: Server,
    payloads: list[list[str]],
    concurrency: int,
    outcome: Outcome,
    stop_at: float | None = None,
) -> None:
    """`concurrency` clients each send their next request as soon as the last returns."""
    queue = list(reversed(payloads))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=server.url, timeout=120, limits=limits) as client:

        async def client_loop() -> None:
            while queue and (stop_at is None or time.perf_counter() < stop_at):
                texts = queue.pop()
                started = time.perf_counter()
                try:
                    response = await client.post(
                        "/v1/embeddings",
                        json={"input": texts, "model": "m", "encoding_format": "float"},
                    )
                except httpx.HTTPError:
                    outcome.errors += 1
                    continue
                outcome.latencies.append(time.perf_counter() - started)
                _check(server, response, len(texts), outcome)

        await asyncio.gather(*(client_loop() for _ in range(concurrency)))


def run_closed(server: Server, payloads: list[list[str]], concurrency: int) -> Outcome:
    outcome = Outcome()
    started = time.perf_counter()
    asyncio.run(_closed_loop(server, payloads, concurrency, outcome))
    outcome.seconds = time.perf_counter() - started
    return outcome


def run_mixed(server: Server, seconds: float, *, with_bulk: bool) -> Outcome:
    """Short queries at concurrency 8; optionally 32-text batches at concurrency 2 meanwhile."""
    queries = Outcome()
    bulk = Outcome()

    async def scenario() -> None:
        stop_at = time.perf_counter() + seconds
        tasks = [
            _closed_loop(server, [[t] for t in short_texts(100000, seed=5)], 8, queries, stop_at)
        ]
        if with_bulk:
            batches = [mixed_texts(32, seed=1000 + i) for i in range(400)]
            tasks.append(_closed_loop(server, batches, 2, bulk, stop_at))
        await asyncio.gather(*tasks)

    started = time.perf_counter()
    asyncio.run(scenario())
    queries.seconds = time.perf_counter() - started
    queries.errors += bulk.errors
    return queries


def scenarios(quick: bool) -> dict[str, Callable[[Server], Outcome]]:
    scale = 0.5 if quick else 1.0
    n = lambda base: max(8, int(base * scale))  # noqa: E731
    shorts = short_texts(2000, seed=7)
    long_text = [" ".join(mixed_texts(400, seed=3)[i].split()[:160]) for i in range(400)]
    return {
        "short, concurrency 1": lambda s: run_closed(s, [[t] for t in shorts[: n(150)]], 1),
        "short, concurrency 16": lambda s: run_closed(s, [[t] for t in shorts[: n(600)]], 16),
        "short, concurrency 64": lambda s: run_closed(s, [[t] for t in shorts[: n(800)]], 64),
        "32 texts/request, concurrency 4": lambda s: run_closed(
            s, [mixed_texts(32, seed=i) for i in range(n(30))], 4
        ),
        "~200 tokens, concurrency 4": lambda s: run_closed(
            s, [[t] for t in long_text[: n(150)]], 4
        ),
        "short queries alone, concurrency 8": lambda s: run_mixed(s, 8 * scale, with_bulk=False),
        "short queries + bulk": lambda s: run_mixed(s, 8 * scale, with_bulk=True),
    }


def build_servers(
    model: Path, python: str, lcp_python: str | None, llama_server: str | None
) -> list[Server]:
    ports = iter(range(18080, 18200))
    servers = []

    def embellama(*flags: str) -> tuple[list[str], int]:
        port = next(ports)
        return embellama_command(model, port, *flags, python=python, log_level=None), port

    servers.append(Server("embellama (defaults)", *embellama()))
    servers.append(Server("embellama 1 worker x 2 threads", *embellama("--workers", "1")))
    if llama_server:
        # Default HTTP threads (what users get) and --threads-http 32 (the fair peer: at 16
        # keep-alive clients its default pool stalls for seconds in some rounds).
        for parallel, http_threads in ((1, None), (8, None), (8, 32)):
            label = "" if http_threads is None else f" --threads-http {http_threads}"
            port = next(ports)
            servers.append(
                Server(
                    f"llama-server -np {parallel}{label}",
                    llama_server_command(llama_server, model, port, parallel, http_threads),
                    port,
                )
            )
    if lcp_python:
        servers.append(
            Server(
                "llama-cpp-python server",
                [
                    lcp_python,
                    "-m",
                    "llama_cpp.server",
                    "--model",
                    str(model),
                    "--embedding",
                    "true",
                    "--n_threads",
                    str(THREADS),
                    "--n_threads_batch",
                    str(THREADS),
                    "--n_ctx",
                    "512",
                    "--verbose",
                    "false",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(p := next(ports)),
                ],
                p,
                normalized=False,
            )
        )
    return servers


def _peer(script: str) -> str:
    """Run a bench/peers script (it builds or reuses, cached outside the repo); its path out."""
    done = subprocess.run(
        ["bash", str(HERE / "peers" / script)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def llama_server_binary() -> str:
    return _peer("build_llama_server.sh")


def peer_programs() -> tuple[str, str]:
    """llama-server, and the Python of a virtualenv holding llama-cpp-python's server."""
    return llama_server_binary(), _peer("install_llama_cpp_python_server.sh")


def rss_of(pid: int) -> float:
    """Resident memory of one process in MB (0 if it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
    except FileNotFoundError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in status if line.startswith("VmRSS:")), 0.0)


def engine_limit(model: Path, rounds: int) -> dict[str, float]:
    """Texts/s with no HTTP at all: the ceiling a server can approach."""
    from llama_cpp import Llama

    from embellama import EmbeddingEngine

    shorts = short_texts(600, seed=7)
    engine = EmbeddingEngine.from_path(model, n_threads=THREADS)
    llama = Llama(
        str(model),
        embedding=True,
        n_ctx=512,
        n_threads=THREADS,
        n_threads_batch=THREADS,
        verbose=False,
    )
    runs: dict[str, Callable[[], object]] = {
        "embellama engine, one call": lambda: engine.embed(shorts),
        "embellama engine, one text per call": lambda: [engine.embed(t) for t in shorts],
        "Llama.embed, one call": lambda: llama.embed(shorts, normalize=True),
        "Llama.embed, one text per call": lambda: [llama.embed(t, normalize=True) for t in shorts],
    }
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for name, run in runs.items():
            started = time.perf_counter()
            run()
            samples[name].append(len(shorts) / (time.perf_counter() - started))
    engine.close()
    return {k: statistics.median(v) for k, v in samples.items()}


def sustained(server: Server, seconds: float) -> list[tuple[float, float]]:
    """Short requests at concurrency 16 for `seconds`, sampling RSS every second."""
    samples: list[tuple[float, float]] = []

    async def scenario() -> None:
        stop_at = time.perf_counter() + seconds
        start = time.perf_counter()
        outcome = Outcome()
        load = asyncio.create_task(
            _closed_loop(server, [[t] for t in short_texts(200000, seed=9)], 16, outcome, stop_at)
        )
        while not load.done():
            samples.append((time.perf_counter() - start, server.rss_mb()))
            await asyncio.sleep(1)
        await load

    asyncio.run(scenario())
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--quick", action="store_true", help="Half-size scenarios (for a smoke run)."
    )
    parser.add_argument("--sustained-seconds", type=float, default=60)
    parser.add_argument("--output", type=Path, default=HERE / "results.json")
    parser.add_argument(
        "--scenario", action="append", help="Only scenarios whose name contains this."
    )
    parser.add_argument("--server", action="append", help="Only servers whose name contains this.")
    args = parser.parse_args()

    from embellama import prepare_default_model

    model = prepare_default_model().path
    llama_server, lcp_python = peer_programs()
    log_dir = Path(os.environ.get("BENCH_LOGS", "/tmp/embellama-bench-logs"))
    log_dir.mkdir(parents=True, exist_ok=True)

    limit = engine_limit(model, args.rounds)
    print("engine limit:", json.dumps(limit, indent=1), flush=True)
    servers = [
        server
        for server in build_servers(model, sys.executable, lcp_python, llama_server)
        if not args.server or any(part in server.name for part in args.server)
    ]
    results: dict[str, Any] = {
        "machine": machine(),
        "threads": THREADS,
        "rounds": args.rounds,
        "engine_limit": limit,
        "scenarios": {},
        "startup_seconds": {},
        "rss_mb": {},
    }
    try:
        for server in servers:
            server.start(log_dir)
            results["startup_seconds"][server.name] = server.startup_seconds
            results["rss_mb"][server.name] = server.rss_mb()
        plan = {
            name: run
            for name, run in scenarios(args.quick).items()
            if not args.scenario or any(part in name for part in args.scenario)
        }
        raw: dict[str, dict[str, list[dict[str, float]]]] = {
            s: {v.name: [] for v in servers} for s in plan
        }
        for round_index in range(args.rounds):
            for scenario, run in plan.items():
                order = servers if round_index % 2 == 0 else list(reversed(servers))
                for server in order:
                    time.sleep(0.5)
                    outcome = run(server)
                    raw[scenario][server.name].append(
                        {
                            "throughput": outcome.throughput,
                            "p50_ms": outcome.percentile(50),
                            "p99_ms": outcome.percentile(99),
                            "errors": outcome.errors,
                            "unnormalized": outcome.unnormalized,
                            "texts": outcome.texts,
                            "latencies_ms": [x * 1000 for x in outcome.latencies],
                        }
                    )
                    print(
                        f"round {round_index} {scenario:38s} {server.name:26s} "
                        f"{outcome.throughput:7.1f}/s p50 {outcome.percentile(50):7.1f} ms "
                        f"p99 {outcome.percentile(99):7.1f} ms err {outcome.errors}",
                        flush=True,
                    )
        results["scenarios"] = raw
        if args.sustained_seconds > 0:
            results["sustained"] = {servers[0].name: sustained(servers[0], args.sustained_seconds)}
        results["rss_mb_after"] = {s.name: s.rss_mb() for s in servers}
    finally:
        for server in servers:
            server.stop()
    args.output.write_text(json.dumps(results))
    print(f"wrote {args.output}; now run: python bench/report.py", flush=True)


if __name__ == "__main__":
    main()
