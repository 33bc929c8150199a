"""Sweep the decode token budget on 1,000 mixed texts; write bench/batch_budget.md.

Every configuration, plus llama-cpp-python's own `Llama.embed` as the baseline, is
measured in the same process, alternately, several rounds; medians and ratios are
reported because this machine's speed drifts 10-30 % between runs.

    python bench/batch_budget.py [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.corpus import mixed_texts
from embellama import BatchingConfig, EmbeddingEngine, prepare_default_model

CONFIGS = [(1, 1), (64, 16), (128, 16), (256, 8), (256, 16), (512, 32), (1024, 64), (2048, 128)]
OUT = Path(__file__).resolve().parent


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        model = next(
            line.split(":", 1)[1].strip()
            for line in lscpu.splitlines()
            if line.startswith("Model name")
        )
    except (OSError, StopIteration):
        model = platform.processor() or "unknown"
    import os

    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()

    from llama_cpp import Llama

    path = prepare_default_model().path
    texts = mixed_texts(args.count)
    runners: dict[str, Callable[[list[str]], object]] = {}
    engines = []
    for budget, sequences in CONFIGS:
        engine = EmbeddingEngine.from_path(
            path, n_threads=args.threads, batching=BatchingConfig(budget, sequences)
        )
        engines.append(engine)
        runners[f"embellama {budget} tok / {sequences} seq"] = engine.embed
    llama = Llama(
        str(path),
        embedding=True,
        n_ctx=512,
        n_batch=512,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        verbose=False,
    )
    runners["llama-cpp-python Llama.embed (n_batch 512)"] = lambda t: llama.embed(t, normalize=True)

    token_total = sum(engines[0].count_tokens(texts))
    for run in runners.values():  # warm-up
        run(texts[:50])
    samples: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(args.rounds):
        for name, run in runners.items():
            started = time.perf_counter()
            run(texts)
            samples[name].append(len(texts) / (time.perf_counter() - started))

    baseline = statistics.median(samples["llama-cpp-python Llama.embed (n_batch 512)"])
    rows = [(name, statistics.median(v), min(v), max(v)) for name, v in samples.items()]
    lines = [
        "# Decode token budget sweep",
        "",
        f"Machine: {machine()}; {args.threads} llama.cpp threads; all-MiniLM-L6-v2 F16.",
        f"Workload: {len(texts)} mixed texts (bench/corpus.py, 70 % short, 20 % medium, 10 % long),"
        f" {token_total} tokens. {args.rounds} rounds, configurations alternated within each round.",
        "",
        "| configuration | texts/s (median) | min | max | vs Llama.embed |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {n} | {m:.1f} | {lo:.1f} | {hi:.1f} | {m / baseline:.2f}x |" for n, m, lo, hi in rows
    ]
    best = max(rows[:-1], key=lambda row: row[1])
    lines += [
        "",
        f"Fastest embellama configuration in this run: **{best[0]}** ({best[1]:.1f} texts/s).",
        "",
    ]
    (OUT / "batch_budget.md").write_text("\n".join(lines))
    (OUT / "batch_budget.json").write_text(
        json.dumps({"machine": machine(), "samples": samples}, indent=1)
    )
    print("\n".join(lines))
    for engine in engines:
        engine.close()


if __name__ == "__main__":
    main()
