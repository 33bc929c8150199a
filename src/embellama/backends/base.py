"""The interface between the scheduler and whatever runs decodes, and the decode itself.

A backend hands the scheduler's feeder one `Runner` per lane; a runner takes one packed
`DecodeJob` and returns its pooled vectors. `run_job` is the only code that turns a job
into vectors, whether it runs in this process or in a worker process.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from embellama.backends.messages import DecodeDone, DecodeFailed, DecodeJob
from embellama.config import Pooling
from embellama.model.loaded import LoadedModel
from embellama.vectors import pool

__all__ = ["Backend", "Feeder", "Runner", "WorkerStatus", "run_job"]


class Runner(Protocol):
    """One place a batch can run; `run` raises `WorkerCrashedError` if it dies meanwhile."""

    async def run(self, job: DecodeJob) -> DecodeDone: ...


Feeder = Callable[[Runner], Coroutine[Any, Any, None]]


@dataclass(frozen=True)
class WorkerStatus:
    slot: int
    pid: int | None
    state: str
    batches: int
    restarts: int
    in_flight: int
    # Why the slot has no worker, when it refused to start (its model file was replaced).
    error: str | None = None


class Backend(Protocol):
    """Starts runners and keeps one feeder task per lane until stopped."""

    async def start(self, feeder: Feeder) -> None: ...

    async def stop(self) -> None: ...

    @property
    def alive_count(self) -> int: ...

    @property
    def starting_count(self) -> int: ...

    @property
    def reason(self) -> str | None:
        """Why some worker is not serving (shown by `/ready`); None when all are."""
        ...

    @property
    def start_failure(self) -> str | None:
        """Why the first workers could not load the model; None if they could."""
        ...

    def status(self) -> list[WorkerStatus]: ...


def run_job(model: LoadedModel, job: DecodeJob) -> DecodeDone | DecodeFailed:
    """One decode of exactly the job's sequences (the scheduler packed them), then pooling."""
    started = time.perf_counter()
    try:
        outputs = model.decode(job.sequences, threads=job.threads)
        if job.pooling in (Pooling.NONE, Pooling.RANK):  # per token; a reranker's scores
            vectors: Any = outputs
        else:
            vectors = np.stack([pool(tokens, job.pooling) for tokens in outputs])
    except Exception as exc:  # reported to the scheduler, which fails only this batch
        return DecodeFailed(job.job_id, f"{type(exc).__name__}: {exc}")
    threads = job.threads or model.config.resolved_threads
    return DecodeDone(job.job_id, vectors, time.perf_counter() - started, threads)
