"""The corpus job on each engine against ONNX Runtime run directly (issue 22's goal for
the corpus job): rows/s of `embellama embed --input x.jsonl --output y.parquet` with its
defaults and `--engine onnxruntime` or `--engine llama.cpp`, beside ONNX Runtime's own
throughput on the same texts in-process (bench/engines.py's `onnx_direct`: length-sorted
batches of 32, numpy mean pooling, no files). ABBA over the three rows; each job runs
alone (the in-process session is closed while a job runs). Writes bench/engines_corpus.md.

    python bench/engines_corpus.py [--rounds 2] [--texts 10000]
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
from bench.corpus import short_texts
from bench.corpus_job import _job, _write
from bench.engines import onnx_direct
from bench.load import HERE, THREADS
from embellama import EmbeddingEngine, prepare_default_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--texts", type=int, default=10_000)
    args = parser.parse_args()
    model = prepare_default_model().path
    texts = short_texts(args.texts, seed=2026)
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        source = _write(Path(scratch) / "corpus.jsonl", texts)
        output = Path(scratch) / "out.parquet"

        def direct() -> float:
            tokenizer = EmbeddingEngine.from_path(model, n_threads=1)
            embed = onnx_direct(model, THREADS, tokenizer)
            embed(texts[:200])  # warm-up
            started = time.perf_counter()
            embed(texts)
            rate = len(texts) / (time.perf_counter() - started)
            tokenizer.close()
            return rate

        rows: dict[str, Callable[[], float]] = {
            "`embellama embed --engine onnxruntime`": lambda: _job(
                model, source, output, "--engine", "onnxruntime"
            )[0],
            "`embellama embed --engine llama.cpp`": lambda: _job(
                model, source, output, "--engine", "llama.cpp"
            )[0],
            "ONNX Runtime directly, in-process, no files": direct,
        }
        for round_index in range(args.rounds):
            names = list(rows) if round_index % 2 == 0 else list(reversed(rows))
            for name in names:
                figures.setdefault(name, []).append(rows[name]())
                print(f"round {round_index} {name}: {figures[name][-1]:.0f}/s", flush=True)
    direct_rates = figures["ONNX Runtime directly, in-process, no files"]
    lines = [
        "# The corpus job on each engine",
        "",
        f"Machine: {machine()}. all-MiniLM-L6-v2 F16, {THREADS} threads, {args.texts:,} texts "
        f"of 8-40 words (bench.corpus short_texts), {args.rounds} ABBA rounds; the job's "
        "rows/s is what it prints (reading, embedding and writing Parquet; not the "
        "interpreter's start or the model load).",
        "",
        f"Reproduce: `python bench/engines_corpus.py --rounds {args.rounds} --texts {args.texts}`",
        "",
        "| run | rows/s, median (min-max) | / ONNX Runtime directly |",
        "|---|---:|---:|",
    ]
    for name, values in figures.items():
        ratios = [a / b for a, b in zip(values, direct_rates, strict=True)]
        lines.append(
            f"| {name} | {statistics.median(values):.0f} ({min(values):.0f}-{max(values):.0f})"
            f" | {statistics.median(ratios):.2f}× |"
        )
    (HERE / "engines_corpus.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
