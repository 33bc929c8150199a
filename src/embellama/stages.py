"""Where one call spent its time, stage by stage, for whoever traces it (the server's
OpenTelemetry spans); the pipeline and the scheduler note stages here.

Nothing is noted unless a caller opened a `StageLog` for the current context: then a
stage costs an append; otherwise `current()` is one ContextVar lookup and the caller's
branch. Must not know about HTTP or OpenTelemetry, and never holds input text.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = ["Stage", "StageLog", "current", "recording"]

# Attribute values a tracer can carry as they are: names, counts, flags.
Value = str | int | float | bool


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of one call: `time.perf_counter()` seconds at its start and end."""

    name: str
    start: float
    end: float
    attributes: Mapping[str, Value] = field(default_factory=dict)


@dataclass(slots=True)
class StageLog:
    """The stages of one call, in the order they ended, and when its pipeline returned
    (the rest, until the response is sent, is encoding it)."""

    stages: list[Stage] = field(default_factory=list)
    finished: float | None = None

    def add(self, name: str, start: float, end: float, **attributes: Value) -> None:
        self.stages.append(Stage(name, start, end, attributes))


_log: ContextVar[StageLog | None] = ContextVar("embellama_stage_log", default=None)


def current() -> StageLog | None:
    """The log of the call running in this context, or None when nobody traces it."""
    return _log.get()


@contextmanager
def recording() -> Iterator[StageLog]:
    """Note the stages of what runs inside the block (and in tasks it starts)."""
    log = StageLog()
    token = _log.set(log)
    try:
        yield log
    finally:
        _log.reset(token)
