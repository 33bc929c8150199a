"""Which model files are served, decided from the header before llama.cpp sees them.

An architecture is *verified* when a test here builds a tiny random model of it with
transformers, converts it with the stock converter and compares llama.cpp's output with
the reference (tests/integration/test_architectures.py, tests/integration/test_rerank.py).
Anything else is refused unless the user allows it: a new architecture that loads is
not one that gives the right vectors, and wrong vectors fail silently downstream.
"""

from __future__ import annotations

from embellama.config import ModelKind
from embellama.errors import ModelFileError
from embellama.model.gguf import GGUFInfo

__all__ = ["VERIFIED_EMBEDDING_ARCHITECTURES", "check_architecture", "model_kind"]

# GGUF `general.architecture` -> the model families the tests verify under that name.
VERIFIED_EMBEDDING_ARCHITECTURES = {
    "bert": "BERT, DistilBERT, XLM-RoBERTa",
    "modern-bert": "ModernBERT",
    "nomic-bert": "NomicBERT",
    "llama": "Llama",
    "qwen3": "Qwen3 (Qwen3-Embedding)",
    "gemma-embedding": "Gemma3 text (embeddinggemma), with Dense layers",
}
# Cross-encoders: a BERT-architecture encoder whose classifier head keeps its dense layer
# and whose pairs need one token type (XLM-RoBERTa: bge-reranker, mxbai-rerank-v1 style).
VERIFIED_RERANK_ARCHITECTURES = {"bert": "XLM-RoBERTa cross-encoders"}

ALLOW_FLAG = "--allow-unverified-architecture"


def model_kind(header: GGUFInfo) -> ModelKind:
    """A classifier head (or rank pooling in the header) makes a reranker."""
    if header.classifier_head or header.pooling_type == "rank":
        return ModelKind.RERANK
    return ModelKind.EMBEDDING


def check_architecture(header: GGUFInfo, kind: ModelKind, *, allow_unverified: bool) -> bool:
    """True if verified; False if unverified but allowed; raise if refused.

    Known-wrong cases are refused even when unverified ones are allowed: llama.cpp would
    serve scores that differ from the model's own, with no error anywhere.
    """
    arch = header.architecture
    if kind is ModelKind.RERANK:
        _check_reranker(header)
        verified = arch in VERIFIED_RERANK_ARCHITECTURES
    else:
        verified = arch in VERIFIED_EMBEDDING_ARCHITECTURES
    if verified or allow_unverified:
        return verified
    known = (
        VERIFIED_RERANK_ARCHITECTURES
        if kind is ModelKind.RERANK
        else VERIFIED_EMBEDDING_ARCHITECTURES
    )
    raise ModelFileError(
        f"{header.path}: architecture {arch!r} ({kind.value} model) is not verified against "
        f"its reference implementation here (verified: {', '.join(sorted(known))}); "
        f"start with {ALLOW_FLAG} to serve it anyway"
    )


def _check_reranker(header: GGUFInfo) -> None:
    path, arch = header.path, header.architecture
    if header.rerank_template:
        raise ModelFileError(
            f"{path}: this reranker formats pairs with a prompt template "
            "(tokenizer.chat_template.rerank), which embellama does not apply"
        )
    if header.classifier_head and header.classifier_outputs != 1:
        raise ModelFileError(
            f"{path}: the classifier head has {header.classifier_outputs} outputs; a "
            "reranker needs exactly one (a relevance logit)"
        )
    if header.token_type_count > 1:
        raise ModelFileError(
            f"{path}: this cross-encoder was trained with {header.token_type_count} token "
            "types (query = 0, document = 1), but llama.cpp gives every token type 0, so "
            "its scores would be wrong (BERT cross-encoders such as ms-marco-MiniLM)"
        )
    if arch == "bert" and header.classifier_head and not header.classifier_dense:
        raise ModelFileError(
            f"{path}: the classifier head has no dense layer (cls.weight): the converter "
            "drops a BERT cross-encoder's pooler, and scores without it are wrong"
        )
