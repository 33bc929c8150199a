"""Turn an `EmbeddingResult` into OpenAI's response bytes, without per-float Python work.

float: orjson serializes the numpy rows directly. base64: little-endian float32 bytes,
what the OpenAI SDKs request by default and decode with numpy.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson

from embellama.results import EmbeddingResult

__all__ = ["encode_embeddings"]


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
