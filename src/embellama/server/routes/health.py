"""`/health` (alive), `/ready` (can serve now), `/info` (every limit a client needs)."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response

from embellama.config import Truncation
from embellama.server.state import ServerState

__all__ = ["health", "info", "metrics", "ready"]


def _json(value: object, status: int = 200) -> Response:
    return Response(orjson.dumps(value), status, media_type="application/json")


async def health(request: Request) -> Response:
    return _json({"status": "ok"})


async def ready(request: Request) -> Response:
    state: ServerState = request.app.state.embellama
    models = {
        s.name: {
            "ready": s.ready,
            "workers_alive": s.workers_alive,
            "queued": s.queued_requests,
            "reason": s.reason,
        }
        for s in (service.stats() for service in state.services)
    }
    reason = _unready_reason(state, models)
    body: dict[str, object] = {"status": "ready", "models": models}
    if reason is not None:
        body.update(status="unavailable", reason=reason)
    if state.failed:  # the others serve: ready, but say what is missing
        body["failed"] = state.failed
        body["status"] = "degraded" if reason is None else body["status"]
    return _json(body, 200 if reason is None else 503)


def _unready_reason(state: ServerState, models: Mapping[str, Mapping[str, object]]) -> str | None:
    """Why /ready is a 503, for an operator reading it (a balancer needs only the status)."""
    if state.draining:
        return "draining: POST /admin/undrain to serve again"
    if not models:
        return "no model is loaded"
    for name, model in models.items():
        if not model["ready"]:
            dead = not model["workers_alive"]
            return f"model {name!r} has no live worker" if dead else f"model {name!r} is full"
    return None


async def info(request: Request) -> Response:
    state: ServerState = request.app.state.embellama
    models = []
    for service in state.services:
        model = service.info()
        models.append(
            {
                "name": model.name,
                "aliases": list(model.aliases),
                "dimensions": model.dimensions,
                "max_tokens_per_input": model.context_length,
                "pooling": model.pooling.value,
                "normalization": model.normalization.value,
                "kind": model.kind.value,
                "architecture": model.architecture,
                "verified": model.verified,
                "file_size": model.file_size,
                # Upper bound of one worker's KV cache, compute and output buffers and a
                # weight copy, estimated from the header before loading (model/memory.py).
                "memory_per_worker_bytes": model.memory_per_worker,
                "workers": service.limits.workers,
                "threads_per_worker": model.n_threads,
                "max_batch_tokens": service.config.batching.max_batch_tokens,
                "queue_size": service.limits.max_queued_requests,
                "queue_tokens": service.limits.max_queued_tokens,
                "bulk_max_wait_seconds": service.limits.bulk_max_wait,
                "max_chunks_per_input": service.limits.max_chunks_per_input,
                "max_token_vectors_per_request": service.limits.max_token_vectors,
                "request_timeout_seconds": service.limits.request_timeout,
                "worker_hang_timeout_seconds": service.limits.worker_hang_timeout,
                "prompts": service.prompts.describe() if service.prompts else None,
            }
        )
    return _json(
        {
            "max_inputs_per_request": state.limits.max_inputs_per_request,
            "max_body_bytes": state.limits.max_body_bytes,
            # /tokenize answers and /detokenize requests: most token ids (413 beyond).
            "max_tokenize_tokens": state.limits.max_tokenize_tokens,
            "max_instruction_length": state.limits.max_instruction_length,
            "encoding_formats": ["float", "base64"],
            "truncation_modes": [t.value for t in Truncation],
            # Rerank: documents per request, and tokens per query-document pair (each
            # model's max_tokens_per_input).
            "max_documents_per_request": state.limits.max_inputs_per_request,
            # The caller's own masked key and limits: one tenant never sees another's.
            "auth": state.access.describe(request.scope["state"].get("client")),
            "models": models,
            "failed_models": state.failed,
            "cache": state.engine.cache.describe() if state.engine.cache else None,
        }
    )


async def metrics(request: Request) -> Response:
    state: ServerState = request.app.state.embellama
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
