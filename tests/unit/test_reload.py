"""`ServerState.reload` over fake backends: what it keeps, starts and retires, and that a
failed start changes nothing. No worker processes; the models are vocabulary-only loads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from embellama.config import ModelConfig, ModelSpec, ServiceLimits
from embellama.errors import NoWorkerError
from embellama.options import EmbedOptions
from embellama.server.state import Deployment, ServerState
from tests.unit.fake_backend import FakeBackend, FakeBackends


def spec(path: Path, name: str, timeout: float | None = None) -> ModelSpec:
    return ModelSpec(ModelConfig(path=path, name=name), ServiceLimits(request_timeout=timeout))


class Source:
    """The configuration a reload re-reads: whatever the test set last."""

    def __init__(self, *models: ModelSpec) -> None:
        self.deployment = Deployment(models=models)

    def set(self, *models: ModelSpec) -> None:
        self.deployment = Deployment(models=models)

    def __call__(self) -> Deployment:
        return self.deployment


def with_state(
    source: Source,
    backends: FakeBackends,
    test: Callable[[ServerState], Awaitable[None]],
) -> None:
    async def body() -> None:
        state = ServerState(source(), source=source, backends=backends)
        await state.start()
        try:
            await test(state)
        finally:
            await state.stop()

    asyncio.run(body())


async def until_stopped(backend: FakeBackend) -> None:
    async with asyncio.timeout(2):
        while not backend.stopped:
            await asyncio.sleep(0.005)


def test_reload_keeps_unchanged_starts_changed_and_retires_removed(minilm_gguf: Path) -> None:
    backends = FakeBackends()
    source = Source(*(spec(minilm_gguf, name) for name in ("a", "b", "d")))

    async def test(state: ServerState) -> None:
        before = {service.name: service for service in state.services}
        source.set(
            spec(minilm_gguf, "a"), spec(minilm_gguf, "b", timeout=5), spec(minilm_gguf, "c")
        )
        assert await state.reload() == ["a", "b", "c"]
        after = {service.name: service for service in state.services}
        assert list(after) == ["a", "b", "c"]
        assert after["a"] is before["a"]
        assert after["b"] is not before["b"] and after["b"].limits.request_timeout == 5
        assert len(backends.built["a"]) == 1  # not loaded again
        old_b, new_b = backends.built["b"]
        await until_stopped(old_b)
        await until_stopped(backends.built["d"][0])
        assert not new_b.stopped and not backends.built["a"][0].stopped
        assert (await after["b"].embed(["x"], EmbedOptions())).vectors.shape == (1, 384)

    with_state(source, backends, test)


def test_a_failing_start_leaves_everything_as_it_was(minilm_gguf: Path) -> None:
    backends = FakeBackends(failing={"bad"})
    source = Source(spec(minilm_gguf, "a"), spec(minilm_gguf, "b"))

    async def test(state: ServerState) -> None:
        before = state.services
        deployment = state.deployment
        source.set(
            spec(minilm_gguf, "a"), spec(minilm_gguf, "b", timeout=5), spec(minilm_gguf, "bad")
        )
        with pytest.raises(NoWorkerError, match="no worker for model 'bad' could start"):
            await state.reload()
        assert all(now is then for now, then in zip(state.services, before, strict=True))
        assert state.deployment is deployment
        old_b, started_b = backends.built["b"]
        assert started_b.stopped  # started for the reload, stopped when it failed
        assert not old_b.stopped
        assert (await state.embedder("b").embed(["x"], EmbedOptions())).vectors.shape == (1, 384)

    with_state(source, backends, test)


def test_an_admin_loaded_model_survives_a_reload_that_does_not_name_it(minilm_gguf: Path) -> None:
    backends = FakeBackends()
    source = Source(spec(minilm_gguf, "a"))

    async def test(state: ServerState) -> None:
        extra = await state.load_model(spec(minilm_gguf, "extra"))
        assert await state.reload() == ["a", "extra"]
        assert state.resolve("extra") is extra
        source.set(spec(minilm_gguf, "a"), spec(minilm_gguf, "extra", timeout=3))
        await state.reload()  # now the file names it: the file's version serves
        assert state.resolve("extra") is not extra
        assert state.resolve("extra").limits.request_timeout == 3
        await until_stopped(backends.built["extra"][0])

    with_state(source, backends, test)
