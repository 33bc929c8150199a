"""One table from domain errors to HTTP statuses, in OpenAI's error shape.

Routes never catch: they raise domain errors (or `ApiError` for HTTP-only faults) and
the handlers registered here answer `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import orjson
from starlette.requests import Request
from starlette.responses import Response

from embellama import errors
from embellama.server.wire.errors import Error

__all__ = [
    "ApiError",
    "error_response",
    "handle_domain_error",
    "rejection_reason",
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


def error_response(error: ApiError) -> Response:
    body: Error = {
        "error": {
            "message": error.message,
            "type": error.type,
            "param": error.param,
            "code": error.code,
        }
    }
    return Response(orjson.dumps(body), error.status, error.headers, "application/json")


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
    return error_response(api)
