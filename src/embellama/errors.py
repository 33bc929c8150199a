"""Every exception embellama raises, in one tree.

Domain errors only: nothing here knows about HTTP. The server maps these types to
status codes in a single table.

    EmbellamaError
    ├── ConfigError                  invalid configuration value (also a ValueError)
    ├── ModelError
    │   ├── ModelNotFoundError       no loaded model has this name or alias
    │   ├── ModelFileError           path missing, not GGUF, truncated, unsupported
    │   │   └── DefaultModelNotPreparedError
    │   └── ModelLoadError           llama.cpp refused a file that looked valid
    ├── InputError                   a caller's input cannot be embedded (also a ValueError)
    │   ├── EmptyInputError          no inputs, or an empty string / token list
    │   ├── InvalidTextError         text that is not valid Unicode (lone surrogates)
    │   ├── InvalidTokenError        token id outside the model's vocabulary
    │   ├── InputTooLongError        more tokens than the context holds, truncate off
    │   ├── TokenLimitError          more tokens than one tokenize call may return
    │   ├── InvalidDimensionsError   `dimensions` outside 1..model dims
    │   ├── WrongModelKindError      embed on a reranker, or rerank on an embedder
    │   └── PoisonInputError         this input crashed a worker twice; not retried
    ├── InferenceError               llama.cpp failed on input that passed validation
    │   └── InternalError            a bug while running a batch; fails that batch only
    └── ServiceError                 the serving machinery cannot take or finish the work
        ├── OverloadedError          the queue is full; retry after a moment
        ├── RequestTimeoutError      the work did not finish within the request timeout
        ├── NoWorkerError            no live worker can run the work
        ├── DrainingError            the server was drained and takes no new work
        ├── EngineClosedError        a call on an engine after close()
        ├── ModelUnloadingError      the model is being unloaded or replaced
        ├── CacheUnavailableError    the shared cache (Redis) failed an operation it must do
        ├── AuditUnavailableError    the audit log cannot be written; admin actions stop
        └── WorkerCrashedError       the worker process died with the work in flight
"""

from __future__ import annotations

__all__ = [
    "AuditUnavailableError",
    "CacheUnavailableError",
    "ConfigError",
    "DefaultModelNotPreparedError",
    "DrainingError",
    "EmbellamaError",
    "EmptyInputError",
    "EngineClosedError",
    "InferenceError",
    "InputError",
    "InputTooLongError",
    "InternalError",
    "InvalidDimensionsError",
    "InvalidTextError",
    "InvalidTokenError",
    "ModelError",
    "ModelFileError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelUnloadingError",
    "NoWorkerError",
    "OverloadedError",
    "PoisonInputError",
    "RequestTimeoutError",
    "ServiceError",
    "TokenLimitError",
    "WorkerCrashedError",
    "WrongModelKindError",
]


class EmbellamaError(Exception):
    """Base of every error embellama raises on purpose."""


class ConfigError(EmbellamaError, ValueError):
    """A configuration value is invalid; raised when the config object is built."""


class ModelError(EmbellamaError):
    """Something is wrong with a model: its name, its file, or loading it."""


class ModelNotFoundError(ModelError, LookupError):
    """No loaded model answers to the requested name or alias."""

    def __init__(self, name: str, available: list[str]) -> None:
        self.name = name
        self.available = available
        listed = ", ".join(available) if available else "none"
        super().__init__(f"model {name!r} is not loaded (available: {listed})")


class ModelFileError(ModelError):
    """The model file cannot be used; checked before llama.cpp sees it, because
    llama.cpp aborts the process on some malformed files instead of failing."""


class DefaultModelNotPreparedError(ModelFileError):
    """The built-in default model has not been converted to GGUF yet."""


class ModelLoadError(ModelError):
    """llama.cpp refused a file that passed our own header checks."""


