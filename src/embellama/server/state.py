"""What the running server holds: its settings and the served models by name and alias."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from embellama.errors import ModelNotFoundError
from embellama.server.metrics import Metrics, ServiceView
from embellama.server.security import AccessControl
from embellama.service import ModelService

__all__ = ["ServerLimits", "ServerState"]


@dataclass(frozen=True)
class ServerLimits:
    max_inputs_per_request: int = 2048
    max_body_bytes: int = 16 * 1024 * 1024


@dataclass
class ServerState:
    services: list[ModelService]
    limits: ServerLimits
    access: AccessControl = field(default_factory=AccessControl)
    started: float = field(default_factory=time.time)
    metrics: Metrics = field(init=False)

    def __post_init__(self) -> None:
        self.metrics = Metrics(self._views)
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
