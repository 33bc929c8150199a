"""`GET /health`, `/ready` and `/info`: liveness, readiness and every limit a client needs."""

from __future__ import annotations

from typing import Annotated, Literal, NotRequired

from pydantic import Field
from typing_extensions import TypedDict

from embellama.server.wire.tei import TeiInfo

__all__ = ["Health", "Info", "InfoModel", "Ready", "ReadyModel"]


class Health(TypedDict):
    status: Literal["ok"]


class ReadyModel(TypedDict):
    ready: bool
    workers_alive: int
    queued: int
    reason: str | None


class Ready(TypedDict):
    """200 when every model can take work; 503 with `reason` when not."""

    status: Literal["ready", "unavailable", "degraded"]
    models: dict[str, ReadyModel]
    reason: NotRequired[str]
    # Models that could not start (the others serve), with why.
    failed: NotRequired[dict[str, str]]


class InfoModel(TypedDict):
    name: str
    aliases: list[str]
    version: NotRequired[str]
    dimensions: int
    max_tokens_per_input: int
    pooling: str
    normalization: str
    kind: str
    architecture: str
    verified: bool
    # What runs the forward pass: "llama.cpp" or "onnxruntime".
    engine: str
    file_size: int
    memory_per_worker_bytes: Annotated[
        int,
        Field(
            description="Upper bound of one worker's KV cache, compute and output buffers "
            "and weight copy, from the GGUF header."
        ),
    ]
    workers: int
    threads_per_worker: int
    max_batch_tokens: int
    queue_size: int | None
    queue_tokens: int | None
    bulk_max_wait_seconds: float
    max_chunks_per_input: int
    max_token_vectors_per_request: int
    request_timeout_seconds: float | None
    worker_hang_timeout_seconds: float | None
    prompts: dict[str, object] | None


class Info(TeiInfo):
    """Every per-request limit (README: Limits), beside TEI's keys (for the first model)."""

    max_inputs_per_request: int
    max_body_bytes: int
    max_tokenize_tokens: Annotated[
        int, Field(description="Token ids per /tokenize answer or /detokenize request.")
    ]
    max_instruction_length: Annotated[
        int, Field(description="Characters of a request's `instruction`.")
    ]
    encoding_formats: list[str]
    truncation_modes: list[str]
    # Rerank: documents per request (each pair's tokens: a model's max_tokens_per_input).
    max_documents_per_request: int
    # The caller's own masked key and limits: one tenant never sees another's.
    auth: dict[str, object]
    models: list[InfoModel]
    failed_models: Annotated[
        dict[str, str],
        Field(description="Models that could not start, with why (the others serve)."),
    ]
    versions: NotRequired[
        Annotated[
            dict[str, dict[str, float]],
            Field(description="Each versioned model name's weights, by version."),
        ]
    ]
    cache: dict[str, object] | None
