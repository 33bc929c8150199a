"""The body of a worker process: load one model, then decode jobs until the pipe closes.

Runs in its own process so that a native crash in llama.cpp (abort, SIGSEGV, OOM
kill) takes down only this worker; the pool notices and starts another.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from multiprocessing.connection import Connection

import numpy as np

from embellama.config import ModelConfig
from embellama.model.loaded import LoadedModel
from embellama.vectors import pool
from embellama.workers.messages import DecodeDone, DecodeFailed, DecodeJob, WorkerReady

__all__ = ["run_worker"]


def run_worker(
    config: ModelConfig,
    connection: Connection,
    log_level: int = logging.WARNING,
) -> None:
    # The server handles Ctrl-C and SIGTERM and stops workers itself, after draining.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s %(name)s[worker {os.getpid()}]: %(message)s",
    )
    model = LoadedModel(config)
    connection.send(WorkerReady(pid=os.getpid(), dimensions=model.dimensions))
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):
            break
        if job is None:  # the pool's request to stop
            break
        connection.send(_run(model, job))
    model.close()


def _run(model: LoadedModel, job: DecodeJob) -> DecodeDone | DecodeFailed:
    started = time.perf_counter()
    try:
        outputs = model.token_outputs(job.sequences)
        vectors = np.stack([pool(tokens, job.pooling) for tokens in outputs])
    except Exception as exc:  # reported to the server, which fails only this batch
        return DecodeFailed(job.job_id, f"{type(exc).__name__}: {exc}")
    return DecodeDone(job.job_id, vectors, time.perf_counter() - started)
