"""Model lifetime on the real model: leases keep native memory alive under every call,
and closing, unloading or timing out answers every caller instead of leaving it waiting.

Decodes are held back by taking the model's own decode lock from the test (the real
backend, stalled), so what is queued at the moment of a close is exact, not a race.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from embellama import AsyncEmbeddingEngine, EmbeddingCache, EmbeddingEngine, ModelConfig
from embellama.config import ModelSpec, ServiceLimits, Truncation
from embellama.errors import (
    EngineClosedError,
    ModelUnloadingError,
    NoWorkerError,
    RequestTimeoutError,
)
from embellama.model.loaded import LoadedModel
from embellama.options import EmbedOptions
from embellama.pipeline import ServedModel
from embellama.server.state import Deployment, ServerState

BIG_TEXT = "hello world, tokenize me " * 200_000  # 5 MB: ~1 s of tokenizing


@contextmanager
def decodes_stalled(served: ServedModel) -> Iterator[None]:
    """Hold the model's decode lock: a batch handed to the backend waits in its thread."""
    lock = served.model._lock
    lock.acquire()
    try:
        yield
    finally:
        lock.release()


async def _until(condition: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.002)


def test_close_waits_for_a_tokenizer_call_on_another_thread(minilm_gguf: Path) -> None:
    model = LoadedModel(ModelConfig(path=minilm_gguf), inference=False)
    result: list[int] = []
    worker = threading.Thread(
        target=lambda: result.append(len(model.tokenizer.encode_text(BIG_TEXT)))
    )
    worker.start()
    deadline = time.monotonic() + 10
    while model.leases.held == 0:  # the tokenizer call holds a lease for its whole run
        assert worker.is_alive() and time.monotonic() < deadline, "no lease was held"
        time.sleep(0.0005)
    closer = threading.Thread(target=model.close)
    closer.start()
    time.sleep(0.05)
    assert worker.is_alive() == closer.is_alive(), "close() returned under a running call"
    worker.join(30)
    closer.join(30)
    assert result == [1_200_002]  # the call finished on intact memory
    assert model.leases.held == 0 and model.leases.retired


def test_every_native_call_after_close_is_a_typed_error(minilm_gguf: Path) -> None:
    model = LoadedModel(ModelConfig(path=minilm_gguf), inference=False)
    tokenizer = model.tokenizer
    model.close()
    calls: dict[str, Callable[[], object]] = {
        "encode_text": lambda: tokenizer.encode_text("hello"),
        "encode_with_pieces": lambda: tokenizer.encode_with_pieces("hello"),
        "detokenize": lambda: tokenizer.detokenize([101, 102]),
        "pieces": lambda: tokenizer.pieces([101]),
        "prepare": lambda: tokenizer.prepare(["hello"], Truncation.NONE),
        "prepare_pairs": lambda: tokenizer.prepare_pairs("q", ["d"], Truncation.END),
        "decode": lambda: model.decode([tokenizer.check_ids([101, 102])]),
    }
    for name, call in calls.items():
        with pytest.raises(ModelUnloadingError, match="being unloaded"):
            call()
        assert name  # every call refused, none touched freed memory


def test_async_engine_closes_by_close_aclose_or_async_with(minilm_gguf: Path) -> None:
    """The lifecycle the README documents: `close()` (as on the blocking engine),
    `aclose()` and `async with` all free the models; closing twice is harmless."""

    async def scenario() -> None:
        for how in ("close", "aclose", "with"):
            engine = await AsyncEmbeddingEngine.create()
            await engine.load_model(ModelConfig(path=minilm_gguf, name="m"))
            if how == "with":
                async with engine:
                    assert (await engine.embed("x")).shape == (384,)
            else:
                await getattr(engine, how)()
                await getattr(engine, how)()
            assert engine.list_models() == []
            with pytest.raises(EngineClosedError):
                await engine.embed("x")

    asyncio.run(scenario())


def test_aclose_fails_every_queued_and_running_embed(minilm_gguf: Path) -> None:
    async def scenario() -> tuple[list[Any], float]:
        engine = await AsyncEmbeddingEngine.create()
        await engine.load_model(ModelConfig(path=minilm_gguf, name="m"))
        served = engine.embedder("m")
        with decodes_stalled(served):
            calls = [asyncio.create_task(engine.embed(f"text {i}", "m")) for i in range(40)]
            await _until(lambda: served.scheduler.queued_requests == 40)
            closing = asyncio.create_task(engine.aclose())
            started = time.monotonic()
            # Answered while the decode is still stuck: nobody waits for it.
            results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
            answered = time.monotonic() - started
        await asyncio.wait_for(closing, 30)
        with pytest.raises(EngineClosedError):
            await engine.embed("after close", "m")
        return results, answered

    results, answered = asyncio.run(scenario())
    assert all(isinstance(result, EngineClosedError) for result in results), results
    assert answered < 2.0


def test_close_from_another_thread_fails_the_blocked_caller(minilm_gguf: Path) -> None:
    engine = EmbeddingEngine.from_path(minilm_gguf, name="m")
    served = engine.engine.embedder("m")
    outcome: list[BaseException | None] = []

    def caller() -> None:
        try:
            engine.embed(["blocked in a decode"] * 3)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    with decodes_stalled(served):
        blocked = threading.Thread(target=caller)
        blocked.start()
        deadline = time.monotonic() + 10
        while served.scheduler.queued_requests == 0:
            assert time.monotonic() < deadline
            time.sleep(0.005)
        closer = threading.Thread(target=engine.close)
        closer.start()
        blocked.join(5)  # the decode is still stuck: the caller is answered anyway
        assert not blocked.is_alive(), "the caller is still blocked after close()"
    closer.join(30)
    assert not closer.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], EngineClosedError), outcome
    with pytest.raises(EngineClosedError):
        engine.embed("after close")


