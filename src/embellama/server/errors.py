"""One table from domain errors to HTTP statuses, rendered in each route family's shape.

Routes never catch: they raise domain errors (or `ApiError` for HTTP-only faults) and
the handlers registered here answer in the shape of the API the path belongs to:
OpenAI's `{"error": {"message", "type", "param", "code"}}` (the default), Ollama's
`{"error": "..."}`, TEI's `{"error": "...", "error_type": "..."}` with TEI's 413/422,
or Cohere's `{"message": "..."}`.
The shape is chosen once per request from its path (`ErrorShapes`, built from the route
table) and kept in the scope, where a route that tells APIs apart by body may change it.
"""

from __future__ import annotations

import enum
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send

from embellama import errors
from embellama.server.wire.errors import CohereError, Error, OllamaError, TeiError, TeiErrorType

__all__ = [
    "ApiError",
    "ErrorShape",
    "ErrorShapes",
    "error_response",
    "handle_domain_error",
    "rejection_reason",
    "set_error_shape",
    "shape_of",
    "shaped_error",
]

_log = logging.getLogger("embellama.server")


@dataclass
class ApiError(Exception):
    """An HTTP-level fault (bad JSON, body too large, unknown route) with its OpenAI fields."""

    status: int
    message: str
    type: str = "invalid_request_error"
    param: str | None = None
    code: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # An input over the context: the fault without advice, for APIs that spell
    # truncation their own way (their advice follows it; see _TOO_LONG_ADVICE).
    too_long: str | None = None


# (status, type, code); the most specific class must come first.
_TABLE: list[tuple[type[errors.EmbellamaError], int, str, str | None]] = [
    (errors.ModelNotFoundError, 404, "invalid_request_error", "model_not_found"),
    (errors.InputTooLongError, 400, "invalid_request_error", "context_length_exceeded"),
    (errors.TokenLimitError, 413, "invalid_request_error", "too_many_tokens"),
    (errors.InvalidDimensionsError, 400, "invalid_request_error", "invalid_dimensions"),
    (errors.InvalidTokenError, 400, "invalid_request_error", "invalid_token_id"),
    (errors.PoisonInputError, 400, "invalid_request_error", "input_crashed_worker"),
    (errors.WrongModelKindError, 400, "invalid_request_error", "wrong_model_kind"),
    (errors.InputError, 400, "invalid_request_error", "invalid_input"),
    (errors.ConfigError, 400, "invalid_request_error", "invalid_value"),
    (errors.ModelFileError, 400, "invalid_request_error", "invalid_model_file"),
    (errors.ModelLoadError, 400, "invalid_request_error", "model_load_failed"),
    (errors.OverloadedError, 429, "server_overloaded", "queue_full"),
    (errors.RequestTimeoutError, 504, "timeout_error", "request_timeout"),
    (errors.NoWorkerError, 503, "service_unavailable", "no_worker"),
    (errors.DrainingError, 503, "service_unavailable", "draining"),
    (errors.WorkerCrashedError, 503, "service_unavailable", "worker_crashed"),
    (errors.ModelUnloadingError, 503, "service_unavailable", "model_unloading"),
    (errors.EngineClosedError, 503, "service_unavailable", "engine_closed"),
    (errors.CacheUnavailableError, 503, "service_unavailable", "cache_unavailable"),
    (errors.AuditUnavailableError, 503, "service_unavailable", "audit_unavailable"),
    (errors.EmbellamaError, 500, "server_error", "internal_error"),
]


def to_api_error(exc: errors.EmbellamaError) -> ApiError:
    for kind, status, error_type, code in _TABLE:
        if isinstance(exc, kind):
            param = _param_for(exc)
            api = ApiError(status, str(exc), error_type, param, code)
            if isinstance(exc, errors.InputTooLongError):
                api.too_long = exc.reason
            if isinstance(exc, errors.OverloadedError):
                api.headers["Retry-After"] = str(max(1, math.ceil(exc.retry_after)))
            return api
    raise AssertionError("EmbellamaError is the last row")  # pragma: no cover


def _param_for(exc: errors.EmbellamaError) -> str | None:
    if isinstance(exc, errors.ModelNotFoundError):
        return "model"
    if isinstance(exc, errors.InvalidDimensionsError):
        return "dimensions"
    if isinstance(exc, errors.InputError):
        if exc.param is not None:
            return exc.param
        return "input" if exc.index is None else f"input[{exc.index}]"
    if isinstance(exc, errors.ConfigError):
        return getattr(exc, "param", None)
    return None


def rejection_reason(error: ApiError) -> str:
    """The `reason` label of embellama_rejected_requests for an error response."""
    if error.status in (401, 403):
        return "auth"
    if error.status == 429:
        return "rate_limit" if error.code == "rate_limit_exceeded" else "overload"
    if error.status == 504:
        return "timeout"
    if error.status >= 500:
        return "unavailable"
    return "validation"


def _request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "unknown"))


