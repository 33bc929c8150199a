"""The scheduler against a fake backend: packing, cross-request batching, retries,
poison inputs, abandoned work, aging and admission, in milliseconds and without a model."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import numpy as np
import pytest

from embellama.backends.messages import DecodeDone, DecodeJob
from embellama.batching.scheduler import Scheduled, Scheduler
from embellama.config import BatchingConfig, Pooling, QueueLimits
from embellama.errors import (
    InferenceError,
    InternalError,
    ModelUnloadingError,
    OverloadedError,
    PoisonInputError,
    RequestTimeoutError,
    WorkerCrashedError,
)

T = TypeVar("T")
POISON = 666


def seq(first: int, length: int = 4) -> np.ndarray:
    """A token sequence whose output is recognizable: the fake returns its first id."""
    return np.full(length, first, dtype=np.int32)


class FakeRunner:
    """Returns each sequence's first id as its vector; can fail, crash or stall on cue."""

    def __init__(self, failure: Callable[[DecodeJob], BaseException | None] | None = None) -> None:
        self.jobs: list[DecodeJob] = []
        self.failure = failure
        self.gate = asyncio.Event()
        self.gate.set()

    async def run(self, job: DecodeJob) -> DecodeDone:
        self.jobs.append(job)
        await self.gate.wait()
        await asyncio.sleep(0.001)
        error = self.failure(job) if self.failure else None
        if error is not None:
            raise error
        vectors = np.array([[float(s[0])] * 2 for s in job.sequences], dtype=np.float32)
        return DecodeDone(job.job_id, vectors, 0.001)

    def sequences_run(self) -> list[int]:
        return [int(s[0]) for job in self.jobs for s in job.sequences]


async def supervised(scheduler: Scheduler, runner: FakeRunner) -> None:
    """What a worker pool does: a lane whose worker died starts again."""
    while True:
        try:
            await scheduler.feed(runner)
        except WorkerCrashedError:
            continue


async def stop(lanes: list[asyncio.Task[None]]) -> None:
    """Cancel a test's lanes and wait for them, as a pool does when a worker goes."""
    for lane in lanes:
        lane.cancel()
    await asyncio.gather(*lanes, return_exceptions=True)


def run_with(
    runner: FakeRunner,
    body: Callable[[Scheduler], Awaitable[T]],
    limits: QueueLimits | None = None,
    batching: BatchingConfig | None = None,
) -> T:
    async def scenario() -> T:
        scheduler = Scheduler(batching or BatchingConfig(16, 4), limits or QueueLimits())
        lane = asyncio.create_task(supervised(scheduler, runner))
        try:
            return await body(scheduler)
        finally:
            await stop([lane])

    return asyncio.run(scenario())


def firsts(result: Scheduled) -> list[int]:
    return [int(vector[0]) for vector in result.outputs]


def test_outputs_in_input_order_and_batches_within_budget() -> None:
    runner = FakeRunner()
    lengths = [1, 9, 3, 7, 2, 5]

    async def body(scheduler: Scheduler) -> Scheduled:
        return await scheduler.run([seq(i, n) for i, n in enumerate(lengths)], Pooling.MEAN)

    result = run_with(runner, body)
    assert firsts(result) == list(range(len(lengths)))
    for job in runner.jobs:
        assert len(job.sequences) <= 4
        assert sum(map(len, job.sequences)) <= 16 or len(job.sequences) == 1


def test_concurrent_requests_share_decodes() -> None:
    runner = FakeRunner()
    runner.gate.clear()

    async def body(scheduler: Scheduler) -> list[Scheduled]:
        tasks = [asyncio.create_task(scheduler.run([seq(i, 2)], Pooling.MEAN)) for i in range(8)]
        await asyncio.sleep(0.01)  # all queued while the first decode is held
        runner.gate.set()
        return await asyncio.gather(*tasks)

    results = run_with(runner, body)
    assert [firsts(r) for r in results] == [[i] for i in range(8)]
    assert len(runner.jobs) < 8
    assert max(len(job.sequences) for job in runner.jobs) == 4


