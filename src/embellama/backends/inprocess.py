"""The library's backend: decodes on one thread of this process, beside the event loop.

One lane: the next batch is assembled the moment a decode ends, from everything queued
by then. A second lane that assembled its batch early and waited on the model's lock
made batches smaller (16 concurrent callers: 5.5 instead of 7.9 inputs per decode) and
measured 10 % slower, even on one big call (bench/async_batching.md).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

from embellama.backends.base import Feeder, WorkerStatus, run_job
from embellama.backends.messages import DecodeDone, DecodeFailed, DecodeJob
from embellama.errors import InferenceError
from embellama.model.loaded import LoadedModel

__all__ = ["InProcessBackend"]

LANES = 1


class InProcessBackend:
    def __init__(self, model: LoadedModel) -> None:
        self._model = model
        self._executor = ThreadPoolExecutor(LANES, thread_name_prefix="embellama-decode")
        self._lanes: list[asyncio.Task[None]] = []
        self._batches = 0

    async def run(self, job: DecodeJob) -> DecodeDone:
        loop = asyncio.get_running_loop()
        self._batches += 1
        done = await loop.run_in_executor(self._executor, run_job, self._model, job)
        if isinstance(done, DecodeFailed):
            raise InferenceError(done.message)
        return done

    async def start(self, feeder: Feeder) -> None:
        self._lanes = [asyncio.create_task(feeder(self)) for _ in range(LANES)]

    async def stop(self) -> None:
        for lane in self._lanes:
            lane.cancel()
        await asyncio.gather(*self._lanes, return_exceptions=True)
        self._lanes = []
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    @property
    def alive_count(self) -> int:
        return 1 if self._lanes else 0

    @property
    def starting_count(self) -> int:
        return 0

    @property
    def start_failure(self) -> str | None:
        return None  # the model loaded in this process before the backend existed

    @property
    def reason(self) -> str | None:
        return None if self._lanes else "stopped"

    def status(self) -> list[WorkerStatus]:
        state = "ready" if self._lanes else "stopped"
        return [WorkerStatus(0, None, state, self._batches, 0, 0)]
