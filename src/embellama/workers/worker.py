"""The body of a worker process: load one model, then decode jobs until the pipe closes.

Runs in its own process so that a native crash in llama.cpp (abort, SIGSEGV, OOM
kill) takes down only this worker; the pool notices and starts another.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from multiprocessing.sharedctypes import Synchronized

import numpy as np

from embellama.config import ModelConfig
from embellama.model.loaded import LoadedModel
from embellama.vectors import pool
from embellama.workers.messages import DecodeDone, DecodeFailed, DecodeJob, WorkerReady

__all__ = ["run_worker"]


class ThreadShare:
    """Splits the worker's threads between the workers decoding at the same moment.

    Alone, a worker uses all `config.n_threads`; while k workers decode at once, each
    uses n_threads // k. One request then gets every core (lowest latency), and under
    load the workers do not oversubscribe the cores (ggml's threads wait on each other
    at every barrier, so a preempted thread stalls the whole decode).
    """

    def __init__(self, busy: Synchronized[int] | None, max_threads: int) -> None:
        self._busy = busy
        self._max = max_threads

    @contextmanager
    def threads(self) -> Iterator[int]:
        if self._busy is None:
            yield self._max
            return
        with self._busy.get_lock():
            self._busy.value += 1
            share = max(1, self._max // self._busy.value)
        try:
            yield share
        finally:
            with self._busy.get_lock():
                self._busy.value -= 1


def run_worker(
    config: ModelConfig,
    connection: Connection,
    log_level: int = logging.WARNING,
    busy: Synchronized[int] | None = None,
) -> None:
    # The server handles Ctrl-C and SIGTERM and stops workers itself, after draining.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s %(name)s[worker {os.getpid()}]: %(message)s",
    )
    model = LoadedModel(config)
    share = ThreadShare(busy, config.resolved_threads)
    connection.send(WorkerReady(pid=os.getpid(), dimensions=model.dimensions))
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):
            break
        if job is None:  # the pool's request to stop
            break
        with share.threads() as threads:
            model.set_threads(threads)
            result = _run(model, job)
        connection.send(result)
    model.close()


def _run(model: LoadedModel, job: DecodeJob) -> DecodeDone | DecodeFailed:
    started = time.perf_counter()
    try:
        outputs = model.token_outputs(job.sequences)
        vectors = np.stack([pool(tokens, job.pooling) for tokens in outputs])
    except Exception as exc:  # reported to the server, which fails only this batch
        return DecodeFailed(job.job_id, f"{type(exc).__name__}: {exc}")
    return DecodeDone(job.job_id, vectors, time.perf_counter() - started)
