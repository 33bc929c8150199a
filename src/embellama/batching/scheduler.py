"""Cross-request dynamic batching for one model: the queue and the only packer (asyncio).

Requests put their token sequences in a queue; each backend lane takes a batch by
token budget (small requests first, so interactive queries overtake bulk work, but a
bulk request that has waited `bulk_max_wait` goes next), runs it, and hands each
vector back to its request. Items of requests that timed out or went away are dropped
before they are computed. Closing fails every request it holds and refuses new ones,
so no caller waits on a model that is stopping. A batch that fails is retried one item at a time, so one bad
item cannot fail the other requests; an item that kills a worker twice is remembered
and refused from then on. Must not know what runs the batch (see `backends.base`).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from embellama.backends.base import Runner
from embellama.backends.messages import DecodeJob
from embellama.config import BatchingConfig, Pooling, QueueLimits
from embellama.errors import (
    EmbellamaError,
    InternalError,
    OverloadedError,
    PoisonInputError,
    RequestTimeoutError,
    ServiceError,
    WorkerCrashedError,
)
from embellama.model.native import TokenIds
from embellama.stages import StageLog, current

__all__ = ["PoisonMemory", "Scheduled", "Scheduler"]

_log = logging.getLogger("embellama.scheduler")
_job_ids = itertools.count(1)
# A request of at most this many tokens rides the priority lane.
SMALL_REQUEST_TOKENS = 256


@dataclass(frozen=True)
class Scheduled:
    """Outputs of one request (pooled vectors, or per-token matrices) and its timings."""

    outputs: list[npt.NDArray[np.float32]]
    queue_seconds: float
    inference_seconds: float


class PoisonMemory:
    """Fingerprints (hash of token ids) of inputs that crashed a worker twice.

    Bounded and expiring: an attacker cannot grow it without limit, and a model fixed by
    a reload is given a fresh chance after `ttl` seconds.
    """

    def __init__(self, capacity: int = 4096, ttl: float = 3600.0) -> None:
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._capacity = capacity
        self._ttl = ttl
        self.refused = 0

    @staticmethod
    def fingerprint(ids: TokenIds) -> bytes:
        return hashlib.blake2b(np.ascontiguousarray(ids, dtype=np.int32).tobytes()).digest()

    def remember(self, ids: TokenIds) -> None:
        key = self.fingerprint(ids)
        self._seen[key] = time.monotonic() + self._ttl
        self._seen.move_to_end(key)
        while len(self._seen) > self._capacity:
            self._seen.popitem(last=False)

    def check(self, sequences: Sequence[TokenIds]) -> None:
        if not self._seen:
            return
        now = time.monotonic()
        for index, ids in enumerate(sequences):
            expires = self._seen.get(self.fingerprint(ids))
            if expires is not None and expires > now:
                self.refused += 1
                raise PoisonInputError(
                    f"input[{index}] crashed the model's worker before and is refused",
                    index=index,
                )


@dataclass(eq=False)
class _Request:
    future: asyncio.Future[None]
    enqueued: float
    outputs: list[npt.NDArray[np.float32] | None]
    remaining: int
    first_started: float | None = None
    inference_seconds: float = 0.0
    # Where a traced request notes its queue wait and the decodes it took part in.
    stages: StageLog | None = None

    @property
    def abandoned(self) -> bool:
        return self.future.done()

    def fail(self, error: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(error)


@dataclass(eq=False)
class _Item:
    request: _Request
    index: int
    ids: TokenIds
    pooling: Pooling
    attempts: int = 0


@dataclass
class _Lanes:
    small: deque[_Item] = field(default_factory=deque)
    bulk: deque[_Item] = field(default_factory=deque)

    def __bool__(self) -> bool:
        return bool(self.small or self.bulk)


class Scheduler:
    """Queue plus batch assembly for one model; `feed` is a backend lane's loop."""

    def __init__(
        self, batching: BatchingConfig, limits: QueueLimits, poison: PoisonMemory | None = None
    ) -> None:
        self._batching = batching
        self.limits = limits
        self.poison = poison or PoisonMemory()
        self._lanes = _Lanes()
        self._queued_requests = 0
        self._queued_tokens = 0
        self._wakeup = asyncio.Event()
        self._busy: dict[int, int] = {}  # batches in flight per runner
        # Whether the last batch that had a choice put aged bulk work first: aged bulk and
        # waiting small work then take turns, batch by batch.
        self._bulk_went_first = False
        # Called with the token count of each input of every batch handed to a backend.
        self.batch_observer: Callable[[list[int]], None] | None = None
        self._requests: set[_Request] = set()  # queued or running: what `close` fails
        self._traced = 0  # of those, how many note their stages: none, no per-batch work
        self._closed: Callable[[], ServiceError] | None = None

    @property
    def queued_requests(self) -> int:
        return self._queued_requests

    @property
    def queued_tokens(self) -> int:
        return self._queued_tokens

    @property
    def overloaded(self) -> bool:
        limit = self.limits.max_queued_requests
        return limit is not None and self._queued_requests >= limit

    def _admit(self, tokens: int) -> None:
        limits = self.limits
        too_many = self.overloaded
        too_large = (
            limits.max_queued_tokens is not None
            and self._queued_requests > 0
            and self._queued_tokens + tokens > limits.max_queued_tokens
        )
        if too_many or too_large:
            what = (
                f"{limits.max_queued_requests} requests"
                if too_many
                else f"{limits.max_queued_tokens} tokens"
            )
            raise OverloadedError(
                f"the queue is full ({what} waiting); retry shortly", retry_after=1.0
            )

    def close(self, error: Callable[[], ServiceError]) -> None:
        """Fail every queued and running request with `error()` and refuse new ones.

        A stopping backend cancels its lanes; without this, what they held would wait
        for a timeout that the library does not even set.
        """
        self._closed = error
        for request in list(self._requests):
            request.fail(error())
        self._lanes.small.clear()
        self._lanes.bulk.clear()

    def reopen(self) -> None:
        """Take work again after a `close` whose backend kept running (a drain that timed
        out, then an undrain); never after a stop, whose workers are gone."""
        self._closed = None

    async def run(self, sequences: Sequence[TokenIds], pooling: Pooling) -> Scheduled:
        """Queue `sequences` and wait for their outputs, in the order given."""
        if self._closed is not None:
            raise self._closed()
        self.poison.check(sequences)
        tokens = sum(map(len, sequences))
        self._admit(tokens)
        loop = asyncio.get_running_loop()
        request = _Request(
            future=loop.create_future(),
            enqueued=time.perf_counter(),
            outputs=[None] * len(sequences),
            remaining=len(sequences),
            stages=current(),
        )
        lane = self._lanes.small if tokens <= SMALL_REQUEST_TOKENS else self._lanes.bulk
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]), reverse=True)
        lane.extend(_Item(request, i, sequences[i], pooling) for i in order)
        self._queued_requests += 1
        self._queued_tokens += tokens
        self._requests.add(request)
        self._traced += request.stages is not None
        self._wakeup.set()
        try:
            await self._wait(request)
        finally:
            self._requests.discard(request)
            self._traced -= request.stages is not None
            self._queued_requests -= 1
            self._queued_tokens -= tokens
        started = request.first_started or request.enqueued
        if request.stages is not None:
            queued = max(started, request.enqueued)  # its first decode's estimated start
            request.stages.add(
                "queue", request.enqueued, queued, inputs=len(sequences), tokens=tokens
            )
        return Scheduled(
            outputs=request.outputs,  # type: ignore[arg-type]
            queue_seconds=started - request.enqueued,
            inference_seconds=request.inference_seconds,
        )

    async def _wait(self, request: _Request) -> None:
        timeout = self.limits.request_timeout
        try:
            await asyncio.wait_for(asyncio.shield(request.future), timeout)
        except TimeoutError:
            request.future.cancel()
            raise RequestTimeoutError(f"the request did not finish within {timeout:g} s") from None
        except asyncio.CancelledError:
            request.future.cancel()  # the caller went away: drop what is still queued
            raise

    # -- the backend side -------------------------------------------------------------

    async def feed(self, runner: Runner) -> None:
        """One lane: take a batch, run it, deliver, repeat; only cancellation ends it."""
        while True:
            batch = await self._take_batch(runner)
            try:
                await self._run_batch(runner, batch)
            except asyncio.CancelledError:
                self._requeue([i for i in batch if i.request.outputs[i.index] is None])
                raise
            except WorkerCrashedError as exc:
                self._retry(batch, exc)
                raise  # the runner is dead; its pool starts another
            except EmbellamaError as exc:
                self._retry(batch, exc)
            except Exception as exc:  # a bug: fail this batch only, keep the lane serving
                _log.exception("running a batch of %d inputs failed", len(batch))
                error = InternalError(f"internal error while running the batch: {exc!r}")
                for item in batch:
                    item.request.fail(error)

    async def _run_batch(self, runner: Runner, batch: list[_Item]) -> None:
        if self.batch_observer is not None:
            self.batch_observer([len(item.ids) for item in batch])
        requests = len({id(item.request) for item in batch})
        sole = requests == self._queued_requests and not any(self._busy.values())
        job = DecodeJob(next(_job_ids), [item.ids for item in batch], batch[0].pooling, sole)
        self._busy[id(runner)] = self._busy.get(id(runner), 0) + 1
        try:
            done = await runner.run(job)
        finally:
            self._busy[id(runner)] -= 1
            self._wakeup.set()  # a lane waiting for a full batch may now take a partial one
        if self._traced:
            _note_decode(batch, done.inference_seconds, done.threads)
        self._deliver(batch, done.vectors, done.inference_seconds)

    async def _take_batch(self, runner: Runner) -> list[_Item]:
        """A batch for `runner`; while it already runs one, only a full batch of small
        requests' work.

        The second lane of a worker exists to have the next batch waiting in the pipe
        when the current one ends. Taking a half-empty batch early would split the
        queue between two small decodes; waiting lets it fill (16 one-text clients:
        5.5 instead of 7.9 inputs per decode, measured). Bulk work is never queued in a
        pipe: a query arriving meanwhile would wait behind two bulk decodes instead of
        one (with the turns of `_lane_order`, short queries' p99 under bulk load went
        from 351 to 170 ms: bench/notes.md).
        """
        while True:
            busy = self._busy.get(id(runner), 0) > 0
            batch = self._assemble(full_only=busy, small_only=busy)
            if batch:
                return batch
            self._wakeup.clear()
            await self._wakeup.wait()

    def _lane_order(self) -> tuple[deque[_Item], ...]:
        """Small first. Once the oldest bulk item has waited `bulk_max_wait` (aging),
        bulk and small take turns going first, one batch each: bulk keeps at least half
        the decodes, and a query never waits behind more than one aged bulk batch."""
        lanes = self._lanes
        aged = bool(lanes.bulk) and (
            time.perf_counter() - lanes.bulk[0].request.enqueued > self.limits.bulk_max_wait
        )
        if aged and not (lanes.small and self._bulk_went_first):
            return (lanes.bulk, lanes.small)
        return (lanes.small, lanes.bulk)

    def _assemble(self, *, full_only: bool = False, small_only: bool = False) -> list[_Item]:
        order = (self._lanes.small,) if small_only else self._lane_order()
        batch = self._pack(order, full_only)
        if batch and not small_only:
            self._bulk_went_first = order[0] is self._lanes.bulk
        return batch

    def _pack(self, order: tuple[deque[_Item], ...], full_only: bool) -> list[_Item]:
        budget = self._batching.max_batch_tokens
        taken: list[tuple[deque[_Item], _Item]] = []
        used = 0
        for lane in order:
            while lane:
                item = lane[0]
                if item.request.abandoned:
                    lane.popleft()
                    continue
                if taken and (
                    item.attempts > 0
                    or item.pooling is not taken[0][1].pooling
                    or used + len(item.ids) > budget
                    or len(taken) >= self._batching.max_batch_sequences
                ):
                    return [item for _, item in taken]  # full: the next one does not fit
                taken.append((lane, lane.popleft()))
                used += len(item.ids)
                if item.attempts > 0:
                    return [item]  # a retried item runs alone, so it can only fail itself
        batching = self._batching
        full = used >= batching.max_batch_tokens or len(taken) >= batching.max_batch_sequences
        if full_only and not full:
            for lane, item in reversed(taken):  # not full yet: leave it to fill
                lane.appendleft(item)
            return []
        return [item for _, item in taken]

    def _deliver(
        self,
        batch: list[_Item],
        outputs: npt.NDArray[np.float32] | list[npt.NDArray[np.float32]],
        seconds: float,
    ) -> None:
        now = time.perf_counter()
        for item, output in zip(batch, outputs, strict=True):
            request = item.request
            if request.abandoned:
                continue
            request.first_started = request.first_started or now - seconds
            request.inference_seconds += seconds / len(batch)
            request.outputs[item.index] = output
            request.remaining -= 1
            if request.remaining == 0:
                request.future.set_result(None)

    def _retry(self, batch: list[_Item], error: EmbellamaError) -> None:
        """First failure: run again, alone. Second: fail that item's request."""
        retry = []
        for item in batch:
            if item.request.abandoned:
                continue
            if item.attempts == 0:
                item.attempts += 1
                retry.append(item)
            elif isinstance(error, WorkerCrashedError):
                self.poison.remember(item.ids)
                item.request.fail(
                    PoisonInputError(
                        f"input[{item.index}] crashed the model's worker twice; "
                        "it is not retried and will be refused if sent again",
                        index=item.index,
                    )
                )
            else:
                item.request.fail(error)
        self._lanes.small.extendleft(reversed(retry))
        self._wakeup.set()

    def _requeue(self, batch: list[_Item]) -> None:
        """Put a batch that was cut off (its lane cancelled) back at the front, unchanged."""
        self._lanes.small.extendleft(reversed(batch))
        self._wakeup.set()


def _note_decode(batch: list[_Item], seconds: float, threads: int) -> None:
    """A decode in the log of each traced request it served: the batch's size and
    tokens, this request's share, and how long the worker measured it ran, placed to
    end when its reply arrived (late by the reply's trip back), never before the
    request was queued."""
    end = time.perf_counter()
    shares: dict[int, tuple[_Request, list[int]]] = {}
    for item in batch:
        if item.request.stages is not None and not item.request.abandoned:
            share = shares.setdefault(id(item.request), (item.request, [0, 0]))[1]
            share[0] += 1
            share[1] += len(item.ids)
    tokens = sum(len(item.ids) for item in batch)
    requests = len({id(item.request) for item in batch})
    for request, (inputs, own_tokens) in shares.values():
        assert request.stages is not None
        request.stages.add(
            "decode",
            max(end - seconds, request.enqueued),
            end,
            batch_size=len(batch),
            batch_tokens=tokens,
            batch_requests=requests,
            inputs=inputs,
            tokens=own_tokens,
            decode_threads=threads,
            pooling=batch[0].pooling.value,
        )