def _count(request: Request, error: ApiError) -> None:
    state = getattr(request.app.state, "embellama", None)
    if state is not None:
        state.metrics.rejected.labels(rejection_reason(error)).inc()
        state.audit.refused(request.scope, error.status, error.code)  # a tokens budget


class ErrorShape(enum.StrEnum):
    """Which API's error body a route answers with."""

    OPENAI = "openai"
    OLLAMA = "ollama"
    TEI = "tei"
    COHERE = "cohere"


_SHAPE_KEY = "error_shape"


class ErrorShapes:
    """The error shape of a request path: exact paths, Starlette path templates and
    prefixes (an unknown path under Ollama's `/api/`), OpenAI's anywhere else."""

    def __init__(
        self,
        paths: Iterable[tuple[str, ErrorShape]],
        prefixes: Iterable[tuple[str, ErrorShape]] = (),
    ) -> None:
        self._exact: dict[str, ErrorShape] = {}
        self._templates: list[tuple[re.Pattern[str], ErrorShape]] = []
        for path, shape in paths:
            if shape is ErrorShape.OPENAI:
                continue
            if "{" in path:
                self._templates.append((compile_path(path)[0], shape))
            else:
                self._exact[path] = shape
        self._prefixes = tuple(prefixes)

    def of(self, path: str) -> ErrorShape:
        found = self._exact.get(path)
        if found is not None:
            return found
        for pattern, shape in self._templates:
            if pattern.match(path):
                return shape
        for prefix, shape in self._prefixes:
            if path.startswith(prefix):
                return shape
        return ErrorShape.OPENAI


def set_error_shape(scope: Scope, shape: ErrorShape) -> None:
    """Answer this request's errors in `shape` (a route that tells APIs apart by body)."""
    scope.setdefault("state", {})[_SHAPE_KEY] = shape


def shape_of(scope: Scope) -> ErrorShape:
    shape: ErrorShape = scope.get("state", {}).get(_SHAPE_KEY, ErrorShape.OPENAI)
    return shape


# TEI answers its input-validation errors 413 (too many inputs, an input too long) and a
# body it cannot read 422; an empty input is its own type at 400.
_TEI_413 = frozenset(
    {
        "request_too_large",
        "context_length_exceeded",
        "too_many_inputs",
        "too_many_tokens",
        "too_many_values",
    }
)


def _tei(error: ApiError) -> tuple[int, TeiError]:
    status = error.status
    kind: TeiErrorType = "Validation"
    if status == 400 and error.code == "empty_input":
        kind = "Empty"
    elif status == 400 and error.code == "invalid_token_id":  # /decode: TEI's tokenizer fault
        status, kind = 422, "Tokenizer"
    elif status in (400, 413):
        status = 413 if status == 413 or error.code in _TEI_413 else 422
    elif status == 429:
        kind = "Overloaded"
    elif status == 503:
        kind = "Unhealthy"
    elif status >= 500 or status == 499:
        kind = "Backend"
    return status, {"error": error.message, "error_type": kind}


# How each API asks for a cut, in its own field names and values.
_TOO_LONG_ADVICE = {
    ErrorShape.OLLAMA: "shorten it, or leave truncate true (Ollama's default) to cut it to fit",
    ErrorShape.TEI: "shorten it, or pass truncate: true (truncation_direction picks the side "
    "cut: Right, the default, or Left)",
    ErrorShape.COHERE: "shorten it, or pass truncate END or START to cut it to fit",
}


def _body(
    error: ApiError, shape: ErrorShape
) -> tuple[int, Error | OllamaError | TeiError | CohereError]:
    advice = _TOO_LONG_ADVICE.get(shape)
    if error.too_long is not None and advice is not None:
        error = replace(error, message=f"{error.too_long}; {advice}")
    if shape is ErrorShape.OLLAMA:
        return error.status, {"error": error.message}
    if shape is ErrorShape.COHERE:  # the cohere SDK raises its typed error with this body
        return error.status, {"message": error.message}
    if shape is ErrorShape.TEI:
        return _tei(error)
    body: Error = {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }
    return error.status, body


def error_response(error: ApiError, shape: ErrorShape = ErrorShape.OPENAI) -> Response:
    status, body = _body(error, shape)
    return Response(orjson.dumps(body), status, error.headers, "application/json")


def shaped_error(error: ApiError) -> ASGIApp:
    """`error` as an ASGI app that answers in the shape of the request it is sent to (for
    the middlewares, which answer before any route ran)."""

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(error, shape_of(scope))(scope, receive, send)

    return answer


async def handle_domain_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ApiError):
        api = exc
    else:
        assert isinstance(exc, errors.EmbellamaError)
        api = to_api_error(exc)
        if api.status >= 500:
            _log.warning("request failed (request id %s): %s", _request_id(request), exc)
        if isinstance(exc, errors.InternalError):
            # Its text is an internal exception's repr: paths, values, library internals.
            # The log has it; the client gets the id to quote.
            api.message = f"internal server error (request id {_request_id(request)})"
    _count(request, api)
    return error_response(api, shape_of(request.scope))
