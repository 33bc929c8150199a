"""The body of a worker process: load one model, then decode jobs until the pipe closes.

Runs in its own process so that a native crash in llama.cpp (abort, SIGSEGV, OOM
kill) takes down only this worker; the pool notices and starts another. It must not act
on the signals the server handles (`STOP_SIGNALS`): the server drains, then stops it.
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

__all__ = ["CRASH_TOKEN_VARIABLE", "HANG_TOKEN_VARIABLE", "STOP_SIGNALS", "run_worker"]

# Test hooks: a worker started with one of these variables set aborts (a real
# native-style crash) or stops itself with SIGSTOP (a decode that never returns, as the
# server sees it) on any batch containing that token id. The poison-input and hung-worker
# tests need a crash or a hang they can aim at one input; nothing else sets them.
CRASH_TOKEN_VARIABLE = "EMBELLAMA_TEST_CRASH_ON_TOKEN"
HANG_TOKEN_VARIABLE = "EMBELLAMA_TEST_HANG_ON_TOKEN"

# What the server drains on (Ctrl-C, SIGTERM, and SIGHUP for a reload). Supervisors
# (systemd's KillMode=control-group, `timeout`, a terminal closing) send them to the
# whole process group; a worker that died of one would fail the batch it held and
# blame its inputs. The pool spawns workers with these blocked, so none arrives before
# `run_worker` ignores them.
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


def run_worker(
    config: ModelConfig,
    connection: Connection,
    log_level: int = logging.WARNING,
) -> None:
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)  # also discards one already pending
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s %(name)s[worker {os.getpid()}]: %(message)s",
    )
    crash_token = _token_from(CRASH_TOKEN_VARIABLE)
    hang_token = _token_from(HANG_TOKEN_VARIABLE)
    model = LoadedModel(config)
    connection.send(WorkerReady(pid=os.getpid(), dimensions=model.dimensions))
    while True:
        try:
            job = connection.recv()
        except (EOFError, OSError):
            break
        if job is None:  # the pool's request to stop
            break
        if _holds(crash_token, job):
            os.abort()
        if _holds(hang_token, job):
            os.kill(os.getpid(), signal.SIGSTOP)
        try:
            connection.send(run_job(model, job))
        except OSError:  # the server is gone (killed): nobody waits for the result
            break
    model.close()


def _token_from(variable: str) -> int | None:
    value = os.environ.get(variable)
    return None if value is None else int(value)


def _holds(token: int | None, job: DecodeJob) -> bool:
    return token is not None and any((sequence == token).any() for sequence in job.sequences)
