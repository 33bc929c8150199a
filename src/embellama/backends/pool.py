"""Supervised worker processes: start, feed, watch, restart.

Each slot keeps one worker process alive. A reader thread per worker turns pipe
messages into asyncio results, and a writer thread pickles and sends jobs, so the event
loop never blocks on a pipe; spawning also happens off the loop. When the pipe hits EOF
the worker is dead, its work in flight fails with `WorkerCrashedError` (the scheduler
retries it), and the slot starts a replacement after a short backoff. A worker whose
decode makes no progress for `hang_timeout` seconds is killed, and so takes the same
path: a hung decode is a crash that has not happened yet.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import multiprocessing
import queue
import signal
import threading
import time
from multiprocessing import resource_tracker

from embellama.backends.base import Feeder, Runner, WorkerStatus
from embellama.backends.messages import (
    DecodeDone,
    DecodeFailed,
    DecodeJob,
    WorkerLoadFailed,
    WorkerReady,
    WorkerRefused,
)
from embellama.backends.worker import STOP_SIGNALS, run_worker
from embellama.config import ModelConfig
from embellama.errors import InferenceError, ModelFileError, ModelLoadError, WorkerCrashedError

__all__ = ["WorkerHandle", "WorkerPool"]

_log = logging.getLogger("embellama.backends")
_job_ids = itertools.count(1)
# One batch runs while the next is already in the worker's pipe, so the worker never
# waits for the server between batches.
LANES_PER_WORKER = 2


class WorkerHandle:
    """One worker process and the futures of the jobs it holds."""

    def __init__(
        self,
        slot: int,
        config: ModelConfig,
        loop: asyncio.AbstractEventLoop,
        fingerprint: str | None = None,
        hang_timeout: float | None = None,
    ) -> None:
        context = multiprocessing.get_context("spawn")
        self._connection, child = context.Pipe()
        self.slot = slot
        self.process = context.Process(
            target=run_worker,
            args=(config, child, logging.getLogger().getEffectiveLevel(), fingerprint),
            name=f"embellama-worker-{slot}",
            daemon=True,
        )
        self._child = child
        self._loop = loop
        self._pending: dict[int, asyncio.Future[DecodeDone]] = {}
        self._outbox: queue.SimpleQueue[DecodeJob | None] = queue.SimpleQueue()
        self.ready: asyncio.Future[WorkerReady] = loop.create_future()
        self.exited: asyncio.Future[None] = loop.create_future()
        self.batches = 0
        self._hang_timeout = hang_timeout
        self._watchdog: asyncio.TimerHandle | None = None
        self._hung = False
        self._threads: list[threading.Thread] = []

    def launch(self) -> None:
        """Spawn the process and its pipe threads; blocking, so call it off the loop.

        The child inherits this thread's signal mask: it starts with `STOP_SIGNALS`
        blocked, and so does every thread it starts; the worker's signal thread takes
        them (`worker._defer_stop_signals`). Only this thread blocks them here; the server
        still gets them. The resource tracker starts first: starting it unblocks SIGINT
        and SIGTERM in the calling thread, inside `process.start()`.
        """
        resource_tracker.ensure_running()
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            self.process.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        self._child.close()
        for target, role in ((self._read, "reader"), (self._write, "writer")):
            name = f"embellama-{role}-{self.slot}"
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    @property
    def pid(self) -> int | None:
        return self.process.pid

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def alive(self) -> bool:
        """Ready and not exited; a worker that refused (its ready holds the error) is not."""
        ready = self.ready
        started = ready.done() and not ready.cancelled() and ready.exception() is None
        return started and not self.exited.done()

    @property
    def exit_cause(self) -> str:
        if self._hung:
            return f"hung (no decode finished in {self._hang_timeout:g} s) and was killed"
        return f"exited with code {self.process.exitcode}"

    async def run(self, sequences: DecodeJob) -> DecodeDone:
        if self.exited.done():
            raise WorkerCrashedError(f"worker {self.slot} is not running")
        future: asyncio.Future[DecodeDone] = self._loop.create_future()
        self._pending[sequences.job_id] = future
        if len(self._pending) == 1:  # idle until now: this decode starts at once
            self._arm_watchdog()
        self._outbox.put(sequences)
        self.batches += 1
        try:
            return await future
        finally:
            self._pending.pop(sequences.job_id, None)

    def _write(self) -> None:
        """Pickle and send jobs in order; a closed pipe fails whatever is still pending."""
        while True:
            job = self._outbox.get()
            try:
                self._connection.send(job)
            except (OSError, ValueError):
                return  # the reader sees EOF and fails the pending jobs
            if job is None:
                return

    def _read(self) -> None:
        while True:
            try:
                message = self._connection.recv()
            except (EOFError, OSError):
                break
            self._loop.call_soon_threadsafe(self._deliver, message)
        self.process.join(timeout=5)
        self._loop.call_soon_threadsafe(self._on_exit)

    def _deliver(self, message: object) -> None:
        if isinstance(message, WorkerReady):
            if not self.ready.done():
                self.ready.set_result(message)
            return
        if isinstance(message, WorkerRefused):
            if not self.ready.done():
                self.ready.set_exception(ModelFileError(message.message))
            return
        if isinstance(message, WorkerLoadFailed):
            if not self.ready.done():
                self.ready.set_exception(ModelLoadError(message.message))
            return
        if isinstance(message, (DecodeDone, DecodeFailed)):
            future = self._pending.pop(message.job_id, None)
            self._arm_watchdog()  # progress: the next job in the pipe starts now
            if future is None or future.done():
                return
            if isinstance(message, DecodeDone):
                future.set_result(message)
            else:
                future.set_exception(InferenceError(message.message))

    def _arm_watchdog(self) -> None:
        """Restart the clock of the decode now running; stop it when none is.

        The clock measures the job at the head of the worker's pipe, from when the
        worker could start it (sent to an idle worker, or the previous job answered).
        """
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        if self._pending and self._hang_timeout is not None:
            self._watchdog = self._loop.call_later(self._hang_timeout, self._on_hang)

    def _on_hang(self) -> None:
        if self.exited.done() or not self._pending:
            return
        self._hung = True
        _log.error(
            "worker %d (pid %s): no decode finished in %g s; killing it as hung",
            self.slot,
            self.pid,
            self._hang_timeout,
        )
        self.process.kill()  # SIGKILL ends a stopped process too; the reader sees EOF

    def _on_exit(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        error = WorkerCrashedError(f"worker {self.slot} (pid {self.pid}) {self.exit_cause}")
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)
        self._pending.clear()
        if not self.ready.done():
            self.ready.set_exception(error)
        if not self.exited.done():
            self.exited.set_result(None)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the worker to exit after the jobs it holds; kill it if it lingers.

        Returns once its pipe threads are done too: the reader's last act is to post the
        exit to the event loop, which must not have closed by then.
        """
        if self.process.pid is None:
            return
        self._outbox.put(None)
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
        for thread in self._threads:
            thread.join(10)


