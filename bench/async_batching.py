"""Cross-request batching in the library: do 16 concurrent callers share decodes?

The same texts, three ways, on one engine, alternated per round (A B C, C B A, ...):
one call with all of them; 16 asyncio callers of `AsyncEmbeddingEngine`, each
embedding its share one text at a time; 16 threads doing the same through the
blocking `EmbeddingEngine`. Writes bench/async_batching.md.

    python bench/async_batching.py [--rounds 6] [--count 800]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.batch_budget import machine
from bench.corpus import short_texts
from embellama import (
    AsyncEmbeddingEngine,
    EmbeddingEngine,
    EngineConfig,
    ModelConfig,
    prepare_default_model,
)

OUT = Path(__file__).resolve().parent
CALLERS = 16


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--count", type=int, default=800)
    args = parser.parse_args()
    texts = short_texts(args.count, seed=17)
    shares = [texts[i::CALLERS] for i in range(CALLERS)]
    path = prepare_default_model().path

    async def measure() -> dict[str, list[float]]:
        config = EngineConfig(models=(ModelConfig(path=path),))
        async with await AsyncEmbeddingEngine.create(config) as engine:

            async def one_call() -> None:
                await engine.embed(texts)

            async def callers() -> None:
                async def caller(share: list[str]) -> None:
                    for text in share:
                        await engine.embed(text)

                await asyncio.gather(*(caller(share) for share in shares))

            async def threads() -> None:
                await asyncio.to_thread(threaded, sync_engine.embed)

            runs = {
                "one call with all texts": one_call,
                f"{CALLERS} async callers, one text per call": callers,
                f"{CALLERS} threads (blocking engine), one text per call": threads,
            }
            await one_call()  # warm-up
            samples: dict[str, list[float]] = {name: [] for name in runs}
            for round_index in range(args.rounds):
                names = list(runs) if round_index % 2 == 0 else list(runs)[::-1]
                for name in names:
                    started = time.perf_counter()
                    await runs[name]()
                    samples[name].append(len(texts) / (time.perf_counter() - started))
            return samples

    def threaded(embed: Callable[[str], object]) -> None:
        def caller(share: list[str]) -> None:
            for text in share:
                embed(text)

        with ThreadPoolExecutor(CALLERS) as pool:
            list(pool.map(caller, shares))

    with EmbeddingEngine.from_path(path) as sync_engine:
        samples = asyncio.run(measure())
    baseline = samples["one call with all texts"]
    lines = [
        "# Cross-request batching in the library",
        "",
        f"Machine: {machine()}. all-MiniLM-L6-v2 F16, default threads and batching; "
        f"{len(texts)} short texts (8-40 words, bench/corpus.py). {args.rounds} rounds, "
        "order reversed every other round; texts/s, median (min-max); the ratio is per "
        "round against the one-call run of the same round.",
        "",
        "Reproduce: `python bench/async_batching.py`",
        "",
        "| how | texts/s | vs one call |",
        "|---|---:|---:|",
    ]
    for name, values in samples.items():
        ratios = [v / b for v, b in zip(values, baseline, strict=True)]
        lines.append(
            f"| {name} | {statistics.median(values):.1f} ({min(values):.0f}-{max(values):.0f})"
            f" | {statistics.median(ratios):.2f}× ({min(ratios):.2f}-{max(ratios):.2f}) |"
        )
    (OUT / "async_batching.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
