"""Dense layers after pooling (embeddinggemma-style): served exactly where they commute
with the pooling, refused where they would not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers

from embellama import EmbeddingEngine, ModelFileError, Pooling, read_gguf_info
from tests.fixtures.tiny_gemma import TinyGemma, build_tiny_gemma
from tests.tolerances import ENCODER_REFERENCE_ATOL, REFERENCE_MIN_COSINE, min_cosine

pytestmark = pytest.mark.slow

TEXTS = ("Hello world", "the quick brown fox jumps over the lazy dog", "café déjà vu, 日本語", "x")


@pytest.fixture(scope="module")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> TinyGemma:
    return build_tiny_gemma(tmp_path_factory.mktemp("tiny_gemma"))


def reference(gemma: TinyGemma, ids: list[int], pooling: Pooling) -> np.ndarray:
    """sentence-transformers' order: pool the hidden states, then 2_Dense, then 3_Dense."""
    model = transformers.Gemma3TextModel.from_pretrained(str(gemma.hf_dir), dtype=torch.float32)
    model.train(False)
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    pooled = {Pooling.MEAN: hidden.mean(0), Pooling.CLS: hidden[0], Pooling.LAST: hidden[-1]}
    vector = gemma.dense[1] @ (gemma.dense[0] @ pooled[pooling])
    return np.asarray((vector / vector.norm()).numpy())


def test_the_header_says_dense(gemma: TinyGemma) -> None:
    assert read_gguf_info(gemma.gguf).post_pooling_dense


@pytest.mark.parametrize("pooling", [Pooling.MEAN, Pooling.CLS, Pooling.LAST])
def test_commuting_poolings_match_the_model(gemma: TinyGemma, pooling: Pooling) -> None:
    with EmbeddingEngine.from_path(gemma.gguf, pooling=pooling) as engine:
        for text in TEXTS:
            expected = reference(gemma, engine.tokenize(text), pooling)
            got = engine.embed(text)
            assert float(np.abs(got - expected).max()) <= ENCODER_REFERENCE_ATOL, text
            assert min_cosine(got, expected) >= REFERENCE_MIN_COSINE, text


def test_max_pooling_is_refused_with_the_reason(gemma: TinyGemma) -> None:
    with pytest.raises(ModelFileError, match=r"Dense layers after pooling.*not 'max'"):
        EmbeddingEngine.from_path(gemma.gguf, pooling="max")


def test_models_without_dense_layers_take_any_pooling(minilm_gguf: Path) -> None:
    assert not read_gguf_info(minilm_gguf).post_pooling_dense
