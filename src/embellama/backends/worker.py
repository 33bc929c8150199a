"""The body of a worker process: load one model, then decode jobs until the pipe closes.

Runs in its own process so that a native crash in llama.cpp (abort, SIGSEGV, OOM
kill) takes down only this worker; the pool notices and starts another. It must not act
on the signals the server handles (`STOP_SIGNALS`) unless the server itself sends them:
the server drains, then stops it.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from multiprocessing.connection import Connection

from embellama.backends.base import run_job
from embellama.backends.messages import DecodeJob, WorkerLoadFailed, WorkerReady, WorkerRefused
from embellama.config import ModelConfig
from embellama.default_model import engine_cache_directory
from embellama.errors import EmbellamaError, ModelFileError
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
# blame its inputs. The pool spawns workers with these blocked, and they stay blocked:
# one thread takes them (`_defer_stop_signals`).
STOP_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})


def run_worker(
    config: ModelConfig,
    connection: Connection,
    log_level: int = logging.WARNING,
    fingerprint: str | None = None,
) -> None:
    """`fingerprint`: the content fingerprint of the file the server loaded; a worker that
    finds another file there refuses (`WorkerRefused`) rather than decode other weights
    under the server's cache identity and tokenizer."""
    _defer_stop_signals()
    logging.basicConfig(
        level=log_level,
        format=f"%(asctime)s %(levelname)s %(name)s[worker {os.getpid()}]: %(message)s",
    )
    crash_token = _token_from(CRASH_TOKEN_VARIABLE)
    hang_token = _token_from(HANG_TOKEN_VARIABLE)
    first_error = _FirstNativeError()
    try:
        model = LoadedModel(
            config, expect_fingerprint=fingerprint, engine_cache=engine_cache_directory()
        )
    except ModelFileError as exc:
        _tell(connection, WorkerRefused(str(exc)))
        return
    except EmbellamaError as exc:  # llama.cpp refused the file or a context's memory
        _tell(connection, WorkerLoadFailed(first_error.explain(exc)))
        return
    finally:
        first_error.detach()
    if not _tell(connection, WorkerReady(pid=os.getpid(), dimensions=model.dimensions)):
        model.close()
        return
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


def _tell(connection: Connection, message: object) -> bool:
    """Send to the server; False (quietly) when it is gone, killed while this loaded."""
    try:
        connection.send(message)
    except OSError:
        return False
    return True


class _FirstNativeError(logging.Handler):
    """Keeps llama.cpp's first error line while the model loads: ours only says that
    loading failed, the native line says why ("failed to allocate ... MB", "tensor
    ... has wrong shape")."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.line: str | None = None
        self._logger = logging.getLogger("embellama.llama_cpp")
        self._logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        if self.line is None:
            self.line = record.getMessage()

    def explain(self, exc: Exception) -> str:
        return f"{exc} (llama.cpp: {self.line})" if self.line else str(exc)

    def detach(self) -> None:
        self._logger.removeHandler(self)


def _defer_stop_signals() -> None:
    """Drop a stop signal from anyone but the server, and die of one the server sends.

    Dropped: the server got the same signal and will stop this worker after draining.
    Obeyed: the server's own `terminate()`, which multiprocessing sends to live workers
    when the server's interpreter exits and then waits for them (an ignored SIGTERM
    would hang that exit). Only `sigwaitinfo` tells who sent a signal, so every thread
    keeps them blocked (threads started later inherit the mask) and one thread waits.
    """
    for number in STOP_SIGNALS:
        signal.signal(number, signal.SIG_DFL)  # Python's own SIGINT handler would not die
    signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    threading.Thread(target=_take_stop_signals, name="embellama-signals", daemon=True).start()


def _take_stop_signals() -> None:
    while True:
        info = signal.sigwaitinfo(STOP_SIGNALS)
        if info.si_pid == os.getppid():  # the server (or, orphaned, whoever adopted us)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {info.si_signo})
            signal.pthread_kill(threading.get_ident(), info.si_signo)  # dies of it


def _token_from(variable: str) -> int | None:
    value = os.environ.get(variable)
    return None if value is None else int(value)


def _holds(token: int | None, job: DecodeJob) -> bool:
    return token is not None and any((sequence == token).any() for sequence in job.sequences)
