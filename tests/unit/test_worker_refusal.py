"""A worker's refusal as the pool sees it, without spawning: the handle's ready future
carries the reason, and the handle never counts as alive, even before the process exits."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from embellama.backends.messages import WorkerReady, WorkerRefused
from embellama.backends.pool import WorkerHandle
from embellama.config import ModelConfig
from embellama.errors import ModelFileError


def test_a_refused_worker_is_not_alive() -> None:
    async def run() -> None:
        handle = WorkerHandle(0, ModelConfig(Path("m.gguf")), asyncio.get_running_loop(), "ab")
        handle._deliver(WorkerRefused("m.gguf is not the file this model was loaded from"))
        assert not handle.alive  # its process has not exited yet
        with pytest.raises(ModelFileError, match="is not the file"):
            await handle.ready
        handle._deliver(WorkerReady(pid=1, dimensions=8))  # too late: stays refused
        assert not handle.alive

    asyncio.run(run())


def test_a_ready_worker_is_alive() -> None:
    async def run() -> None:
        handle = WorkerHandle(0, ModelConfig(Path("m.gguf")), asyncio.get_running_loop(), "ab")
        handle._deliver(WorkerReady(pid=1, dimensions=8))
        assert handle.alive

    asyncio.run(run())