def test_a_failing_input_is_retried_alone_and_fails_only_its_request() -> None:
    runner = FakeRunner(
        lambda job: InferenceError("bad") if any(s[0] == POISON for s in job.sequences) else None
    )

    async def body(scheduler: Scheduler) -> tuple[Any, ...]:
        good = scheduler.run([seq(1), seq(2)], Pooling.MEAN)
        bad = scheduler.run([seq(POISON)], Pooling.MEAN)
        return await asyncio.gather(good, bad, return_exceptions=True)

    good, bad = run_with(runner, body)
    assert isinstance(good, Scheduled) and firsts(good) == [1, 2]
    assert isinstance(bad, InferenceError)
    alone = [job for job in runner.jobs if [int(s[0]) for s in job.sequences] == [POISON]]
    assert len(alone) == 1


def test_an_input_that_crashes_twice_is_refused_from_then_on() -> None:
    runner = FakeRunner(
        lambda job: (
            WorkerCrashedError("died") if any(s[0] == POISON for s in job.sequences) else None
        )
    )

    async def body(scheduler: Scheduler) -> tuple[BaseException, BaseException, Scheduled, int]:
        with pytest.raises(PoisonInputError) as first:
            await scheduler.run([seq(3), seq(POISON, 5)], Pooling.MEAN)
        crashes = len(runner.jobs)
        with pytest.raises(PoisonInputError) as again:
            await scheduler.run([seq(4), seq(POISON, 5)], Pooling.MEAN)
        assert len(runner.jobs) == crashes  # refused before any worker saw it
        fine = await scheduler.run([seq(7)], Pooling.MEAN)
        return first.value, again.value, fine, scheduler.poison.refused

    first, again, fine, refused = run_with(runner, body)
    assert isinstance(first, PoisonInputError) and first.index == 1
    assert isinstance(again, PoisonInputError) and again.index == 1
    assert firsts(fine) == [7]
    assert refused == 1


def test_an_unexpected_exception_fails_that_batch_and_the_lane_goes_on() -> None:
    calls = {"n": 0}

    def once(job: DecodeJob) -> BaseException | None:
        calls["n"] += 1
        return ValueError("zip() argument 2 is shorter") if calls["n"] == 1 else None

    runner = FakeRunner(once)

    async def body(scheduler: Scheduler) -> Scheduled:
        with pytest.raises(InternalError, match="zip"):
            await scheduler.run([seq(1)], Pooling.MEAN)
        return await asyncio.wait_for(scheduler.run([seq(2)], Pooling.MEAN), 1.0)

    assert firsts(run_with(runner, body)) == [2]


def test_work_of_a_cancelled_request_is_never_computed() -> None:
    runner = FakeRunner()
    runner.gate.clear()

    async def body(scheduler: Scheduler) -> Scheduled:
        first = asyncio.create_task(scheduler.run([seq(1, 16)], Pooling.MEAN))
        gone = asyncio.create_task(scheduler.run([seq(9, 16)] * 5, Pooling.MEAN))
        await asyncio.sleep(0.01)
        gone.cancel()
        await asyncio.sleep(0.01)
        runner.gate.set()
        return await first

    assert firsts(run_with(runner, body)) == [1]
    assert 9 not in runner.sequences_run()


def test_timeout_drops_queued_work() -> None:
    runner = FakeRunner()
    runner.gate.clear()

    async def body(scheduler: Scheduler) -> int:
        with pytest.raises(RequestTimeoutError):
            await scheduler.run([seq(1, 16)] * 3, Pooling.MEAN)
        queued = scheduler.queued_requests
        runner.gate.set()
        await asyncio.sleep(0.02)
        return queued

    assert run_with(runner, body, QueueLimits(request_timeout=0.05)) == 0
    assert runner.sequences_run() == [1]  # only the decode already running


def test_bulk_requests_age_past_a_stream_of_small_ones() -> None:
    runner = FakeRunner()

    async def body(scheduler: Scheduler) -> float:
        stop = asyncio.Event()

        async def small_stream() -> None:
            while not stop.is_set():
                await asyncio.gather(*(scheduler.run([seq(1, 2)], Pooling.MEAN) for _ in range(4)))

        streams = [asyncio.create_task(small_stream()) for _ in range(4)]
        await asyncio.sleep(0.02)
        started = asyncio.get_running_loop().time()
        await scheduler.run([seq(2, 100)] * 3, Pooling.MEAN)  # > 256 tokens: the bulk lane
        waited = asyncio.get_running_loop().time() - started
        stop.set()
        await asyncio.gather(*streams)
        return waited

    waited = run_with(runner, body, QueueLimits(bulk_max_wait=0.05), BatchingConfig(128, 8))
    assert waited < 1.0