class InputError(EmbellamaError, ValueError):
    """An input cannot be embedded. `index` names the offending input when there is one;
    `param` names the request field when it is not `input[index]` (a rerank query)."""

    def __init__(self, message: str, *, index: int | None = None, param: str | None = None) -> None:
        self.index = index
        self.param = param
        super().__init__(message)


class EmptyInputError(InputError):
    """No inputs at all, or an input that is an empty string or an empty token list."""


class InvalidTextError(InputError):
    """Text that cannot be encoded as UTF-8 (for example a lone surrogate)."""


class InvalidTokenError(InputError):
    """A token id outside the model's vocabulary; llama.cpp would abort on it."""


class InputTooLongError(InputError):
    """An input has more tokens than the model's context and truncation is off."""

    def __init__(
        self,
        *,
        index: int | None,
        n_tokens: int,
        limit: int,
        message: str | None = None,
        param: str | None = None,
    ) -> None:
        self.n_tokens = n_tokens
        self.limit = limit
        # What is wrong, without the library's advice (its option names): an API whose
        # truncation is spelled otherwise words its own advice after it.
        self.reason = (
            None
            if message
            else f"input {index} has {n_tokens} tokens, more than the model's limit of {limit}"
        )
        super().__init__(
            message
            or f"{self.reason}; shorten it, or pass truncate='end' or 'start' (cut it to fit) "
            "or 'chunk' (embed it as overlapping windows)",
            index=index,
            param=param,
        )


class TokenLimitError(InputError):
    """A text has more tokens than one tokenize call may return; found before a buffer
    for all of them is allocated, so the cap bounds the call's memory."""

    def __init__(
        self, *, n_tokens: int, limit: int, param: str | None = "content", at_least: bool = False
    ) -> None:
        self.n_tokens = n_tokens
        self.limit = limit
        count = f"at least {n_tokens}" if at_least else str(n_tokens)
        super().__init__(
            f"the text has {count} tokens, more than the limit of {limit} per request",
            param=param,
        )


class WrongModelKindError(InputError):
    """An embedding call to a reranker, or a rerank call to an embedding model."""

    def __init__(self, message: str) -> None:
        super().__init__(message, param="model")


class InvalidDimensionsError(InputError):
    """`dimensions` is not between 1 and the model's embedding size."""


class PoisonInputError(InputError):
    """Running this input killed a worker process twice (or it is remembered to).

    Not a 503: retrying it would only crash another worker, so clients must not retry.
    """


class InferenceError(EmbellamaError):
    """llama.cpp reported a failure while embedding input that passed validation."""


class ServiceError(EmbellamaError):
    """The serving machinery (queue, workers) cannot take or finish the work."""


class OverloadedError(ServiceError):
    """The queue is full. `retry_after` is a hint in seconds."""

    def __init__(self, message: str, *, retry_after: float = 1.0) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class RequestTimeoutError(ServiceError):
    """The work did not finish in time; what was still queued is dropped."""


class NoWorkerError(ServiceError):
    """No live worker can run the work (all crashed, or a retry crashed again)."""


class DrainingError(ServiceError):
    """The server was drained (`POST /admin/drain`) and refuses new work until undrained."""


class EngineClosedError(ServiceError):
    """The library engine was closed; its models and threads are gone."""


class ModelUnloadingError(ServiceError):
    """The model was retired (unload, reload, close) before this work could use it.

    Its native memory is freed once the work already using it ends; new work is refused
    instead of touching freed memory. Retrying is right: a reload's replacement answers.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"model {name!r} is being unloaded or replaced; retry the request")


class CacheUnavailableError(ServiceError):
    """Redis failed an operation whose caller must know (a clear). A lookup never
    raises this: there a failing Redis is a miss."""


class AuditUnavailableError(ServiceError):
    """The audit log could not be written (disk full, file gone): what it would have
    recorded must not happen unrecorded."""


class WorkerCrashedError(ServiceError):
    """A worker process died while it held the work; the scheduler retries once."""


class InternalError(InferenceError):
    """An unexpected exception while running a batch; its requests fail, the lane goes on."""
