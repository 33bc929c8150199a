"""Cross-request dynamic batching in the server process (asyncio).

Requests put their token sequences in a queue; each worker lane takes a batch by
token budget (small requests first, so interactive queries overtake bulk work),
runs it, and hands each vector back to its request. Items of requests that timed
out or went away are dropped before they are computed. A batch that fails is
retried one item at a time, so one bad item cannot fail the other requests.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from embellama.config import BatchingConfig, Pooling
from embellama.errors import (
    EmbellamaError,
    NoWorkerError,
    OverloadedError,
    RequestTimeoutError,
    WorkerCrashedError,
)
from embellama.model.backend import TokenIds
from embellama.vectors import Matrix
from embellama.workers.messages import DecodeJob
from embellama.workers.pool import WorkerHandle

__all__ = ["BatchOutcome", "Scheduler"]

_job_ids = itertools.count(1)
# A request of at most this many tokens rides the priority lane.
SMALL_REQUEST_TOKENS = 256


@dataclass(frozen=True)
class BatchOutcome:
    """Pooled vectors of one request plus where its time went."""

    vectors: Matrix
    queue_seconds: float
    inference_seconds: float


@dataclass(eq=False)
class _Request:
    future: asyncio.Future[None]
    enqueued: float
    vectors: list[Matrix | None]
    remaining: int
    first_started: float | None = None
    inference_seconds: float = 0.0

    @property
    def abandoned(self) -> bool:
        return self.future.done()


@dataclass(eq=False)
class _Item:
    request: _Request
    index: int
    ids: TokenIds
    attempts: int = 0


@dataclass
class _Lanes:
    small: deque[_Item] = field(default_factory=deque)
    bulk: deque[_Item] = field(default_factory=deque)

    def __bool__(self) -> bool:
        return bool(self.small or self.bulk)


class Scheduler:
    """Queue plus batch assembly for one model; `feed` is the pool's per-lane loop."""

    def __init__(
        self, batching: BatchingConfig, pooling: Pooling, *, max_queued_requests: int
    ) -> None:
        self._batching = batching
        self._pooling = pooling
        self._max_queued = max_queued_requests
        self._lanes = _Lanes()
        self._queued_requests = 0
        self._wakeup = asyncio.Event()
        # Called with the token count of each input of every batch handed to a worker.
        self.batch_observer: Callable[[list[int]], None] | None = None

    @property
    def queued_requests(self) -> int:
        return self._queued_requests

    @property
    def overloaded(self) -> bool:
        return self._queued_requests >= self._max_queued

    async def embed(self, sequences: Sequence[TokenIds], timeout: float) -> BatchOutcome:
        if self.overloaded:
            raise OverloadedError(
                f"the queue is full ({self._max_queued} requests waiting); retry shortly",
                retry_after=1.0,
            )
        loop = asyncio.get_running_loop()
        request = _Request(
            future=loop.create_future(),
            enqueued=time.perf_counter(),
            vectors=[None] * len(sequences),
            remaining=len(sequences),
        )
        lane = (
            self._lanes.small
            if sum(map(len, sequences)) <= SMALL_REQUEST_TOKENS
            else self._lanes.bulk
        )
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]), reverse=True)
        lane.extend(_Item(request, i, sequences[i]) for i in order)
        self._queued_requests += 1
        self._wakeup.set()
        try:
            await asyncio.wait_for(asyncio.shield(request.future), timeout)
        except TimeoutError:
            request.future.cancel()
            raise RequestTimeoutError(f"the request did not finish within {timeout:g} s") from None
        except asyncio.CancelledError:
            request.future.cancel()  # the client went away: drop what is still queued
            raise
        finally:
            self._queued_requests -= 1
        started = request.first_started or request.enqueued
        return BatchOutcome(
            vectors=np.stack(request.vectors),  # type: ignore[arg-type]
            queue_seconds=started - request.enqueued,
            inference_seconds=request.inference_seconds,
        )

    # -- the worker side --------------------------------------------------------------

    async def feed(self, worker: WorkerHandle) -> None:
        """One lane of one worker: take a batch, run it, deliver, repeat."""
        while True:
            batch = await self._take_batch()
            if self.batch_observer is not None:
                self.batch_observer([len(item.ids) for item in batch])
            try:
                done = await worker.run(
                    DecodeJob(next(_job_ids), [item.ids for item in batch], self._pooling)
                )
            except asyncio.CancelledError:
                self._requeue(batch)
                raise
            except WorkerCrashedError as exc:
                self._retry(batch, exc)
                raise
            except EmbellamaError as exc:
                self._retry(batch, exc)
                continue
            self._deliver(batch, done.vectors, done.inference_seconds)

    async def _take_batch(self) -> list[_Item]:
        while True:
            batch = self._assemble()
            if batch:
                return batch
            self._wakeup.clear()
            await self._wakeup.wait()

    def _assemble(self) -> list[_Item]:
        budget = self._batching.max_batch_tokens
        batch: list[_Item] = []
        used = 0
        for lane in (self._lanes.small, self._lanes.bulk):
            while lane:
                item = lane[0]
                if item.request.abandoned:
                    lane.popleft()
                    continue
                if batch and (
                    item.attempts > 0
                    or used + len(item.ids) > budget
                    or len(batch) >= self._batching.max_batch_sequences
                ):
                    return batch
                lane.popleft()
                batch.append(item)
                used += len(item.ids)
                if item.attempts > 0:
                    return batch  # a retried item runs alone, so it can only fail itself
        return batch

    def _deliver(self, batch: list[_Item], vectors: Matrix, seconds: float) -> None:
        now = time.perf_counter()
        for item, vector in zip(batch, vectors, strict=True):
            request = item.request
            if request.abandoned:
                continue
            request.first_started = request.first_started or now - seconds
            request.inference_seconds += seconds / len(batch)
            request.vectors[item.index] = vector
            request.remaining -= 1
            if request.remaining == 0:
                request.future.set_result(None)

    def _retry(self, batch: list[_Item], error: EmbellamaError) -> None:
        """First failure: run again, alone. Second: fail that item's request."""
        retry = []
        for item in batch:
            if item.request.abandoned:
                continue
            if item.attempts >= 1:
                final = (
                    NoWorkerError(str(error)) if isinstance(error, WorkerCrashedError) else error
                )
                item.request.future.set_exception(final)
            else:
                item.attempts += 1
                retry.append(item)
        self._lanes.small.extendleft(reversed(retry))
        self._wakeup.set()

    def _requeue(self, batch: list[_Item]) -> None:
        """Put a batch that never reached a worker back at the front, unchanged."""
        self._lanes.small.extendleft(reversed(batch))
        self._wakeup.set()