def test_admission_is_bounded_by_queued_tokens() -> None:
    runner = FakeRunner()
    runner.gate.clear()

    async def body(scheduler: Scheduler) -> tuple[int, list[int]]:
        held = asyncio.create_task(scheduler.run([seq(1, 80)], Pooling.MEAN))
        await asyncio.sleep(0.01)
        with pytest.raises(OverloadedError) as refused:
            await scheduler.run([seq(2, 50)], Pooling.MEAN)
        assert refused.value.retry_after > 0
        small = asyncio.create_task(scheduler.run([seq(3, 10)], Pooling.MEAN))
        await asyncio.sleep(0.01)
        queued = scheduler.queued_tokens
        runner.gate.set()
        return queued, [*firsts(await held), *firsts(await small)]

    queued, outputs = run_with(runner, body, QueueLimits(max_queued_tokens=100))
    assert queued == 90
    assert outputs == [1, 3]


def test_per_token_jobs_never_share_a_decode_with_pooled_ones() -> None:
    runner = FakeRunner()
    runner.gate.clear()

    async def body(scheduler: Scheduler) -> None:
        tasks: list[Coroutine[Any, Any, Scheduled]] = [
            scheduler.run([seq(1, 2)], Pooling.MEAN),
            scheduler.run([seq(2, 2)], Pooling.NONE),
            scheduler.run([seq(3, 2)], Pooling.MEAN),
        ]
        running = [asyncio.create_task(t) for t in tasks]
        await asyncio.sleep(0.01)
        runner.gate.set()
        await asyncio.gather(*running)

    run_with(runner, body)
    by_first = {int(s[0]): job for job in runner.jobs for s in job.sequences}
    assert by_first[2].pooling is Pooling.NONE and len(by_first[2].sequences) == 1
    assert by_first[1].pooling is by_first[3].pooling is Pooling.MEAN


def test_a_second_lane_takes_only_full_batches_while_the_first_runs() -> None:
    runner = FakeRunner()
    runner.gate.clear()

    async def scenario() -> None:
        scheduler = Scheduler(BatchingConfig(16, 4), QueueLimits())
        lanes = [asyncio.create_task(scheduler.feed(runner)) for _ in range(2)]
        first = asyncio.create_task(scheduler.run([seq(1)], Pooling.MEAN))
        await asyncio.sleep(0.01)
        small = [asyncio.create_task(scheduler.run([seq(n)], Pooling.MEAN)) for n in (2, 3)]
        await asyncio.sleep(0.01)
        assert len(runner.jobs) == 1  # two 4-token inputs do not fill a 16-token batch
        full = [asyncio.create_task(scheduler.run([seq(n)], Pooling.MEAN)) for n in (4, 5)]
        await asyncio.sleep(0.01)
        assert [len(job.sequences) for job in runner.jobs] == [1, 4]  # now it is full
        runner.gate.set()
        await asyncio.gather(first, *small, *full)
        await stop(lanes)

    asyncio.run(scenario())


def test_a_batch_cut_off_by_a_dying_lane_is_requeued_not_lost() -> None:
    runner = FakeRunner()
    runner.gate.clear()

    async def scenario() -> list[int]:
        scheduler = Scheduler(BatchingConfig(16, 4), QueueLimits())
        lane = asyncio.create_task(scheduler.feed(runner))
        request = asyncio.create_task(scheduler.run([seq(1), seq(2)], Pooling.MEAN))
        await asyncio.sleep(0.01)
        assert len(runner.jobs) == 1
        lane.cancel()  # e.g. the pool stops that worker's lanes
        await asyncio.gather(lane, return_exceptions=True)
        runner.gate.set()
        replacement = asyncio.create_task(scheduler.feed(runner))
        result = await asyncio.wait_for(request, 1.0)
        replacement.cancel()
        await asyncio.gather(replacement, return_exceptions=True)
        return firsts(result)

    assert asyncio.run(scenario()) == [1, 2]


