"""The answers of the read-only routes (/info, /ready, /v1/models, /admin/config and
/admin/workers), built as their wire declarations from the state and each model's
`info()` and `stats()`. Reads only; decides nothing."""

from __future__ import annotations

from collections.abc import Mapping

from embellama.config import Truncation
from embellama.errors import ConfigError
from embellama.pipeline import ServedModel
from embellama.server.state import ServerState
from embellama.server.tei import tei_info
from embellama.server.wire.admin import AdminModel, ConfigView, WorkerRow
from embellama.server.wire.health import Info, InfoModel, Ready, ReadyModel
from embellama.server.wire.models import ModelCard, QuantizationCard
from embellama.server.wire.versions import ModelVersion, ModelVersions
from embellama.vectors import Quantization

__all__ = [
    "config_view",
    "info_view",
    "model_card",
    "model_cards",
    "ready_view",
    "versions_view",
    "workers_view",
]


def info_view(state: ServerState, client: str | None) -> Info:
    """Every limit a client needs; `auth` shows the caller's own masked key and limits."""
    limits = state.limits
    return {
        "max_inputs_per_request": limits.max_inputs_per_request,
        "max_body_bytes": limits.max_body_bytes,
        # /tokenize answers and /detokenize requests: most token ids (413 beyond).
        "max_tokenize_tokens": limits.max_tokenize_tokens,
        "max_instruction_length": limits.max_instruction_length,
        "encoding_formats": ["float", "base64", *(kind.value for kind in Quantization)],
        "truncation_modes": [t.value for t in Truncation],
        "max_documents_per_request": limits.max_inputs_per_request,
        "auth": state.access.describe(client),
        "models": [_info_model(service) for service in state.services],
        "failed_models": state.failed,
        "cache": state.engine.cache.describe() if state.engine.cache else None,
        # Each versioned name's weights: the share of its requests each version gets.
        "versions": _all_weights(state),
        **tei_info(state),
    }


def _all_weights(state: ServerState) -> dict[str, dict[str, float]]:
    registry = state.engine.registry
    return {family: registry.weights(family) for family in registry.families()}


def _info_model(service: ServedModel) -> InfoModel:
    model, limits = service.info(), service.limits
    return {
        "name": model.name,
        "aliases": list(model.aliases),
        "version": service.version,
        "dimensions": model.dimensions,
        "max_tokens_per_input": model.context_length,
        "pooling": model.pooling.value,
        "normalization": model.normalization.value,
        "kind": model.kind.value,
        "architecture": model.architecture,
        "verified": model.verified,
        "engine": model.engine,
        "file_size": model.file_size,
        # Upper bound of one worker's KV cache, compute and output buffers and a weight
        # copy, estimated from the header before loading (model/memory.py).
        "memory_per_worker_bytes": model.memory_per_worker,
        "workers": limits.workers,
        "threads_per_worker": model.n_threads,
        "max_batch_tokens": service.config.batching.max_batch_tokens,
        "queue_size": limits.max_queued_requests,
        "queue_tokens": limits.max_queued_tokens,
        "bulk_max_wait_seconds": limits.bulk_max_wait,
        "max_chunks_per_input": limits.max_chunks_per_input,
        "max_token_vectors_per_request": limits.max_token_vectors,
        "request_timeout_seconds": limits.request_timeout,
        "worker_hang_timeout_seconds": limits.worker_hang_timeout,
        "prompts": service.prompts.describe() if service.prompts else None,
    }


def ready_view(state: ServerState) -> tuple[Ready, int]:
    """The body and its status: 503 with the reason an operator reads (a balancer needs
    only the status); "degraded" while some models failed and the others serve."""
    models: dict[str, ReadyModel] = {
        s.name: {
            "ready": s.ready,
            "workers_alive": s.workers_alive,
            "queued": s.queued_requests,
            "reason": s.reason,
        }
        for s in (service.stats() for service in state.services)
    }
    reason = _unready_reason(state, models)
    body: Ready = {"status": "ready", "models": models}
    if reason is not None:
        body["status"], body["reason"] = "unavailable", reason
    if state.failed:
        body["failed"] = state.failed
        body["status"] = "degraded" if reason is None else body["status"]
    return body, 200 if reason is None else 503


def _unready_reason(state: ServerState, models: Mapping[str, ReadyModel]) -> str | None:
    if state.draining:
        return "draining: POST /admin/undrain to serve again"
    if not models:
        return "no model is loaded"
    for name, model in models.items():
        if not model["ready"]:
            dead = not model["workers_alive"]
            return f"model {name!r} has no live worker" if dead else f"model {name!r} is full"
    return None


