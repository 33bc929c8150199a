"""`/admin/*`: the bodies the admin API takes and the answers it gives."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import ConfigDict, model_validator
from typing_extensions import TypedDict

from embellama.server.wire.base import WireModel, parse, refuse

__all__ = [
    "AdminModel",
    "CacheCleared",
    "ClearCacheRequest",
    "ConfigView",
    "Drained",
    "LoadModelRequest",
    "ModelLoaded",
    "ModelUnloaded",
    "Reloaded",
    "Undrained",
    "WorkerRow",
    "parse_clear_cache_request",
]

_EMPTY_OR_MODEL = 'the body must be empty or {"model": "<name>"}'


class ClearCacheRequest(WireModel):
    """Empty (every model's vectors) or `{"model": name}` (one model's); nothing else."""

    model: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _only_model(cls, fields: Any) -> Any:
        if set(fields) - {"model"} or not isinstance(fields.get("model"), str | None):
            raise refuse(_EMPTY_OR_MODEL, code=None, param="model")
        return fields


def parse_clear_cache_request(body: Mapping[str, Any]) -> ClearCacheRequest:
    return parse(ClearCacheRequest, body)


class LoadModelRequest(WireModel):
    """A `[[models]]` entry's keys (`path` under --models-dir); read by the config layer,
    which knows every model key, so this declaration only documents the body."""

    model_config = ConfigDict(extra="allow")
    path: str


class AdminModel(TypedDict):
    name: str
    aliases: list[str]
    path: str
    fingerprint: str
    cache_tag: str
    cache_version: object
    pooling: str
    normalization: str
    n_ctx: int
    threads: int
    n_gpu_layers: int
    max_batch_tokens: int
    max_batch_sequences: object
    workers: int
    loaded_by: Literal["admin", "config"]


class ConfigView(TypedDict):
    """Settings in force, secrets masked."""

    server: dict[str, object]
    models_dir: str
    models: list[AdminModel]
    restart_required: object


class Reloaded(TypedDict):
    status: Literal["reloaded"]
    models: object
    restart_required: object


class WorkerRow(TypedDict):
    slot: int
    pid: int | None
    state: str
    batches: int
    restarts: int
    in_flight: int
    error: str | None


class ModelLoaded(TypedDict):
    status: Literal["loaded"]
    model: str
    workers: int


class CacheCleared(TypedDict):
    status: Literal["cleared"]
    model: str | None
    removed: dict[str, int]


class ModelUnloaded(TypedDict):
    status: Literal["unloaded"]
    model: str


class Drained(TypedDict):
    status: str
    queued: int


class Undrained(TypedDict):
    status: Literal["serving"]
    was_draining: bool
