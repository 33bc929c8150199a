"""Every route once: path (and aliases), method, handler, the wire declarations it reads
and answers, the errors it may answer, and who may call it. The app's Starlette routes
and the OpenAPI document's paths are both built from this table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from embellama.server.routes import admin, cohere
from embellama.server.routes.docs import docs, docs_asset, openapi
from embellama.server.routes.embeddings import create_embeddings
from embellama.server.routes.health import health, info, metrics, ready
from embellama.server.routes.models import get_model, list_models
from embellama.server.routes.rerank import rerank
from embellama.server.routes.tokens import detokenize, tokenize
from embellama.server.wire.admin import (
    CacheCleared,
    ClearCacheRequest,
    ConfigView,
    Drained,
    LoadModelRequest,
    ModelLoaded,
    ModelUnloaded,
    Reloaded,
    Undrained,
    WorkerRow,
)
from embellama.server.wire.base import WireModel
from embellama.server.wire.cohere import (
    CohereEmbedRequest,
    CohereEmbedV1Request,
    CohereFloatsResponse,
    CohereResponse,
)
from embellama.server.wire.embeddings import EmbeddingsRequest, EmbeddingsResponse
from embellama.server.wire.health import Health, Info, Ready
from embellama.server.wire.models import ModelCard, ModelList
from embellama.server.wire.rerank import RerankRequest, RerankResponse
from embellama.server.wire.tokens import (
    TOKENS_413,
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
)

__all__ = ["ENDPOINTS", "Endpoint"]

Handler = Callable[[Request], Awaitable[Response]]

# Who may call: "key" (an API key, when the server has any), "public", "admin".
Access = str

_COMMON = (400, 401, 413, 429, 500)
_WORK = (*_COMMON, 404, 499, 503, 504)
_ADMIN = (400, 401, 403, 404, 413, 429, 500, 503)


@dataclass(frozen=True)
class Endpoint:
    paths: tuple[str, ...]  # Starlette's syntax ("{id:path}"); the first is canonical
    method: str
    handler: Handler
    summary: str
    request: type[WireModel] | None = None
    response: object = None  # a TypedDict, or None for a body the media type describes
    errors: tuple[int, ...] = ()
    access: Access = "key"
    media: str = "application/json"
    answer: str = "OK"  # the 200's description
    headers: tuple[str, ...] = ()  # response headers worth documenting
    # Other non-error answers: status -> (description, declaration).
    also: Mapping[int, tuple[str, object]] = field(default_factory=dict)
    error_text: Mapping[int, str] = field(default_factory=dict)


def _admin(
    path: str,
    method: str,
    handler: Handler,
    summary: str,
    response: object,
    request: type[WireModel] | None = None,
) -> Endpoint:
    return Endpoint(
        ("/admin" + path,), method, handler, summary, request, response, _ADMIN, "admin"
    )


_RERANK_PATHS = ("/v1/rerank", "/rerank", "/v1/reranking", "/reranking", "/v2/rerank")

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        ("/v1/embeddings", "/embeddings"),
        "POST",
        create_embeddings,
        "Create embeddings (OpenAI-compatible)",
        EmbeddingsRequest,
        EmbeddingsResponse,
        _WORK,
        headers=("x-request-id", "x-tokens", "x-cache-hits", "x-prefix"),
    ),
    Endpoint(
        ("/v2/embed",),
        "POST",
        cohere.embed_v2,
        "Embed texts (Cohere's v2 API: embedding_types float/int8/uint8/binary/ubinary/base64)",
        CohereEmbedRequest,
        CohereResponse,
        _WORK,
        headers=("x-request-id", "x-tokens", "x-cache-hits", "x-prefix"),
    ),
    Endpoint(
        ("/v1/embed",),
        "POST",
        cohere.embed_v1,
        "Embed texts (Cohere's v1 API: floats, or by type with embedding_types)",
        CohereEmbedV1Request,
        CohereFloatsResponse | CohereResponse,
        _WORK,
        headers=("x-request-id", "x-tokens", "x-cache-hits", "x-prefix"),
    ),
    Endpoint(
        _RERANK_PATHS,
        "POST",
        rerank,
        "Rerank documents against a query with a cross-encoder (Cohere/Jina shape)",
        RerankRequest,
        RerankResponse,
        _WORK,
    ),
    Endpoint(
        ("/tokenize",),
        "POST",
        tokenize,
        "Tokenize text (llama-server's shape)",
        TokenizeRequest,
        TokenizeResponse,
        (*_COMMON, 404),
        error_text={413: TOKENS_413},
    ),
    Endpoint(
        ("/detokenize",),
        "POST",
        detokenize,
        "Token ids back to text (llama-server's shape)",
        DetokenizeRequest,
        DetokenizeResponse,
        (*_COMMON, 404),
        error_text={413: TOKENS_413},
    ),
    Endpoint(
        ("/v1/models",),
        "GET",
        list_models,
        "Served models and aliases",
        None,
        ModelList,
        (401, 429, 500),
    ),
    Endpoint(
        ("/v1/models/{model_id:path}",),
        "GET",
        get_model,
        "One model (name or alias)",
        None,
        ModelCard,
        (401, 404, 429, 500),
    ),
    Endpoint(("/health",), "GET", health, "Alive", None, Health, access="public"),
    Endpoint(
        ("/ready",),
        "GET",
        ready,
        "Can serve now (503 while starting, draining or full)",
        None,
        Ready,
        access="public",
        also={503: ("Not ready; `reason` says why", Ready)},
    ),
    Endpoint(("/info",), "GET", info, "Every limit a client needs", None, Info, (401, 429, 500)),
    Endpoint(
        ("/metrics",),
        "GET",
        metrics,
        "Prometheus metrics (public unless --metrics-auth)",
        errors=(401, 429, 500),
        media="text/plain",
        answer="Prometheus text format",
    ),
    Endpoint(
        ("/openapi.json",),
        "GET",
        openapi,
        "This document",
        None,
        dict[str, object],
        access="public",
    ),
    Endpoint(
        ("/docs",),
        "GET",
        docs,
        "Interactive documentation (Swagger UI, bundled assets)",
        access="public",
        media="text/html",
        answer="HTML page",
    ),
    Endpoint(
        ("/docs/static/{name}",),
        "GET",
        docs_asset,
        "A Swagger UI asset bundled with the server",
        errors=(404,),
        access="public",
        media="*/*",
        answer="The file",
    ),
    # The admin API checks its key itself too (the app mounts these behind AdminGuard).
    _admin("/config", "GET", admin.config, "Settings in force, secrets masked", ConfigView),
    _admin(
        "/workers", "GET", admin.workers, "Worker processes per model", dict[str, list[WorkerRow]]
    ),
    _admin("/reload", "POST", admin.reload, "Re-read the config file and install it", Reloaded),
    _admin(
        "/drain",
        "POST",
        admin.drain,
        "Stop accepting work (503 draining); answer when idle",
        Drained,
    ),
    _admin("/undrain", "POST", admin.undrain, "Accept work again after a drain", Undrained),
    _admin(
        "/cache/clear",
        "POST",
        admin.clear_cache,
        "Clear cached vectors (all, or one model)",
        CacheCleared,
        ClearCacheRequest,
    ),
    _admin(
        "/models/{name}/load",
        "POST",
        admin.load_model,
        "Load a model: [[models]] keys, or no body for the config file's entry",
        ModelLoaded,
        LoadModelRequest,
    ),
    _admin(
        "/models/{name}/unload",
        "POST",
        admin.unload_model,
        "Unload a model (name or alias)",
        ModelUnloaded,
    ),
)
