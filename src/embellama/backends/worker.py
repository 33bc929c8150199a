"""The body of a worker process: load one model, then decode jobs until the pipe closes.

Runs in its own process so that a native crash in llama.cpp (abort, SIGSEGV, OOM
kill) takes down only this worker; the pool notices and starts another.
"""

from __future__ import annotations

import logging
import os
import signal
from multiprocessing.connection import Connection

from embellama.backends.base import run_job
from embellama.backends.messages import DecodeJob, WorkerReady
from embellama.config import ModelConfig
from embellama.model.loaded import LoadedModel

__all__ = ["CRASH_TOKEN_VARIABLE", "run_worker"]

# Test hook: a worker started with this variable set aborts (a real native-style crash)
# on any batch containing that token id. The poison-input tests need a crash they can
# aim at one input; nothing else sets it.
CRASH_TOKEN_VARIABLE = "EMBELLAMA_TEST_CRASH_ON_TOKEN"


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
    crash_token = os.environ.get(CRASH_TOKEN_VARIABLE)
    model = LoadedModel(config)
    connection.send(WorkerReady(pid=os.getpid(), dimensions=model.dimensions))
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):
            break
        if job is None:  # the pool's request to stop
            break
        if crash_token is not None:
            _crash_on(int(crash_token), job)
        connection.send(run_job(model, job))
    model.close()


def _crash_on(token: int, job: DecodeJob) -> None:
    if any((sequence == token).any() for sequence in job.sequences):
        os.abort()
