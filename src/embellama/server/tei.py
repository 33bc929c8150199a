"""The TEI adapter's answers: pipeline results as TEI's bare JSON lists (server/wire/tei.py)
and TEI's /info keys. Vectors go to orjson as numpy rows; nothing here decides or runs."""

from __future__ import annotations

import numpy as np
import orjson

from embellama import __version__
from embellama.config import ModelKind
from embellama.model.tokenizer import TokenSpans
from embellama.results import EmbeddingResult, RerankHit, RerankResult
from embellama.server.state import ServerState
from embellama.server.wire.tei import TeiInfo, TeiRank, TeiToken
from embellama.vectors import Matrix

__all__ = [
    "encode_tei_decode",
    "encode_tei_embed",
    "encode_tei_embed_all",
    "encode_tei_rerank",
    "encode_tei_tokens",
    "tei_info",
]


def _rows(matrix: Matrix) -> list[object]:
    return list(np.ascontiguousarray(matrix, dtype="<f4"))


def encode_tei_embed(result: EmbeddingResult) -> bytes:
    """`[[...], ...]`: one vector per input, in input order."""
    return orjson.dumps(_rows(result.vectors), option=orjson.OPT_SERIALIZE_NUMPY)


def encode_tei_embed_all(matrices: list[Matrix]) -> bytes:
    """`[[[...], ...], ...]`: per input, one vector per token."""
    body = [_rows(matrix) for matrix in matrices]
    return orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY)


def _rank(hit: RerankHit, with_text: bool, raw: bool) -> TeiRank:
    rank: TeiRank = {"index": hit.index, "score": hit.logit if raw else hit.relevance_score}
    if with_text:
        rank["text"] = hit.document
    return rank


def encode_tei_rerank(result: RerankResult, *, with_text: bool, raw: bool) -> bytes:
    """`[{index, score, text?}]`, best first, as TEI answers."""
    return orjson.dumps([_rank(hit, with_text, raw) for hit in result.hits])


def _tokens(found: TokenSpans) -> list[TeiToken]:
    tokens: list[TeiToken] = []
    for token, special, piece, span in zip(
        found.ids, found.special, found.pieces, found.spans, strict=True
    ):
        if span is None:
            tokens.append(
                {"id": token, "text": piece, "special": special, "start": None, "stop": None}
            )
        else:
            start, stop = span
            text = found.text[start:stop]
            tokens.append(
                {"id": token, "text": text, "special": special, "start": start, "stop": stop}
            )
    return tokens


def encode_tei_tokens(found: list[TokenSpans]) -> bytes:
    """`[[{id, text, special, start, stop}, ...], ...]`: one list per input."""
    return orjson.dumps([_tokens(each) for each in found])


def encode_tei_decode(texts: list[str]) -> bytes:
    """`["...", ...]`: one text per id list."""
    return orjson.dumps(texts)


def tei_info(state: ServerState) -> TeiInfo:
    """TEI's /info keys, for the first model (TEI serves one): what TEI's clients read
    (max_client_batch_size, max_input_length, model_type) mean the same here."""
    services = state.services
    first = services[0] if services else None
    model_type: dict[str, object] = {}
    if first is not None and first.kind is ModelKind.RERANK:
        model_type = {"reranker": {"id2label": {"0": "LABEL_0"}, "label2id": {"LABEL_0": 0}}}
    elif first is not None:
        model_type = {"embedding": {"pooling": first.pooling.value}}
    batching = first.config.batching if first is not None else None
    return {
        "model_id": first.name if first is not None else "",
        "model_sha": first.model.fingerprint if first is not None else None,
        "model_dtype": "float32",  # what the vectors are; the weights' types are the GGUF's
        "model_type": model_type,
        "max_concurrent_requests": (first.limits.max_queued_requests or 0) if first else 0,
        "max_input_length": first.info().context_length if first is not None else 0,
        "max_batch_tokens": batching.max_batch_tokens if batching is not None else 0,
        "max_batch_requests": batching.max_batch_sequences if batching is not None else None,
        "max_client_batch_size": state.limits.max_inputs_per_request,
        "auto_truncate": False,
        "tokenization_workers": 1,
        "version": __version__,
        "sha": None,
        "docker_label": None,
    }
