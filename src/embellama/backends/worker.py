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
from embellama.backends.messages import DecodeJob, WorkerReady, WorkerRefused
from embellama.config import ModelConfig
from embellama.errors import ModelFileError
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
    fingerprint: str | None = None,
) -> None:
    """`fingerprint`: the content fingerprint of the file the server loaded; a worker that
    finds another file there refuses (`WorkerRefused`) rather than decode other weights
    under the server's cache identity and tokenizer."""
    # The server handles Ctrl-C and SIGTERM and stops workers itself, after draining.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s %(name)s[worker {os.getpid()}]: %(message)s",
    )
    crash_token = os.environ.get(CRASH_TOKEN_VARIABLE)
    try:
        model = LoadedModel(config, expect_fingerprint=fingerprint)
    except ModelFileError as exc:
        connection.send(WorkerRefused(str(exc)))
        return
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
        try:
            connection.send(run_job(model, job))
        except OSError:  # a broken pipe: the parent was killed; nobody is left to answer
            break
    model.close()


def _crash_on(token: int, job: DecodeJob) -> None:
    if any((sequence == token).any() for sequence in job.sequences):
        os.abort()