def test_a_retired_model_refuses_a_caller_that_resolved_it_before(minilm_gguf: Path) -> None:
    """The server's race: a request resolved the model, then an unload retired it."""

    async def scenario() -> None:
        async with await AsyncEmbeddingEngine.create() as engine:
            await engine.load_model(ModelConfig(path=minilm_gguf, name="m"))
            served = engine.embedder("m")
            await engine.unload_model("m")
            with pytest.raises(ModelUnloadingError):
                await asyncio.wait_for(served.embed(["late"], EmbedOptions()), 5)
            with pytest.raises(ModelUnloadingError):
                await asyncio.wait_for(served.embed_per_token(["late"], Truncation.NONE), 5)

    asyncio.run(scenario())


def test_request_timeout_bounds_a_single_flight_waiter(minilm_gguf: Path) -> None:
    """B waits on A's in-flight keys; A times out; B must not start a second timeout."""
    timeout = 1.0

    async def scenario() -> tuple[float, float, BaseException | None, BaseException | None]:
        limits = ServiceLimits(request_timeout=timeout)
        engine = AsyncEmbeddingEngine(limits, cache=EmbeddingCache.create("16MB"))
        async with engine:
            await engine.load_model(ModelConfig(path=minilm_gguf, name="m"))
            served = engine.embedder("m")
            texts = [f"single flight {i}" for i in range(8)]

            async def timed(delay: float) -> tuple[float, BaseException | None]:
                await asyncio.sleep(delay)
                started = time.monotonic()
                try:
                    await engine.embed(texts, "m")
                    return time.monotonic() - started, None
                except Exception as exc:
                    return time.monotonic() - started, exc

            with decodes_stalled(served):
                (a, a_error), (b, b_error) = await asyncio.gather(timed(0), timed(0.6 * timeout))
        return a, b, a_error, b_error

    a, b, a_error, b_error = asyncio.run(scenario())
    assert isinstance(a_error, RequestTimeoutError) and isinstance(b_error, RequestTimeoutError)
    assert a < timeout * 1.2, a
    assert b < timeout * 1.2, f"the waiter took {b:.2f} s with request_timeout={timeout}"


def test_a_drain_that_times_out_fails_what_is_still_waiting(minilm_gguf: Path) -> None:
    async def scenario() -> tuple[str, object, float]:
        config = ModelConfig(path=minilm_gguf, name="m")
        state = ServerState(Deployment(models=(ModelSpec(config),)))
        await state.start()
        served = state.embedder("m")
        try:
            with decodes_stalled(served):
                stuck = asyncio.create_task(served.embed(["stuck"], EmbedOptions()))
                await _until(lambda: served.scheduler.queued_requests == 1)
                idle = await state.drain(timeout=0.2)
                started = time.monotonic()
                error = await asyncio.wait_for(asyncio.gather(stuck, return_exceptions=True), 5)
                return idle, error[0], time.monotonic() - started
        finally:
            await state.stop()

    idle, error, answered = asyncio.run(scenario())
    assert idle == "timeout"
    assert isinstance(error, NoWorkerError) and "drain timeout" in str(error)
    assert answered < 1.0


def test_an_undrain_after_a_timed_out_drain_serves_again(minilm_gguf: Path) -> None:
    """The timed-out drain closed the model's queue; the undrain opens it again."""

    async def scenario() -> tuple[str, int]:
        config = ModelConfig(path=minilm_gguf, name="m")
        state = ServerState(Deployment(models=(ModelSpec(config),)))
        await state.start()
        served = state.embedder("m")
        try:
            with decodes_stalled(served):
                stuck = asyncio.create_task(served.embed(["stuck"], EmbedOptions()))
                await _until(lambda: served.scheduler.queued_requests == 1)
                status = await state.drain(timeout=0.2)
                await asyncio.gather(stuck, return_exceptions=True)
            assert state.undrain() is True and not state.draining
            result = await asyncio.wait_for(served.embed(["again"], EmbedOptions()), 10)
            return status, len(result.vectors)
        finally:
            await state.stop()

    assert asyncio.run(scenario()) == ("timeout", 1)


def test_an_undrain_during_a_drain_ends_it_without_failing_the_work(minilm_gguf: Path) -> None:
    async def scenario() -> tuple[str, int]:
        config = ModelConfig(path=minilm_gguf, name="m")
        state = ServerState(Deployment(models=(ModelSpec(config),)))
        await state.start()
        served = state.embedder("m")
        try:
            with decodes_stalled(served):
                stuck = asyncio.create_task(served.embed(["waits"], EmbedOptions()))
                await _until(lambda: served.scheduler.queued_requests == 1)
                draining = asyncio.create_task(state.drain(timeout=30))
                await _until(lambda: state.draining)
                state.undrain()
                status = await asyncio.wait_for(draining, 5)
            result = await asyncio.wait_for(stuck, 10)
            return status, len(result.vectors)
        finally:
            await state.stop()

    assert asyncio.run(scenario()) == ("undrained", 1)
