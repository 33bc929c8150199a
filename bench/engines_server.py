"""The server on each engine (issue 22): c16 single texts, 32 texts per request and c1
latency through /v1/embeddings, `--engine llama.cpp` against `--engine onnxruntime`, and
the memory each holds (PSS: shared mmapped pages counted once, per process and in all).

Two servers of this checkout on the same GGUF, serve's defaults with the cache off (the
rounds repeat their texts), measured one at a time, A B / B A alternating per round;
medians of the rounds and onnxruntime/llama.cpp ratios go to bench/engines_server.md.

    python bench/engines_server.py [--rounds 6]
    python bench/engines_server.py --rounds 1 --quick --out /tmp/e.md   # a smoke check
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.batch_budget import machine
from bench.corpus import mixed_texts, short_texts
from bench.load import Outcome, Server, _tree, embellama_command, run_closed
from embellama import prepare_default_model

OUT = Path(__file__).resolve().parent / "engines_server.md"
ENGINES = ("llama.cpp", "onnxruntime")


def pss_mb(pid: int) -> float:
    """Proportional set size of one process: a page shared by n processes counts 1/n."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _server(engine: str, model: Path, port: int) -> Server:
    return Server(engine, embellama_command(model, port, "--engine", engine), port)


def scenarios(quick: bool) -> dict[str, Callable[[Server], Outcome]]:
    scale = 0.25 if quick else 1.0
    n = lambda base: max(8, int(base * scale))  # noqa: E731
    shorts = short_texts(2000, seed=7)
    return {
        "c16 single texts, texts/s": lambda s: run_closed(s, [[t] for t in shorts[: n(800)]], 16),
        "32 texts per request, c4, texts/s": lambda s: run_closed(
            s, [mixed_texts(32, seed=i) for i in range(n(40))], 4
        ),
        "c1 single text, p50 ms": lambda s: run_closed(s, [[t] for t in shorts[: n(200)]], 1),
    }


def _figure(name: str, outcome: Outcome) -> float:
    return outcome.percentile(50) if name.endswith("ms") else outcome.throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    model = prepare_default_model().path
    servers = [_server(engine, model, 18411 + i) for i, engine in enumerate(ENGINES)]
    tests = scenarios(args.quick)
    figures: dict[tuple[str, str], list[float]] = {}
    memory: dict[str, list[tuple[str, float]]] = {}
    with tempfile.TemporaryDirectory() as logs:
        try:
            for server in servers:
                server.start(Path(logs))
            for round_index in range(args.rounds):
                order = servers if round_index % 2 == 0 else servers[::-1]
                for test, run in tests.items():
                    for server in order:
                        outcome = run(server)
                        assert outcome.errors == 0, (server.name, test, outcome.errors)
                        value = _figure(test, outcome)
                        figures.setdefault((test, server.name), []).append(value)
                        print(f"round {round_index} {test} {server.name}: {value:.1f}")
            for server in servers:  # after the load: what the workers hold when warm
                assert server.process is not None
                pids = _tree(server.process.pid)
                memory[server.name] = [
                    ("server" if pid == server.process.pid else f"worker {pid}", pss_mb(pid))
                    for pid in pids
                ]
        finally:
            for server in servers:
                server.stop()
    lines = [
        "# The server on each engine (ABBA)",
        "",
        f"Machine: {machine()}. `embellama serve` on all-MiniLM-L6-v2 F16, serve's defaults "
        f"with the cache off, `--engine llama.cpp` vs `--engine onnxruntime`; {args.rounds} "
        "rounds, the two servers alternating A B / B A; medians (min-max) of the rounds; "
        "bench/load.py's closed-loop clients, every response checked.",
        "",
        f"Reproduce: `python bench/engines_server.py --rounds {args.rounds}`",
        "",
        "| scenario | llama.cpp | onnxruntime | onnxruntime / llama.cpp |",
        "|---|---:|---:|---:|",
    ]
    for test in tests:
        a, b = figures[(test, ENGINES[0])], figures[(test, ENGINES[1])]
        ratios = [y / x for x, y in zip(a, b, strict=True)]
        lines.append(
            f"| {test} | {statistics.median(a):.1f} ({min(a):.0f}-{max(a):.0f}) | "
            f"{statistics.median(b):.1f} ({min(b):.0f}-{max(b):.0f}) | "
            f"{statistics.median(ratios):.2f}× |"
        )
    lines += ["", "| engine | PSS per process, MB | PSS in all, MB |", "|---|---|---:|"]
    for engine, processes in memory.items():
        each = ", ".join(f"{name.split()[0]} {mb:.0f}" for name, mb in processes)
        lines.append(f"| {engine} | {each} | {sum(mb for _, mb in processes):.0f} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
