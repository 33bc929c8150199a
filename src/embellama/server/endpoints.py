"""Every route once: path (and aliases), method, handler, the wire declarations it reads
and answers, the errors it may answer (and in which API's shape), and who may call it.
The app's Starlette routes, the OpenAPI document's paths and the path -> error shape
lookup are all built from this table."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from starlette.requests import Request
from starlette.responses import Response

from embellama.server.errors import ErrorShape, ErrorShapes
from embellama.server.routes import admin, cohere
from embellama.server.routes.docs import docs, docs_asset, openapi
from embellama.server.routes.embeddings import create_embeddings
from embellama.server.routes.health import health, info, metrics, ready
from embellama.server.routes.models import get_model, list_models
from embellama.server.routes.ollama import (
    ollama_api_version,
    ollama_embed,
    ollama_embeddings,
    ollama_ps,
    ollama_show_model,
    ollama_tags,
)
from embellama.server.routes.rerank import rerank
from embellama.server.routes.tei import tei_decode, tei_embed, tei_embed_all, tei_rerank, tei_root
from embellama.server.routes.tokens import detokenize, tokenize
from embellama.server.routes.versions import model_versions, set_weights
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
from embellama.server.wire.ollama import (
    OllamaEmbeddingsRequest,
    OllamaEmbeddingsResponse,
    OllamaEmbedRequest,
    OllamaEmbedResponse,
    OllamaRunningList,
    OllamaShowRequest,
    OllamaShowResponse,
    OllamaTags,
    OllamaVersion,
)
from embellama.server.wire.rerank import RerankRequest, RerankResponse
from embellama.server.wire.tei import (
    TeiDecodeRequest,
    TeiEmbedAllRequest,
    TeiEmbedRequest,
    TeiRank,
    TeiToken,
    TeiTokenizeRequest,
)
from embellama.server.wire.tokens import (
    TOKENS_413,
    DetokenizeRequest,
    DetokenizeResponse,
    TokenizeRequest,
    TokenizeResponse,
)
from embellama.server.wire.versions import ModelVersions, WeightsChanged, WeightsRequest

__all__ = ["ENDPOINTS", "Endpoint", "error_shapes"]

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
    # The error body of this route's API; `body_shapes`: others a request's body may
    # choose (TEI's `texts` on /rerank), which the route sets (errors.set_error_shape).
    error_shape: ErrorShape = ErrorShape.OPENAI
    body_shapes: tuple[ErrorShape, ...] = ()
    # Other request bodies the route tells apart from `request` (TEI's on /tokenize).
    other_requests: tuple[type[WireModel], ...] = ()


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


_OLLAMA = ErrorShape.OLLAMA
_OLLAMA_READ = (401, 429, 500)


def _ollama(
    path: str,
    method: str,
    handler: Handler,
    summary: str,
    response: object,
    request: type[WireModel] | None = None,
    errors: tuple[int, ...] = _OLLAMA_READ,
) -> Endpoint:
    return Endpoint(
        ("/api/" + path,), method, handler, summary, request, response, errors, error_shape=_OLLAMA
    )


# /rerank is TEI's path too: its own entry answers by body (routes/tei.py).
_RERANK_PATHS = ("/v1/rerank", "/v1/reranking", "/reranking", "/v2/rerank")

_TEI = ErrorShape.TEI
_TEI_WORK = (400, 401, 404, 413, 422, 429, 499, 500, 503, 504)

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint(
        ("/v1/embeddings", "/embeddings"),
        "POST",
        create_embeddings,
        "Create embeddings (OpenAI-compatible)",
        EmbeddingsRequest,
        EmbeddingsResponse,
        _WORK,
        headers=("x-request-id", "x-tokens", "x-cache-hits", "x-prefix", "x-model-version"),
    ),
    Endpoint(
        ("/v2/embed",),
        "POST",
        cohere.embed_v2,
        "Embed texts (Cohere's v2 API: embedding_types float/int8/uint8/binary/ubinary/base64)",
        CohereEmbedRequest,
        CohereResponse,
        _WORK,
        headers=("x-request-id", "x-tokens", "x-cache-hits", "x-prefix", "x-model-version"),
        error_shape=ErrorShape.COHERE,
    ),
    Endpoint(
        ("/v1/embed",),
        "POST",
        cohere.embed_v1,
        "Embed texts (Cohere's v1 API: floats, or by type with embedding_types)",
        CohereEmbedV1Request,
        CohereFloatsResponse | CohereResponse,
        _WORK,
        headers=("x-request-id", "x-tokens", "x-cache-hits", "x-prefix", "x-model-version"),
        error_shape=ErrorShape.COHERE,
    ),
    Endpoint(
        _RERANK_PATHS,
        "POST",
        rerank,
        "Rerank documents against a query with a cross-encoder (Cohere/Jina shape)",
        RerankRequest,
        RerankResponse,
        _WORK,
        headers=("x-model-version",),
    ),
    Endpoint(
        ("/rerank",),
        "POST",
        tei_rerank,
        "Rerank: TEI's answer `[{index, score, text?}]` for TEI's body (`query` + `texts`), "
        "the Cohere/Jina answer for `documents`",
        RerankRequest,
        RerankResponse | list[TeiRank],
        _TEI_WORK,
        body_shapes=(_TEI,),
    ),
    Endpoint(
        ("/embed",),
        "POST",
        tei_embed,
        "Embed (TEI's API): one vector per input, `[[...]]`",
        TeiEmbedRequest,
        list[list[float]],
        _TEI_WORK,
        error_shape=_TEI,
        headers=("x-tokens", "x-truncated", "x-model-version"),
    ),
    Endpoint(
        ("/embed_all",),
        "POST",
        tei_embed_all,
        "Every token's vector (TEI's API), `[[[...]]]`",
        TeiEmbedAllRequest,
        list[list[list[float]]],
        _TEI_WORK,
        error_shape=_TEI,
        headers=("x-tokens", "x-model-version"),
    ),
    Endpoint(
        ("/",),
        "POST",
        tei_root,
        "TEI's root route: rerank for `query` + `texts`, else embed `inputs`",
        TeiEmbedRequest,
        list[list[float]] | list[TeiRank],
        _TEI_WORK,
        error_shape=_TEI,
    ),
    Endpoint(
        ("/tokenize",),
        "POST",
        tokenize,
        "Tokenize text: llama-server's shape for `content`; TEI's "
        "`[[{id, text, special, start, stop}]]` for TEI's body (`inputs`, no `content`)",
        TokenizeRequest,
        TokenizeResponse | list[list[TeiToken]],
        (*_COMMON, 404, 422),
        error_text={413: TOKENS_413},
        body_shapes=(_TEI,),
        other_requests=(TeiTokenizeRequest,),
    ),
    Endpoint(
        ("/decode",),
        "POST",
        tei_decode,
        "Token ids back to text (TEI's API): one string per id list",
        TeiDecodeRequest,
        list[str],
        (400, 401, 404, 413, 422, 429, 500),
        error_text={413: TOKENS_413},
        error_shape=_TEI,
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
    _ollama(
        "embed",
        "POST",
        ollama_embed,
        "Embed texts (Ollama's API; `truncate` defaults to true, vectors L2-normalized)",
        OllamaEmbedResponse,
        OllamaEmbedRequest,
        _WORK,
    ),
    _ollama(
        "embeddings",
        "POST",
        ollama_embeddings,
        "Embed one prompt (Ollama's legacy API)",
        OllamaEmbeddingsResponse,
        OllamaEmbeddingsRequest,
        _WORK,
    ),
    _ollama("tags", "GET", ollama_tags, "Served models, Ollama-style", OllamaTags),
    _ollama(
        "show",
        "POST",
        ollama_show_model,
        "One model's facts, Ollama-style",
        OllamaShowResponse,
        OllamaShowRequest,
        (*_COMMON, 404),
    ),
    _ollama("ps", "GET", ollama_ps, "Loaded models, Ollama-style", OllamaRunningList),
    _ollama("version", "GET", ollama_api_version, "The Ollama API version served", OllamaVersion),
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
    # Model versions (issue 24): a name's versions and weights; changing them routes its
    # requests anew (promotion {"v2": 100}); pinned name@version requests never move.
    _admin(
        "/models/{name}",
        "GET",
        model_versions,
        "A model name's versions and their weights",
        ModelVersions,
    ),
    _admin(
        "/models/{name}/weights",
        "POST",
        set_weights,
        "Set the weights of a name's versions: known versions, >= 0, sum above 0",
        WeightsChanged,
        WeightsRequest,
    ),
)


# Ollama's API lives under /api/: an unknown path or method there answers its shape too.
_SHAPE_PREFIXES = (("/api/", ErrorShape.OLLAMA),)


def error_shapes() -> ErrorShapes:
    """Each path's error shape, from the table (aliases included)."""
    pairs = [(path, e.error_shape) for e in ENDPOINTS for path in e.paths]
    return ErrorShapes(pairs, _SHAPE_PREFIXES)
