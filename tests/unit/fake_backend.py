"""A `Backend` that computes vectors from token ids instead of running llama.cpp.

Lets the pipeline, the engine and a server reload run in milliseconds against the real
scheduler and the real tokenizer (a vocabulary-only load of the default model). Each
token's output is a fixed function of its id, and pooling is `vectors.pool`, so a
test can compute what any sequence must give.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np

from embellama.backends.base import Feeder, WorkerStatus
from embellama.backends.messages import DecodeDone, DecodeJob
from embellama.config import ModelConfig, Pooling, ServiceLimits
from embellama.errors import WorkerCrashedError
from embellama.model.loaded import LoadedModel
from embellama.model.native import TokenIds
from embellama.vectors import Matrix, pool

__all__ = ["FakeBackend", "FakeBackends", "expected_pooled", "token_outputs"]


def token_outputs(ids: TokenIds, dimensions: int) -> Matrix:
    """What the fake model outputs per token: a fixed, distinct wave per token id."""
    phases = np.outer(np.asarray(ids, np.float64) + 1.0, np.arange(1, dimensions + 1) * 0.37)
    return np.sin(phases).astype(np.float32)


def expected_pooled(ids: TokenIds, dimensions: int, pooling: Pooling) -> Matrix:
    return pool(token_outputs(ids, dimensions), pooling)


class FakeBackend:
    """One lane in this process; a crash (`crash_token` in a batch) restarts the lane,
    as the worker pool restarts a worker."""

    def __init__(
        self,
        dimensions: int,
        *,
        start_failure: str | None = None,
        crash_token: int | None = None,
    ) -> None:
        self.dimensions = dimensions
        self.crash_token = crash_token
        # Raised by every decode while set: a backend error as the scheduler sees it.
        self.error: Exception | None = None
        # While cleared, decodes wait: a slow or stalled backend.
        self.gate = asyncio.Event()
        self.gate.set()
        self.jobs: list[DecodeJob] = []
        self.restarts = 0
        self.stopped = False
        self._start_failure = start_failure
        self._lanes: list[asyncio.Task[None]] = []

    async def run(self, job: DecodeJob) -> DecodeDone:
        self.jobs.append(job)
        await self.gate.wait()
        if self.crash_token is not None and any(
            (s == self.crash_token).any() for s in job.sequences
        ):
            raise WorkerCrashedError("worker 0 (pid 1) exited with code -6")
        if self.error is not None:
            raise self.error
        outputs = [token_outputs(ids, self.dimensions) for ids in job.sequences]
        if job.pooling is Pooling.RANK:
            vectors: list[Matrix] | Matrix = [
                np.array([[float(ids.sum() % 7) - 3.0]], np.float32) for ids in job.sequences
            ]
        elif job.pooling is Pooling.NONE:
            vectors = outputs
        else:
            vectors = np.stack([pool(tokens, job.pooling) for tokens in outputs])
        return DecodeDone(job.job_id, vectors, 0.001)

    async def start(self, feeder: Feeder) -> None:
        if self._start_failure is None:
            self._lanes = [asyncio.create_task(self._lane(feeder))]

    async def _lane(self, feeder: Feeder) -> None:
        while True:
            try:
                await feeder(self)
            except WorkerCrashedError:
                self.restarts += 1

    async def stop(self) -> None:
        self.stopped = True
        for lane in self._lanes:
            lane.cancel()
        await asyncio.gather(*self._lanes, return_exceptions=True)
        self._lanes = []

    @property
    def alive_count(self) -> int:
        return 1 if self._lanes else 0

    @property
    def starting_count(self) -> int:
        return 0

    @property
    def reason(self) -> str | None:
        return None if self._lanes else "stopped"

    @property
    def start_failure(self) -> str | None:
        return self._start_failure

    def status(self) -> list[WorkerStatus]:
        state = "ready" if self._lanes else "stopped"
        return [WorkerStatus(0, None, state, len(self.jobs), self.restarts, 0)]


@dataclass
class FakeBackends:
    """A `BackendFactory` of `FakeBackend`s; `failing` names models whose start fails."""

    failing: set[str] = field(default_factory=set)
    crash_token: int | None = None
    built: dict[str, list[FakeBackend]] = field(default_factory=dict)

    def decodes_here(self, limits: ServiceLimits) -> bool:
        return False  # the vocabulary is all this process loads

    def build(self, model: LoadedModel, config: ModelConfig, limits: ServiceLimits) -> FakeBackend:
        failure = "not enough memory (fake)" if model.name in self.failing else None
        backend = FakeBackend(model.dimensions, start_failure=failure, crash_token=self.crash_token)
        self.built.setdefault(model.name, []).append(backend)
        return backend
