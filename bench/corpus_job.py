"""Corpus job throughput against the in-process engine limit, and how to spend 2 cores.

1. 20,000 texts (bench.corpus short_texts: 8-40 words): the engine limit (one
   `engine.embed` call over all texts, in-process, no files) against
   `embellama embed --input x.jsonl --output y.parquet` with its defaults, ABBA.
2. 5,000 texts: the local job with decodes in this process (default), in 1 worker
   process, and in 2 workers x 1 thread; the Ray Data job with 1 actor x 2 threads and
   with 2 actors x 1 thread (each run starts its local Ray cluster: the wall time is
   reported beside the job's own rows/s).

The job's rows/s is what the command prints (reading, embedding and writing; not the
interpreter's start or the model load). Writes bench/corpus_job.md.

    python bench/corpus_job.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.batch_budget import machine
from bench.corpus import short_texts
from bench.load import HERE, THREADS
from embellama import EmbeddingEngine, prepare_default_model

_RATE = re.compile(r"embedded in ([0-9.]+) s \(([0-9]+) rows/s\)")


def _write(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    return path


def _job(model: Path, source: Path, output: Path, *flags: str) -> tuple[float, float]:
    """(rows/s the job reports, wall seconds of the whole command)."""
    command = [sys.executable, "-m", "embellama", "embed", "--input", str(source)]
    command += ["--output", str(output), "--model-path", str(model), "--id-column", "id"]
    command += ["--no-progress", "--overwrite", *flags]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - started
    match = _RATE.search(done.stderr)
    assert match, done.stderr[-2000:]
    return float(match.group(2)), wall


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    model = prepare_default_model().path
    lines: list[str] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        texts = short_texts(20_000, seed=2026)
        source = _write(work / "corpus-20k.jsonl", texts)
        engine = EmbeddingEngine.from_path(model, n_threads=THREADS)
        engine.embed(texts[:200])  # warm-up
        limit: list[float] = []
        job: list[float] = []
        for round_index in range(args.rounds):
            order = ("engine", "job") if round_index % 2 == 0 else ("job", "engine")
            for name in order:
                if name == "engine":
                    started = time.perf_counter()
                    engine.embed(texts)
                    limit.append(len(texts) / (time.perf_counter() - started))
                    print(f"engine limit: {limit[-1]:.0f} texts/s", flush=True)
                else:
                    engine.close()  # nothing else may share the 2 cores
                    job.append(_job(model, source, work / "out.parquet")[0])
                    print(f"corpus job: {job[-1]:.0f} rows/s", flush=True)
                    engine = EmbeddingEngine.from_path(model, n_threads=THREADS)
        engine.close()
        ratios = [j / e for j, e in zip(job, limit, strict=True)]
        lines += [
            "# Corpus job throughput",
            "",
            f"Machine: {machine()}. all-MiniLM-L6-v2 F16, {THREADS} threads.",
            "",
            "Reproduce: `python bench/corpus_job.py" + f" --rounds {args.rounds}`",
            "",
            "## Against the engine limit (20,000 texts of 8-40 words, ABBA)",
            "",
            "| run | texts/s, median (min-max) |",
            "|---|---:|",
            f"| engine limit: one `embed` call, in-process | {statistics.median(limit):.0f} "
            f"({min(limit):.0f}-{max(limit):.0f}) |",
            f"| `embellama embed --output x.parquet` (defaults) | {statistics.median(job):.0f} "
            f"({min(job):.0f}-{max(job):.0f}) |",
            "",
            f"Job / limit per round: median **{statistics.median(ratios):.2f}** "
            f"({min(ratios):.2f}-{max(ratios):.2f}); the target is >= 0.90.",
            "",
            "## How to spend the cores (5,000 texts)",
            "",
            "| run | rows/s (job), median | wall s, median |",
            "|---|---:|---:|",
        ]
        small = _write(work / "corpus-5k.jsonl", texts[:5000])
        variants = {
            "local, decodes in this process (--workers 0)": ["--workers", "0"],
            "local, --workers 1": ["--workers", "1"],
            "local, --workers 2 --threads-per-worker 1 (default on 2 cores)": [
                "--workers",
                "2",
                "--threads-per-worker",
                "1",
            ],
            "Ray Data, 1 actor x 2 threads": ["--ray", "--ray-actors", "1"],
            "Ray Data, 2 actors x 1 thread": [
                "--ray",
                "--ray-actors",
                "2",
                "--threads-per-worker",
                "1",
            ],
        }
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        for round_index in range(args.rounds):
            names = list(variants) if round_index % 2 == 0 else list(variants)[::-1]
            for name in names:
                output = work / ("ray-out.parquet" if "Ray" in name else "out.parquet")
                samples[name].append(_job(model, small, output, *variants[name]))
                print(f"{name}: {samples[name][-1][0]:.0f} rows/s", flush=True)
        for name, runs in samples.items():
            rates = [r for r, _ in runs]
            walls = [w for _, w in runs]
            lines.append(
                f"| {name} | {statistics.median(rates):.0f} | {statistics.median(walls):.1f} |"
            )
    (HERE / "corpus_job.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
