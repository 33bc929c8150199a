"""What the running server holds, and the only code that changes it while it runs.

Served models by name and alias, limits, access control, metrics. Reload, load,
unload and drain go through here: new models are started before they are swapped in,
and a replaced model keeps answering what it accepted until its queue is empty.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from embellama.config import ModelConfig
from embellama.errors import ConfigError, ModelNotFoundError, NoWorkerError
from embellama.server.metrics import Metrics, ServiceView
from embellama.server.security import AccessControl
from embellama.service import ModelService, ServiceLimits

__all__ = ["Deployment", "ServerLimits", "ServerState"]

_log = logging.getLogger("embellama.server")


@dataclass(frozen=True)
class ServerLimits:
    max_inputs_per_request: int = 2048
    max_body_bytes: int = 16 * 1024 * 1024


@dataclass(frozen=True)
class Deployment:
    """Everything a (re)load installs: the models and the request-facing settings."""

    models: tuple[tuple[ModelConfig, ServiceLimits], ...]
    limits: ServerLimits = field(default_factory=ServerLimits)
    access: AccessControl = field(default_factory=AccessControl)


@dataclass
class ServerState:
    services: list[ModelService]
    limits: ServerLimits
    access: AccessControl = field(default_factory=AccessControl)
    # Re-reads the configuration for a reload; None when there is nothing to re-read.
    source: Callable[[], Deployment] | None = None
    started: float = field(default_factory=time.time)
    draining: bool = False
    metrics: Metrics = field(init=False)
    _change_lock: asyncio.Lock = field(init=False)
    _retiring: set[asyncio.Task[None]] = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = Metrics(self._views)
        self._change_lock = asyncio.Lock()
        self._retiring = set()
        for service in self.services:
            self._observe(service)

    def _views(self) -> list[ServiceView]:
        return [
            ServiceView(s.name, lambda s=s: s.scheduler.queued_requests, s.pool.status)  # type: ignore[misc]
            for s in self.services
        ]

    def _observe(self, service: ModelService) -> None:
        name = service.name
        service.scheduler.batch_observer = lambda sizes: self.metrics.observe_batch(name, sizes)

    def resolve(self, name: str | None) -> ModelService:
        """`None` (no `model` in the request) means the first model."""
        for service in self.services:
            if name is None or name == service.name or name in service.config.aliases:
                return service
        names = [n for s in self.services for n in (s.name, *s.config.aliases)]
        raise ModelNotFoundError(name or "(default)", names)

    # -- changes while running ---------------------------------------------------------

    async def reload(self) -> list[str]:
        """Re-read the configuration and install it; on any error nothing changes."""
        if self.source is None:
            raise ConfigError("this server was not started with a config file to reload")
        async with self._change_lock:
            deployment = await asyncio.to_thread(self.source)
            current = {service.name: service for service in self.services}
            kept: list[ModelService] = []
            fresh: list[ModelService] = []
            try:
                for config, limits in deployment.models:
                    old = current.get(config.resolved_name)
                    if old is not None and old.config == config and old.limits == limits:
                        kept.append(old)
                    else:
                        fresh.append(await self._start(config, limits))
            except BaseException:
                await asyncio.gather(*(service.stop() for service in fresh))
                raise
            by_name = {s.name: s for s in (*kept, *fresh)}
            self.services = [by_name[config.resolved_name] for config, _ in deployment.models]
            self.limits, self.access = deployment.limits, deployment.access
            for service in current.values():
                if service not in kept:
                    self._retire(service)
            _log.info("configuration reloaded: %s", ", ".join(by_name))
            return list(by_name)

    async def load_model(self, config: ModelConfig, limits: ServiceLimits) -> ModelService:
        async with self._change_lock:
            taken = {n for s in self.services for n in (s.name, *s.config.aliases)}
            clash = taken & {config.resolved_name, *config.aliases}
            if clash:
                raise ConfigError(f"model name or alias {sorted(clash)[0]!r} is already served")
            service = await self._start(config, limits)
            self.services = [*self.services, service]
            return service

    async def unload_model(self, name: str) -> None:
        async with self._change_lock:
            service = next((s for s in self.services if s.name == name), None)
            if service is None:
                raise ModelNotFoundError(name, [s.name for s in self.services])
            self.services = [s for s in self.services if s is not service]
            await self._drain(service)
            await service.stop()

    async def drain(self, timeout: float = 300.0) -> bool:
        """Stop accepting embeddings; return once every queue is empty (True) or on timeout."""
        self.draining = True
        deadline = time.monotonic() + timeout
        while any(s.scheduler.queued_requests for s in self.services):
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    async def stop(self) -> None:
        await asyncio.gather(*self._retiring, return_exceptions=True)
        await asyncio.gather(*(service.stop() for service in self.services))

    async def _start(self, config: ModelConfig, limits: ServiceLimits) -> ModelService:
        service = await asyncio.to_thread(ModelService, config, limits)
        try:
            await service.start()
        except NoWorkerError:
            await service.stop()
            raise
        self._observe(service)
        return service

    def _retire(self, service: ModelService) -> None:
        task = asyncio.create_task(self._drain_and_stop(service))
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def _drain_and_stop(self, service: ModelService) -> None:
        await self._drain(service)
        await service.stop()

    @staticmethod
    async def _drain(service: ModelService) -> None:
        deadline = time.monotonic() + service.limits.request_timeout + 5
        while service.scheduler.queued_requests and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
