"""What travels between the server process and a worker process (pickled over a pipe).

Plain frozen dataclasses; numpy arrays inside pickle efficiently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from embellama.config import Pooling

__all__ = [
    "DecodeDone",
    "DecodeFailed",
    "DecodeJob",
    "WorkerLoadFailed",
    "WorkerReady",
    "WorkerRefused",
]


@dataclass(frozen=True)
class DecodeJob:
    """One packed batch: decode these sequences and pool each one."""

    job_id: int
    sequences: list[npt.NDArray[np.int32]]
    pooling: Pooling
    # Nothing else was queued or running when the scheduler packed it: a pool of
    # several workers then lends it the idle workers' threads.
    sole: bool = False
    # llama.cpp threads for this decode; None: the worker's own count.
    threads: int | None = None


@dataclass(frozen=True)
class DecodeDone:
    """Pooled, not yet normalized vectors `(n, dim)`, in the job's order; with pooling
    'none', each sequence's `(n_tokens, dim)` outputs instead."""

    job_id: int
    vectors: npt.NDArray[np.float32] | list[npt.NDArray[np.float32]]
    inference_seconds: float
    # The llama.cpp threads the decode ran with (0: not reported).
    threads: int = 0


@dataclass(frozen=True)
class DecodeFailed:
    job_id: int
    message: str


@dataclass(frozen=True)
class WorkerReady:
    pid: int
    dimensions: int


@dataclass(frozen=True)
class WorkerRefused:
    """The worker would not serve: its model file is not the one the server loaded."""

    message: str


@dataclass(frozen=True)
class WorkerLoadFailed:
    """The worker could not load the model or create its contexts (too little memory,
    a file llama.cpp rejects): retrying would fail the same way."""

    message: str
