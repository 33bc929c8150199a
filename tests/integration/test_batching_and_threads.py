"""Packing many inputs changes neither their order nor (beyond rounding) their vectors,
the same call twice gives the same bits, and the engine is safe to call from many
threads and from asyncio at once."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from embellama import (
    AsyncEmbeddingEngine,
    BatchingConfig,
    EmbeddingEngine,
    EngineConfig,
    ModelConfig,
)
from tests.tolerances import assert_batch_invariant

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "search",
    "embedding",
    "vector",
    "model",
    "retrieval",
    "local",
    "fast",
    "exact",
    "boring",
    "operate",
    "Ünïcödé",
    "漢字",
    "🙂",
    "code()",
    "{x:",
    "1}",
]


def _texts(count: int, seed: int, max_words: int = 120) -> list[str]:
    rng = random.Random(seed)
    return [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, max_words))) for _ in range(count)
    ]


@pytest.mark.slow
@pytest.mark.parametrize(("budget", "sequences"), [(256, 16), (512, 64), (100, 3), (2048, 128)])
def test_batch_invariance(
    engine: EmbeddingEngine, minilm_gguf: Path, budget: int, sequences: int
) -> None:
    texts = _texts(120, seed=budget)
    alone = np.stack([engine.embed(text) for text in texts])
    config = BatchingConfig(max_batch_tokens=budget, max_batch_sequences=sequences)
    with EmbeddingEngine.from_path(minilm_gguf, batching=config) as packed:
        batched = packed.embed(texts)
    assert_batch_invariant(batched, alone)


def test_same_call_twice_gives_the_same_bits(engine: EmbeddingEngine) -> None:
    texts = _texts(40, seed=11)
    first = engine.embed(texts)
    second = engine.embed(texts)
    assert first.tobytes() == second.tobytes()
    assert engine.embed(texts[0]).tobytes() == engine.embed(texts[0]).tobytes()


def test_order_is_input_order(engine: EmbeddingEngine) -> None:
    texts = _texts(40, seed=1)
    batched = engine.embed(texts)
    reversed_batch = engine.embed(texts[::-1])
    assert_batch_invariant(batched, reversed_batch[::-1])
    assert np.abs(batched[0] - batched[1]).max() > 1e-3


def test_result_details(engine: EmbeddingEngine) -> None:
    result = engine.embed_with_details(["one", "two words"], model="default")
    assert result.vectors.shape == (2, 384)
    assert result.vectors.dtype == np.float32
    assert result.token_counts == (3, 4)
    assert result.total_tokens == 7
    assert len(result) == 2
    assert result.model == "minilm"
    assert result.timings.inference > 0
    assert result.timings.total >= result.timings.inference


def test_many_threads_get_their_own_answers(engine: EmbeddingEngine) -> None:
    texts = _texts(48, seed=7, max_words=40)
    expected = engine.embed(texts)
    barrier = threading.Barrier(8)

    def work(worker: int) -> list[tuple[int, np.ndarray]]:
        barrier.wait()
        mine = list(range(worker, len(texts), 8))
        vectors = engine.embed([texts[i] for i in mine])
        return list(zip(mine, vectors, strict=True))

    with ThreadPoolExecutor(8) as pool:
        results = [pair for chunk in pool.map(work, range(8)) for pair in chunk]
    assert len(results) == len(texts)
    for index, vector in results:
        assert_batch_invariant(vector, expected[index])


def test_async_engine_does_not_block_the_loop(minilm_gguf: Path) -> None:
    texts = _texts(200, seed=3, max_words=80)

    async def scenario() -> tuple[int, float, np.ndarray]:
        config = EngineConfig(models=(ModelConfig(path=minilm_gguf),))
        async with await AsyncEmbeddingEngine.create(config) as engine:
            ticks = 0
            worst_gap = 0.0

            async def ticker() -> None:
                nonlocal ticks, worst_gap
                last = time.perf_counter()
                while True:
                    await asyncio.sleep(0.005)
                    now = time.perf_counter()
                    worst_gap = max(worst_gap, now - last)
                    last = now
                    ticks += 1

            task = asyncio.create_task(ticker())
            vectors = await engine.embed(texts)
            task.cancel()
            return ticks, worst_gap, vectors

    ticks, worst_gap, vectors = asyncio.run(scenario())
    assert vectors.shape == (200, 384)
    assert ticks > 10
    assert worst_gap < 0.1, worst_gap


def test_thread_count_does_not_change_vectors(minilm_gguf: Path) -> None:
    """Workers change their thread count per decode under load; numerics must not care."""
    texts = _texts(30, seed=5)
    with EmbeddingEngine.from_path(minilm_gguf, n_threads=1) as one:
        single = one.embed(texts)
    with EmbeddingEngine.from_path(minilm_gguf, n_threads=2) as two:
        double = two.embed(texts)
    np.testing.assert_array_equal(single, double)
