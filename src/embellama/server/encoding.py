"""Turn an `EmbeddingResult` into OpenAI's response bytes, without per-float Python work.

float: orjson serializes the numpy rows directly. base64: little-endian float32 bytes,
what the OpenAI SDKs request by default and decode with numpy.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from embellama.model.native import TokenIds
from embellama.results import EmbeddingResult
from embellama.vectors import Matrix

__all__ = [
    "encode_embeddings",
    "encode_token_embeddings",
    "encode_token_ids",
    "encode_token_pieces",
]


def encode_embeddings(result: EmbeddingResult, encoding_format: str) -> bytes:
    vectors = np.ascontiguousarray(result.vectors, dtype="<f4")
    if encoding_format == "base64":
        rows: list[Any] = [base64.b64encode(row.tobytes()).decode("ascii") for row in vectors]
    else:
        rows = list(vectors)
    body = {
        "object": "list",
        "data": [
            {"object": "embedding", "index": index, "embedding": row}
            for index, row in enumerate(rows)
        ],
        "model": result.model,
        "usage": {
            "prompt_tokens": result.total_tokens,  # every input token, cached or not
            "total_tokens": result.total_tokens,
            "prompt_tokens_details": {"cached_tokens": result.cached_tokens},
        },
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_token_embeddings(
    model: str, matrices: list[Matrix], counts: tuple[int, ...], encoding_format: str
) -> bytes:
    """`"pooling": "none"`: each input's embedding is a list of per-token vectors."""
    data = []
    for index, matrix in enumerate(matrices):
        rows = np.ascontiguousarray(matrix, dtype="<f4")
        tokens: list[Any] = (
            [base64.b64encode(row.tobytes()).decode("ascii") for row in rows]
            if encoding_format == "base64"
            else list(rows)
        )
        data.append({"object": "embedding", "index": index, "embedding": tokens})
    total = sum(counts)
    body = {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": total, "total_tokens": total},
    }
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


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


def _piece(data: bytes) -> str | list[int]:
    """A string when the piece is whole UTF-8, else its byte values (as llama-server)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return list(data)
