"""Turn results into the wire declarations' bytes and headers, without per-float Python
work: float rows go to orjson as numpy, base64 is little-endian float32 bytes, what
the OpenAI SDKs request by default and decode with numpy."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import orjson
from starlette.responses import Response

from embellama.inputs import InputItem
from embellama.model.native import TokenIds
from embellama.results import EmbeddingResult, RerankHit, RerankResult
from embellama.server.wire.cohere import (
    CohereEmbeddings,
    CohereFloatsResponse,
    CohereMeta,
    CohereResponse,
)
from embellama.server.wire.embeddings import Embedding, EmbeddingsResponse
from embellama.server.wire.rerank import RerankHitBody, RerankResponse
from embellama.server.wire.tokens import DetokenizeResponse
from embellama.vectors import Matrix

__all__ = [
    "embedding_headers",
    "encode_cohere",
    "encode_detokenized",
    "encode_embeddings",
    "encode_rerank",
    "encode_token_embeddings",
    "encode_token_ids",
    "encode_token_pieces",
    "json_response",
    "prefix_header",
    "rerank_headers",
]


def json_response(
    body: bytes | Mapping[str, Any], status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(data, status, headers, media_type="application/json")


def _rows(matrix: Matrix, encoding_format: str) -> list[Any]:
    rows = np.ascontiguousarray(matrix, dtype="<f4")
    if encoding_format == "base64":
        return [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
    return list(rows)


def encode_embeddings(result: EmbeddingResult, encoding_format: str) -> bytes:
    """Floats or base64 rows, or a quantized format's integer rows (`result.codes`)."""
    quantized = encoding_format not in ("float", "base64")
    rows = (
        list(result.codes(encoding_format)) if quantized else _rows(result.vectors, encoding_format)
    )
    data: list[Embedding] = [
        {"object": "embedding", "index": index, "embedding": row} for index, row in enumerate(rows)
    ]
    body: EmbeddingsResponse = {
        "object": "list",
        "data": data,
        "model": result.model,
        "usage": {
            "prompt_tokens": result.total_tokens,  # every input token, cached or not
            "total_tokens": result.total_tokens,
            "prompt_tokens_details": {"cached_tokens": result.cached_tokens},
        },
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_cohere(
    result: EmbeddingResult,
    texts: list[str],
    types: tuple[str, ...],
    *,
    by_type: bool,
    version: str,
) -> bytes:
    """Cohere's answer: `embeddings` by type (v2; v1 with `embedding_types`), else v1's
    bare float list. Integer types are `result.codes`, the same as /v1/embeddings'."""
    meta: CohereMeta = {
        "api_version": {"version": version},
        "billed_units": {"input_tokens": result.total_tokens},
    }
    body: CohereResponse | CohereFloatsResponse
    if by_type:
        embeddings = {
            kind: _rows(result.vectors, kind)
            if kind in ("float", "base64")
            else list(result.codes(kind))
            for kind in types
        }
        body = {
            "id": str(uuid.uuid4()),
            "embeddings": cast(CohereEmbeddings, embeddings),
            "texts": texts,
            "meta": meta,
            "response_type": "embeddings_by_type",
        }
    else:
        body = {
            "id": str(uuid.uuid4()),
            "embeddings": _rows(result.vectors, "float"),
            "texts": texts,
            "meta": meta,
            "response_type": "embeddings_floats",
        }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def embedding_headers(result: EmbeddingResult, items: Sequence[InputItem]) -> dict[str, str]:
    timings = result.timings
    return {
        "x-tokenize-time": f"{timings.tokenize * 1000:.2f}",
        "x-queue-time": f"{timings.queue * 1000:.2f}",
        "x-inference-time": f"{timings.inference * 1000:.2f}",
        "x-tokens": str(result.total_tokens),
        "x-cache-hits": str(result.cache_hits),
        **prefix_header(result.prefix, items),
    }


def version_header(version: str) -> dict[str, str]:
    """Which version of its name served the request ("1" for a model with only one)."""
    return {"x-model-version": version}


def prefix_header(prefix: str | None, items: Sequence[InputItem]) -> dict[str, str]:
    """`applied` only when a prefix went in front of a text; token-id inputs are never
    prefixed, so they answer `none`, as does a request without input_type."""
    applied = bool(prefix) and any(isinstance(item, str) for item in items)
    return {"x-prefix": "applied" if applied else "none"}


def encode_token_embeddings(
    model: str, matrices: list[Matrix], counts: tuple[int, ...], encoding_format: str
) -> bytes:
    """`"pooling": "none"`: each input's embedding is a list of per-token vectors."""
    data: list[Embedding] = [
        {"object": "embedding", "index": index, "embedding": _rows(matrix, encoding_format)}
        for index, matrix in enumerate(matrices)
    ]
    total = sum(counts)
    body: EmbeddingsResponse = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_rerank(result: RerankResult, *, with_documents: bool, raw: bool) -> bytes:
    body: RerankResponse = {
        "id": str(uuid.uuid4()),
        "object": "list",
        "model": result.model,
        "results": [_hit(hit, with_documents, raw) for hit in result.hits],
        "usage": {"prompt_tokens": result.total_tokens, "total_tokens": result.total_tokens},
        "meta": {"tokens": {"input_tokens": result.total_tokens, "output_tokens": 0}},
    }
    return orjson.dumps(body)


def _hit(hit: RerankHit, with_document: bool, raw: bool) -> RerankHitBody:
    entry: RerankHitBody = {
        "index": hit.index,
        "relevance_score": hit.logit if raw else hit.relevance_score,
    }
    if with_document:
        entry["document"] = {"text": hit.document}
    if hit.truncated:
        entry["truncated"] = True
    return entry


def rerank_headers(result: RerankResult) -> dict[str, str]:
    return {
        "x-tokens": str(result.total_tokens),
        "x-queue-time": f"{result.timings.queue * 1000:.2f}",
        "x-inference-time": f"{result.timings.inference * 1000:.2f}",
    }


def encode_token_ids(ids: TokenIds) -> bytes:
    """`/tokenize`: `{"tokens": [ids]}` straight from the int32 array."""
    return orjson.dumps({"tokens": ids}, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_token_pieces(
    distinct: TokenIds, pieces: list[bytes], positions: npt.NDArray[np.intp]
) -> bytes:
    """`/tokenize` with pieces: `{"tokens": [{"id", "piece"}]}`, built from one JSON
    fragment per distinct token (a vocabulary's worth at most), repeated by reference;
    the answer costs its own bytes plus a pointer per token, not a dict per token."""
    fragments = np.empty(len(distinct), dtype=object)
    fragments[:] = [
        orjson.dumps({"id": int(token), "piece": _piece(piece)})
        for token, piece in zip(distinct, pieces, strict=True)
    ]
    return b"".join((b'{"tokens":[', b",".join(fragments[positions]), b"]}"))


def encode_detokenized(content: str) -> bytes:
    body: DetokenizeResponse = {"content": content}
    return orjson.dumps(body)


def _piece(data: bytes) -> str | list[int]:
    """A string when the piece is whole UTF-8, else its byte values (as llama-server)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return list(data)