def test_a_batch_is_sole_only_when_nothing_else_is_queued_or_running() -> None:
    """`sole` lets a pool lend idle workers' threads; it must never be set on a batch
    that shares the machine with other work, or threads would exceed the cores."""
    runner = FakeRunner()
    runner.gate.clear()

    async def scenario() -> None:
        scheduler = Scheduler(BatchingConfig(16, 4), QueueLimits())
        lanes = [asyncio.create_task(scheduler.feed(runner)) for _ in range(2)]
        alone = asyncio.create_task(scheduler.run([seq(1)], Pooling.MEAN))
        await asyncio.sleep(0.01)
        # Two requests while the first runs: their batch is not all there is.
        later = [asyncio.create_task(scheduler.run([seq(n)] * 2, Pooling.MEAN)) for n in (2, 3)]
        await asyncio.sleep(0.01)
        runner.gate.set()
        await asyncio.gather(alone, *later)
        # One request of two inputs, once everything else finished: sole again.
        await scheduler.run([seq(4), seq(5)], Pooling.MEAN)
        await stop(lanes)

    asyncio.run(scenario())
    assert [job.sole for job in runner.jobs] == [True, False, True]
    assert [len(job.sequences) for job in runner.jobs] == [1, 4, 2]


def test_aged_bulk_and_small_work_take_turns() -> None:
    """Once bulk has waited past `bulk_max_wait`, it goes first every other batch: it
    keeps progressing, and a query waits behind at most one aged bulk batch."""
    runner = FakeRunner()

    async def scenario() -> None:
        scheduler = Scheduler(BatchingConfig(16, 4), QueueLimits(bulk_max_wait=0.0))
        bulk = asyncio.create_task(
            scheduler.run([seq(1000 + n) for n in range(70)], Pooling.MEAN)  # 280 tokens
        )
        small = [asyncio.create_task(scheduler.run([seq(n)], Pooling.MEAN)) for n in range(1, 7)]
        await asyncio.sleep(0)  # everything is queued before the lane starts
        lane = asyncio.create_task(scheduler.feed(runner))
        await asyncio.gather(bulk, *small)
        await stop([lane])

    asyncio.run(scenario())
    leaders = ["bulk" if int(job.sequences[0][0]) >= 1000 else "small" for job in runner.jobs]
    assert leaders[:4] == ["bulk", "small", "bulk", "small"]
    assert leaders[4:] == ["bulk"] * (len(leaders) - 4)  # no small work left
    assert sorted(runner.sequences_run()) == sorted([*range(1, 7), *range(1000, 1070)])


def test_a_second_lane_never_queues_bulk_work_in_a_busy_worker() -> None:
    runner = FakeRunner()
    runner.gate.clear()

    async def scenario() -> None:
        scheduler = Scheduler(BatchingConfig(16, 4), QueueLimits())
        lanes = [asyncio.create_task(scheduler.feed(runner)) for _ in range(2)]
        bulk = asyncio.create_task(scheduler.run([seq(1000 + n) for n in range(70)], Pooling.MEAN))
        await asyncio.sleep(0.01)
        assert len(runner.jobs) == 1  # full bulk batches wait for the worker to be free
        small = [asyncio.create_task(scheduler.run([seq(n)], Pooling.MEAN)) for n in range(1, 5)]
        await asyncio.sleep(0.01)
        assert [int(s[0]) for s in runner.jobs[1].sequences] == [1, 2, 3, 4]  # full, small
        runner.gate.set()
        await asyncio.gather(bulk, *small)
        await stop(lanes)

    asyncio.run(scenario())


def test_closing_fails_queued_and_running_requests_and_refuses_new_ones() -> None:
    """A stopping model answers everyone at once: the one decoding, the ones queued
    behind it, and whoever arrives afterwards, with the typed error, never a wait."""
    runner = FakeRunner()
    runner.gate.clear()  # the first batch stays "running"

    async def body(scheduler: Scheduler) -> tuple[list[Any], BaseException]:
        tasks = [asyncio.create_task(scheduler.run([seq(i, 8)], Pooling.MEAN)) for i in range(6)]
        await asyncio.sleep(0.01)
        assert runner.jobs and scheduler.queued_requests == 6
        scheduler.close(lambda: ModelUnloadingError("m"))
        done = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 2)
        with pytest.raises(ModelUnloadingError) as late:
            await scheduler.run([seq(9)], Pooling.MEAN)
        return done, late.value

    done, late = run_with(runner, body)
    assert all(isinstance(result, ModelUnloadingError) for result in done), done
    assert "'m' is being unloaded" in str(late)
