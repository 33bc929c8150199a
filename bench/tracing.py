"""What OpenTelemetry tracing costs: c16 throughput with tracing on vs off (ABBA), and the
per-request cost of the off path, measured in-process.

Two servers of this checkout on the same GGUF, serve's defaults, cache off: one without
`--otlp-endpoint`, one exporting every request's spans (7 per request at c16) to a real
OTLP/HTTP receiver in a process of its own (tests/e2e/otlp_receiver.py, which decodes
them) with the SDK's default batching. Rounds alternate A B / B A; on/off ratios of embeddings per
second go to bench/tracing.md. That tracing off costs nothing against the commit before
it is bench/before_after.py's question (`--before <commit>`).

    python bench/tracing.py [--rounds 6] [--requests 600]
    python bench/tracing.py --rounds 1 --requests 32 --hook-calls 100000 --out /tmp/t.md
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.batch_budget import machine
from bench.corpus import short_texts
from bench.load import Server, embellama_command, run_closed
from embellama import prepare_default_model
from embellama.stages import current

OUT = Path(__file__).resolve().parent
# Where an untraced embeddings request asks whether it is traced: tokenize, the cache
# lookup, the pipeline's return, the scheduler's queue entry; each batch checks a count.
HOOKS_PER_REQUEST = 4


@dataclass
class _Receiver:
    url: str
    spans: int = 0


@contextmanager
def _receiver_process() -> Iterator[_Receiver]:
    """The collector in a process of its own: in the load generator's interpreter its
    decoding would slow the client on the traced leg only."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.otlp_receiver"],
        cwd=OUT.parent,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None and process.stdout is not None
    receiver = _Receiver(process.stdout.readline().strip())
    try:
        yield receiver
    finally:
        process.stdin.close()
        receiver.spans = int(process.stdout.readline() or 0)
        process.wait(timeout=30)


def _server(name: str, model: Path, port: int, tracing: list[str]) -> Server:
    return Server(name, embellama_command(model, port, *tracing), port)


def _off_path() -> None:
    """What a request does when nobody traces it, hook by hook (embellama.stages)."""
    for _ in range(HOOKS_PER_REQUEST):
        log = current()
        if log is not None:
            raise AssertionError("tracing is on in this process")


def off_path_ns(calls: int) -> float:
    """Nanoseconds per request of the hooks with tracing off (best of 5)."""
    timer = timeit.Timer(_off_path)
    return min(timer.repeat(5, calls)) / calls * 1e9


async def _cached_embed_us(model: Path, calls: int) -> float:
    """Microseconds of one cached embeddings call in-process: the fastest real request,
    the scale the off path's nanoseconds are a part of."""
    from embellama import AsyncEmbeddingEngine, EmbeddingCache
    from embellama.config import ModelConfig

    engine = AsyncEmbeddingEngine(cache=EmbeddingCache.create("16MB"))
    try:
        await engine.load_model(ModelConfig(path=model, name="m"))
        await engine.embed("a cached text", "m")
        started = time.perf_counter()
        for _ in range(calls):
            await engine.embed("a cached text", "m")
        return (time.perf_counter() - started) / calls * 1e6
    finally:
        await engine.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=600, help="one-text requests per run")
    parser.add_argument("--hook-calls", type=int, default=1_000_000)
    parser.add_argument("--out", type=Path, default=OUT / "tracing.md")
    args = parser.parse_args()
    model = prepare_default_model().path
    hooks = off_path_ns(args.hook_calls)
    cached = asyncio.run(_cached_embed_us(model, max(100, args.hook_calls // 1000)))
    print(f"off path: {hooks:.0f} ns per request; a cached in-process embed: {cached:.1f} us")
    payloads = [[t] for t in short_texts(args.requests, seed=7)]
    with _receiver_process() as receiver, tempfile.TemporaryDirectory() as tmp:
        servers = [
            _server("tracing off", model, 18311, []),
            _server("tracing on", model, 18312, ["--otlp-endpoint", receiver.url]),
        ]
        samples: dict[str, list[float]] = {s.name: [] for s in servers}
        try:
            for server in servers:
                server.start(Path(tmp))
            for round_index in range(args.rounds):
                order = servers if round_index % 2 == 0 else servers[::-1]  # A B, B A, ...
                for server in order:
                    outcome = run_closed(server, payloads, 16)
                    assert outcome.errors == 0, (server.name, outcome.errors)
                    samples[server.name].append(outcome.throughput)
                    print(f"round {round_index}: {server.name} {outcome.throughput:.1f}/s")
        finally:
            for server in servers:
                server.stop()  # SIGTERM: the traced one exports what it still holds
    spans = receiver.spans
    off, on = samples["tracing off"], samples["tracing on"]
    ratios = [b / a for a, b in zip(off, on, strict=True)]
    lines = [
        "# Tracing on vs off (ABBA)",
        "",
        f"Machine: {machine()}. Same GGUF (all-MiniLM-L6-v2 F16), serve's defaults with the "
        f"cache off, 16 clients of one short text each (bench/load.py), {args.requests} "
        f"requests per run, {args.rounds} rounds, order A B / B A alternating; embeddings "
        "per second, median (min-max). Tracing on: `--otlp-endpoint` to a real OTLP/HTTP "
        "receiver in its own process on the same 2 cores (tests/e2e/otlp_receiver.py, "
        "decoding every span: a collector on another machine would leave those cycles to "
        f"the server), the SDK's default batching; it received {spans} spans.",
        "",
        f"Reproduce: `python bench/tracing.py --rounds {args.rounds} --requests {args.requests}`",
        "",
        "| tracing off | tracing on | on / off |",
        "|---:|---:|---:|",
        f"| {statistics.median(off):.1f} ({min(off):.0f}-{max(off):.0f}) | "
        f"{statistics.median(on):.1f} ({min(on):.0f}-{max(on):.0f}) | "
        f"{statistics.median(ratios):.3f}× ({min(ratios):.3f}-{max(ratios):.3f}) |",
        "",
        f"Off path, in-process: {hooks:.0f} ns per request ({HOOKS_PER_REQUEST} context "
        f"lookups, best of 5 x {args.hook_calls}); a cached in-process embed takes "
        f"{cached:.1f} us. With tracing off no middleware is installed and opentelemetry "
        "is never imported (tests/unit/test_tracing.py).",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
