"""`WorkerPool` and `WorkerHandle` bookkeeping without spawning: slot status, the hang
watchdog, how a worker's end fails its jobs, and restart accounting.

Supervision is driven by a scripted stand-in for `WorkerHandle` (the process boundary);
what a real worker does is covered by tests/integration/test_worker_exit.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embellama.backends import pool as pool_module
from embellama.backends.base import Runner
from embellama.backends.messages import DecodeDone, DecodeFailed, DecodeJob, WorkerReady
from embellama.backends.pool import WorkerHandle, WorkerPool
from embellama.config import ModelConfig, Pooling
from embellama.errors import InferenceError, ModelLoadError, WorkerCrashedError

CONFIG = ModelConfig(Path("m.gguf"), n_threads=1)


def job(job_id: int) -> DecodeJob:
    return DecodeJob(job_id, [np.array([1, 2], np.int32)], Pooling.MEAN)


class _Process:
    """Stands in for the worker's process where a test needs only its kill and exit."""

    pid = 4242
    exitcode: int | None = None

    def __init__(self) -> None:
        self.killed = False

    def kill(self) -> None:
        self.killed = True
        self.exitcode = -9


def test_a_pool_that_never_started_reports_every_slot_stopped() -> None:
    pool = WorkerPool(CONFIG, 3, hang_timeout=5.0)
    assert [(row.slot, row.state, row.pid, row.restarts) for row in pool.status()] == [
        (0, "stopped", None, 0),
        (1, "stopped", None, 0),
        (2, "stopped", None, 0),
    ]
    assert (pool.alive_count, pool.starting_count, pool.pids()) == (0, 0, [])
    assert pool.reason is None and pool.start_failure is None
    asyncio.run(pool.stop())  # stopping an unstarted pool is harmless
    assert [row.state for row in pool.status()] == ["stopped"] * 3


def test_a_decode_that_makes_no_progress_gets_its_worker_killed() -> None:
    async def run() -> None:
        handle = WorkerHandle(0, CONFIG, asyncio.get_running_loop(), hang_timeout=0.02)
        process = _Process()
        handle.process = process  # type: ignore[assignment]
        running = asyncio.create_task(handle.run(job(1)))
        async with asyncio.timeout(2):
            while not process.killed:
                await asyncio.sleep(0.005)
        handle._on_exit()  # what the pipe reader posts once the killed process is gone
        with pytest.raises(WorkerCrashedError, match=r"hung \(no decode finished in 0\.02 s\)"):
            await running
        assert not handle.alive and handle.in_flight == 0

    asyncio.run(run())


def test_without_a_hang_timeout_a_long_decode_is_left_alone() -> None:
    async def run() -> None:
        handle = WorkerHandle(0, CONFIG, asyncio.get_running_loop(), hang_timeout=None)
        process = _Process()
        handle.process = process  # type: ignore[assignment]
        running = asyncio.create_task(handle.run(job(1)))
        await asyncio.sleep(0.05)
        assert not process.killed and handle.in_flight == 1
        handle._deliver(DecodeDone(1, np.zeros((1, 4), np.float32), 0.05))
        assert (await running).job_id == 1

    asyncio.run(run())


def test_results_go_to_their_jobs_and_a_worker_exit_fails_the_rest() -> None:
    async def run() -> None:
        handle = WorkerHandle(3, CONFIG, asyncio.get_running_loop())
        handle._deliver(WorkerReady(pid=7, dimensions=4))
        jobs = [asyncio.create_task(handle.run(job(i))) for i in (1, 2, 3)]
        await asyncio.sleep(0)
        assert handle.in_flight == 3 and handle.batches == 3
        handle._deliver(DecodeFailed(2, "RuntimeError: llama_decode returned -1"))
        handle._deliver(DecodeDone(1, np.zeros((1, 4), np.float32), 0.01))
        handle._deliver(DecodeDone(99, np.zeros((1, 4), np.float32), 0.01))  # nobody's: dropped
        assert (await jobs[0]).job_id == 1
        with pytest.raises(InferenceError, match="llama_decode returned -1"):
            await jobs[1]
        handle._on_exit()
        with pytest.raises(WorkerCrashedError, match=r"worker 3 .* exited with code None"):
            await jobs[2]
        assert not handle.alive
        with pytest.raises(WorkerCrashedError, match="worker 3 is not running"):
            await handle.run(job(4))

    asyncio.run(run())


class _ScriptedHandle:
    """A worker that becomes ready (or fails to) as the test's script says."""

    script: Iterator[str]
    made: list[_ScriptedHandle]

    def __init__(
        self, slot: int, config: ModelConfig, loop: asyncio.AbstractEventLoop, **_: object
    ):
        self.slot = slot
        self.pid = 100 + len(self.made)
        self.ready: asyncio.Future[WorkerReady] = loop.create_future()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.batches = self.in_flight = 0
        self.exit_cause = "exited with code 1"
        self.made.append(self)

    def launch(self) -> None:
        step = next(self.script)
        if step == "load-fails":
            self.ready.set_exception(ModelLoadError("failed to allocate 9 GB"))
        else:
            self.ready.get_loop().call_soon_threadsafe(
                self.ready.set_result, WorkerReady(self.pid, 4)
            )

    @property
    def alive(self) -> bool:
        return self.ready.done() and self.ready.exception() is None and not self.exited.done()

    def stop(self) -> None:
        if not self.exited.done():
            self.exited.get_loop().call_soon_threadsafe(self.exited.set_result, None)


async def _idle(runner: Runner) -> None:
    await asyncio.Event().wait()


def _scripted(monkeypatch: pytest.MonkeyPatch, *steps: str) -> list[_ScriptedHandle]:
    made: list[_ScriptedHandle] = []
    monkeypatch.setattr(_ScriptedHandle, "script", iter(steps), raising=False)
    monkeypatch.setattr(_ScriptedHandle, "made", made, raising=False)
    monkeypatch.setattr(pool_module, "WorkerHandle", _ScriptedHandle)
    return made


def test_a_worker_that_dies_is_counted_reported_and_replaced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = _scripted(monkeypatch, "ready", "ready")

    async def run() -> None:
        pool = WorkerPool(CONFIG, 1)
        await pool.start(_idle)
        assert [(row.state, row.pid, row.restarts) for row in pool.status()] == [("ready", 100, 0)]
        made[0].exited.set_result(None)  # the worker died
        await asyncio.sleep(0.01)
        assert pool.reason == "worker 0 (pid 100) exited with code 1"
        assert pool.status()[0].restarts == 1
        async with asyncio.timeout(2):
            while pool.alive_count == 0:
                await asyncio.sleep(0.01)
        assert pool.reason is None  # the replacement is ready
        assert [(row.state, row.pid, row.restarts) for row in pool.status()] == [("ready", 101, 1)]
        await pool.stop()

    asyncio.run(run())


def test_workers_that_never_loaded_are_not_restarted(monkeypatch: pytest.MonkeyPatch) -> None:
    made = _scripted(monkeypatch, "load-fails", "load-fails", "ready")

    async def run() -> None:
        pool = WorkerPool(CONFIG, 2)
        async with asyncio.timeout(2):
            await pool.start(_idle)  # returns once every slot has given up
        assert pool.start_failure == "failed to allocate 9 GB"
        assert pool.reason == (
            "worker 0 could not load the model; worker 1 could not load the model"
        )
        assert [(row.state, row.restarts) for row in pool.status()] == [("dead", 0)] * 2
        assert pool.alive_count == 0 and len(made) == 2  # neither slot was tried again
        await pool.stop()

    asyncio.run(run())
