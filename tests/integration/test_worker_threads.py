"""A pool of several workers lends the idle ones' threads to a batch that is all the work
there is, and never runs more threads than it was given: real worker processes, real
decodes, the MiniLM GGUF."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np

from embellama.backends.base import Runner
from embellama.backends.factory import default_backends
from embellama.backends.messages import DecodeDone, DecodeJob
from embellama.backends.pool import WorkerPool
from embellama.config import InferenceEngine, ModelConfig, Pooling, ServiceLimits
from embellama.model.loaded import LoadedModel

# Lending changes a decode's llama.cpp threads; ONNX Runtime fixes its own at load.
LLAMA_CPP = InferenceEngine.LLAMA_CPP


def test_a_pool_on_onnx_runtime_lends_no_threads(minilm_gguf: Path) -> None:
    """Its workers cannot use lent threads: lending would only hold other batches back."""
    for engine, lends in ((InferenceEngine.AUTO, False), (LLAMA_CPP, True)):
        config = ModelConfig(path=minilm_gguf, engine=engine)
        model = LoadedModel(config, inference=False)
        try:
            pool = default_backends.build(model, config, ServiceLimits(workers=2))
            assert isinstance(pool, WorkerPool) and pool.lends_threads is lends, engine
        finally:
            model.close()


def _ids(minilm_gguf: Path, texts: list[str]) -> list[np.ndarray]:
    model = LoadedModel(ModelConfig(path=minilm_gguf), inference=False)
    try:
        return [model.tokenizer.encode_text(text) for text in texts]
    finally:
        model.close()


async def _runners(pool: WorkerPool) -> list[Runner]:
    """One runner per worker, as the scheduler's lanes get them."""
    seen: list[Runner] = []

    async def feeder(runner: Runner) -> None:
        if runner not in seen:
            seen.append(runner)
        await asyncio.Event().wait()

    await pool.start(feeder)
    while len(seen) < pool.count:
        await asyncio.sleep(0.01)
    return seen


def test_a_sole_batch_borrows_threads_and_others_wait_for_them(minilm_gguf: Path) -> None:
    long_text = " ".join(["retrieval augmented generation over local embeddings"] * 40)
    big = _ids(minilm_gguf, [long_text])[0][:120]
    small = _ids(minilm_gguf, ["a short query"])[0]

    async def scenario() -> None:
        pool = WorkerPool(ModelConfig(path=minilm_gguf, n_threads=1, engine=LLAMA_CPP), 2)
        try:
            first, second = await _runners(pool)
            # Alone and sole: the whole pool's threads; otherwise the worker's own.
            lent = await first.run(DecodeJob(1, [small], Pooling.MEAN, sole=True))
            own = await first.run(DecodeJob(2, [small], Pooling.MEAN, sole=False))
            assert (lent.threads, own.threads) == (2, 1)
            np.testing.assert_array_equal(lent.vectors, own.vectors)  # same bits

            # While a borrowed-thread decode runs, the other worker's batch waits for it,
            # although alone it would finish long before the big one.
            finished: dict[str, float] = {}

            async def timed(name: str, runner: Runner, job: DecodeJob) -> DecodeDone:
                done = await runner.run(job)
                finished[name] = time.perf_counter()
                return done

            borrower = asyncio.create_task(
                timed("big", first, DecodeJob(3, [big] * 4, Pooling.MEAN, sole=True))
            )
            await asyncio.sleep(0)  # the big job is in its worker's pipe
            other = await timed("small", second, DecodeJob(4, [small], Pooling.MEAN))
            done = await borrower
            assert (done.threads, other.threads) == (2, 1)
            assert finished["small"] >= finished["big"]
        finally:
            await pool.stop()

    asyncio.run(scenario())


def test_one_worker_never_changes_its_threads(minilm_gguf: Path) -> None:
    small = _ids(minilm_gguf, ["a short query"])[0]

    async def scenario() -> None:
        pool = WorkerPool(ModelConfig(path=minilm_gguf, n_threads=2, engine=LLAMA_CPP), 1)
        try:
            (only,) = await _runners(pool)
            done = await only.run(DecodeJob(1, [small], Pooling.MEAN, sole=True))
            assert done.threads == 2
        finally:
            await pool.stop()

    asyncio.run(scenario())
