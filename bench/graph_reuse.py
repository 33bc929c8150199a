"""llama.cpp's graph reuse across decodes of the same shape (issue 22, lever 2): the
default model on `--engine llama.cpp`, llama.cpp as pinned (reuse on) against
`LLAMA_GRAPH_REUSE_DISABLE=1`. Each run is a fresh process (the variable is read when a
context is created): one call of N texts of 8-40 words, then texts one at a time;
ABBA over the runs. Prints a markdown table for bench/notes.md.

    python bench/graph_reuse.py [--rounds 4] [--texts 800]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(texts: int, singles: int) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.engines import texts as corpus_of
    from embellama import EmbeddingEngine, prepare_default_model

    corpus = corpus_of(texts)
    with EmbeddingEngine.from_path(
        prepare_default_model().path, engine="llama.cpp", n_threads=2
    ) as engine:
        engine.embed(corpus[:50])  # warm-up
        started = time.perf_counter()
        engine.embed(corpus)
        rate = len(corpus) / (time.perf_counter() - started)
        alone = []
        for text in corpus[:singles]:
            started = time.perf_counter()
            engine.embed([text])
            alone.append((time.perf_counter() - started) * 1000)
    print(json.dumps({"rate": rate, "ms": statistics.median(alone)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--texts", type=int, default=800)
    parser.add_argument("--singles", type=int, default=100)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.texts, args.singles)
        return
    variants = {
        "reuse on (as pinned)": {},
        "LLAMA_GRAPH_REUSE_DISABLE=1": {"LLAMA_GRAPH_REUSE_DISABLE": "1"},
    }
    figures: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
    for round_index in range(args.rounds):
        names = list(variants) if round_index % 2 == 0 else list(reversed(variants))
        for name in names:
            command = [sys.executable, __file__, "--child", "--texts", str(args.texts)]
            command += ["--singles", str(args.singles)]
            done = subprocess.run(
                command,
                env={**os.environ, **variants[name]},
                capture_output=True,
                text=True,
                check=True,
            )
            figures[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(f"{args.texts} texts, {args.rounds} ABBA rounds, 2 threads, llama.cpp engine\n")
    print("| llama.cpp | one call, texts/s | one text alone, ms (median) |")
    print("|---|---:|---:|")
    for name, runs in figures.items():
        rates, times = [r["rate"] for r in runs], [r["ms"] for r in runs]
        print(f"| {name} | {min(rates):.0f}-{max(rates):.0f} | {min(times):.2f}-{max(times):.2f} |")


if __name__ == "__main__":
    main()