class _ThreadLender:
    """Lends idle workers' threads to a batch that is all the work there is.

    A batch the scheduler marks `sole` (nothing else queued or running) runs with the
    whole pool's threads, so one request alone is as fast as in one big worker. Under
    load each worker keeps its own threads: no decode then waits at ggml's barriers for
    a thread that another process (the server, a client) preempted, which is where one
    many-thread worker loses ~10 % at 16 clients on 2 cores (bench/notes.md). A batch
    that arrives while borrowed threads are out waits for them to come back, so the
    pool never runs more threads than it was given.
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._borrower: WorkerHandle | None = None
        self._returned = asyncio.Event()

    async def run(self, handle: WorkerHandle, job: DecodeJob) -> DecodeDone:
        while self._borrower is not None and self._borrower is not handle:
            self._returned.clear()
            await self._returned.wait()
        if not job.sole or handle.in_flight:
            return await handle.run(job)
        self._borrower = handle
        try:
            return await handle.run(dataclasses.replace(job, threads=self.threads))
        finally:
            self._borrower = None
            self._returned.set()


class _LendingRunner:
    """A worker as the scheduler sees it: one per worker, shared by its lanes."""

    def __init__(self, handle: WorkerHandle, lender: _ThreadLender) -> None:
        self._handle = handle
        self._lender = lender

    async def run(self, job: DecodeJob) -> DecodeDone:
        return await self._lender.run(self._handle, job)


class WorkerPool:
    """Keeps `count` workers of one model alive and hands each to a feeder coroutine;
    a worker decoding alone borrows the idle ones' threads (`_ThreadLender`).
    `hang_timeout`: seconds a decode may run before its worker is killed as hung."""

    def __init__(
        self,
        config: ModelConfig,
        count: int,
        hang_timeout: float | None = None,
        *,
        fingerprint: str | None = None,
        lends_threads: bool = True,
    ) -> None:
        """`fingerprint`: the content fingerprint every worker's file must have.
        `lends_threads` False: the workers' engine fixes its threads when it loads (ONNX
        Runtime), so lending them would only make other batches wait for nothing."""
        self.config = config
        self.lends_threads = lends_threads
        self.count = count
        self.hang_timeout = hang_timeout
        self.fingerprint = fingerprint
        # Why a slot's last worker refused to start (a replaced model file), until one starts.
        self._refusals: dict[int, str] = {}
        # Why a slot has no ready worker, from its worker's end until the next is ready.
        self._down: dict[int, str] = {}
        # Slots whose worker has been ready once: only those restart after a failure.
        self._healthy: set[int] = set()
        # Why the first workers could not load the model (they are not retried).
        self._start_failure: str | None = None
        self._feeder: Feeder | None = None
        self._handles: dict[int, WorkerHandle] = {}
        self._restarts = dict.fromkeys(range(count), 0)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._lender: _ThreadLender | None = None

    async def start(self, feeder: Feeder, *, wait_ready: bool = True) -> None:
        self._feeder = feeder
        if self.count > 1 and self.lends_threads:
            self._lender = _ThreadLender(self.count * self.config.resolved_threads)
        self._tasks = [asyncio.create_task(self._supervise(slot)) for slot in range(self.count)]
        if wait_ready:
            await self.wait_until_ready()

    async def wait_until_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.alive_count < self.count and time.monotonic() < deadline:
            if all(task.done() for task in self._tasks):
                break
            await asyncio.sleep(0.02)

    @property
    def alive_count(self) -> int:
        return sum(1 for handle in self._handles.values() if handle.alive)

    @property
    def starting_count(self) -> int:
        return sum(1 for handle in self._handles.values() if not handle.ready.done())

    @property
    def start_failure(self) -> str | None:
        return self._start_failure

    @property
    def reason(self) -> str | None:
        """What is wrong with the pool for `/ready`: why each slot lost its worker, until
        the replacement is ready; None when no slot is down."""
        return "; ".join(self._down[slot] for slot in sorted(self._down)) or None

    def status(self) -> list[WorkerStatus]:
        rows = []
        for slot in range(self.count):
            handle = self._handles.get(slot)
            state = "stopped"
            if handle is not None:
                state = (
                    "ready" if handle.alive else "starting" if not handle.ready.done() else "dead"
                )
            if state != "ready" and slot in self._refusals:
                state = "refused"
            rows.append(
                WorkerStatus(
                    slot=slot,
                    pid=handle.pid if handle else None,
                    state=state,
                    batches=handle.batches if handle else 0,
                    restarts=self._restarts[slot],
                    in_flight=handle.in_flight if handle else 0,
                    error=self._refusals.get(slot),
                )
            )
        return rows

    def pids(self) -> list[int]:
        return [h.pid for h in self._handles.values() if h.alive and h.pid is not None]

    async def _supervise(self, slot: int) -> None:
        backoff = 0.2
        loop = asyncio.get_running_loop()
        while not self._stopping:
            handle = WorkerHandle(
                slot,
                self.config,
                loop,
                fingerprint=self.fingerprint,
                hang_timeout=self.hang_timeout,
            )
            self._handles[slot] = handle
            try:
                await asyncio.to_thread(handle.launch)
                ready = await handle.ready
            except ModelFileError as exc:
                self._refusals[slot] = str(exc)
                self._down[slot] = f"worker {slot} refused to start"
                _log.error("worker %d refused to start: %s", slot, exc)
            except (ModelLoadError, WorkerCrashedError) as exc:
                if slot not in self._healthy:  # never ran: retrying would crash-loop
                    self._start_failure = self._start_failure or str(exc)
                    self._down[slot] = f"worker {slot} could not load the model"
                    _log.error("worker %d could not load the model: %s", slot, exc)
                    return
                _log.error("worker %d failed to start: %s", slot, exc)
                self._down[slot] = f"worker {slot} failed to start"
            except OSError as exc:  # the spawn itself failed
                _log.error("worker %d failed to start: %s", slot, exc)
                # /ready is public: the log has the details (paths in an OSError).
                self._down[slot] = f"worker {slot} failed to start"
            else:
                _log.info("worker %d ready (pid %d)", slot, ready.pid)
                self._healthy.add(slot)
                self._refusals.pop(slot, None)
                backoff = 0.2
                self._down.pop(slot, None)
                await self._feed(handle)
                self._down[slot] = f"worker {slot} (pid {handle.pid}) {handle.exit_cause}"
            if self._stopping:
                return
            self._restarts[slot] += 1
            _log.warning("%s; restarting", self._down[slot])
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _feed(self, handle: WorkerHandle) -> None:
        assert self._feeder is not None
        runner: Runner = handle if self._lender is None else _LendingRunner(handle, self._lender)
        lanes = [asyncio.create_task(self._feeder(runner)) for _ in range(LANES_PER_WORKER)]
        try:
            await handle.exited
        finally:
            for lane in lanes:
                lane.cancel()
            await asyncio.gather(*lanes, return_exceptions=True)

    async def stop(self) -> None:
        self._stopping = True
        handles = list(self._handles.values())
        await asyncio.gather(*(asyncio.to_thread(handle.stop) for handle in handles))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