def model_card(service: ServedModel, name: str, created: int) -> ModelCard:
    info = service.info()
    return {
        "id": name,
        "object": "model",
        "created": created,
        "owned_by": "embellama",
        "root": info.name,
        "aliases": list(info.aliases),
        "version": service.version,
        "dimensions": info.dimensions,
        "context_length": info.context_length,
        "kind": "rerank" if info.kind.value == "rerank" else "embedding",
        "architecture": info.architecture,
        "verified": info.verified,
        "engine": info.engine,
        "pooling": info.pooling.value,
        "normalization": info.normalization.value,
        "prompts": service.prompts.describe() if service.prompts else None,
        "quantization": quantization_card(service),
        "status": "ready",
    }


def quantization_card(service: ServedModel) -> QuantizationCard | None:
    """int8/uint8 ranges of the default output shape (null until calibrated; the list
    (`/v1/models`) never calibrates, one card (`/v1/models/{id}`) does)."""
    if service.kind.value != "embedding":
        return None
    ranges = service.known_ranges()
    return {
        "types": [kind.value for kind in Quantization],
        "calibration": service.calibration.source,
        "calibration_texts": len(service.calibration.texts),
        "ranges": {"low": ranges.low.tolist(), "high": ranges.high.tolist()} if ranges else None,
    }


def model_cards(state: ServerState) -> list[ModelCard]:
    """Each model under its name and aliases; a versioned name once with its versions'
    weights (and under its aliases), then each version as "name@version"."""
    created = int(state.started)
    registry = state.engine.registry
    cards: list[ModelCard] = []
    for family in registry.families():
        first = registry.exact(f"{family}@{next(iter(registry.weights(family)))}")
        for name in (family, *first.aliases):
            card = model_card(first, name, created)
            card["root"], card["versions"] = family, registry.weights(family)
            cards.append(card)
    for s in state.services:
        names = (s.name,) if s.config.family is not None else (s.name, *s.aliases)
        cards += [model_card(s, name, created) for name in names]
    # A model that failed to start is listed with why, so a client sees it is missing.
    failed: list[ModelCard] = [
        {
            "id": name,
            "object": "model",
            "created": created,
            "owned_by": "embellama",
            "status": "failed",
            "error": reason,
        }
        for name, reason in state.failed.items()
    ]
    return cards + failed


def config_view(state: ServerState) -> ConfigView:
    """Settings in force, secrets masked (the deployment holds them masked)."""
    return {
        "server": dict(state.deployment.settings),
        "models_dir": str(state.deployment.models_dir),
        "models": [_admin_model(state, s) for s in state.services],
        "restart_required": state.restart_required,
    }


def _admin_model(state: ServerState, s: ServedModel) -> AdminModel:
    return {
        "name": s.name,
        "aliases": list(s.aliases),
        "path": str(s.config.path),
        "fingerprint": s.model.fingerprint,
        "cache_tag": s.cache_tag.tag.decode(),
        "cache_version": s.config.cache_version,
        "pooling": s.pooling.value,
        "normalization": s.config.normalization.value,
        "n_ctx": s.model.limit,
        "threads": s.config.resolved_threads,
        "n_gpu_layers": s.config.n_gpu_layers,
        "max_batch_tokens": s.config.batching.max_batch_tokens,
        "max_batch_sequences": s.config.batching.max_batch_sequences,
        "workers": s.limits.workers,
        "loaded_by": "admin" if s.name in state.admin_loaded else "config",
    }


def versions_view(state: ServerState, name: str) -> ModelVersions:
    """A name's versions and weights; a model without versions shows its one ("1")."""
    registry = state.engine.registry
    try:
        family = registry.family_of(name)
    except ConfigError:  # a plain model: its one version, all its name's requests
        only = registry.exact(name)
        return {
            "model": only.name,
            "aliases": list(only.aliases),
            "versioned": False,
            "versions": [_version_row(state, only, 100.0)],
        }
    weights = registry.weights(family)
    members = [registry.exact(f"{family}@{version}") for version in weights]
    return {
        "model": family,
        "aliases": sorted({alias for m in members for alias in m.aliases}),
        "versioned": True,
        "versions": [_version_row(state, m, weights[m.version]) for m in members],
    }


def _version_row(state: ServerState, s: ServedModel, weight: float) -> ModelVersion:
    return {
        "version": s.version,
        "name": s.name,
        "weight": weight,
        "path": str(s.config.path),
        "fingerprint": s.model.fingerprint,
        "cache_tag": s.cache_tag.tag.decode(),
        "kind": s.kind.value,
        "loaded_by": "admin" if s.name in state.admin_loaded else "config",
    }


def workers_view(state: ServerState) -> dict[str, list[WorkerRow]]:
    return {
        service.name: [
            {
                "slot": w.slot,
                "pid": w.pid,
                "state": w.state,
                "batches": w.batches,
                "restarts": w.restarts,
                "in_flight": w.in_flight,
                "error": w.error,
            }
            for w in service.workers()
        ]
        for service in state.services
    }
