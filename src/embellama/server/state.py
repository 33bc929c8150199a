"""What the running server holds: its settings and the served models by name and alias."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from embellama.errors import ModelNotFoundError
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
    started: float = field(default_factory=time.time)

    def resolve(self, name: str | None) -> ModelService:
        """`None` (no `model` in the request) means the first model."""
        for service in self.services:
            if name is None or name == service.name or name in service.config.aliases:
                return service
        names = [n for s in self.services for n in (s.name, *s.config.aliases)]
        raise ModelNotFoundError(name or "(default)", names)
