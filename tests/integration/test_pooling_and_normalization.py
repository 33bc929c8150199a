"""Every pooling and normalization mode equals numpy over llama.cpp's per-token outputs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from embellama import EmbeddingEngine, Normalization, Pooling
from embellama.vectors import Matrix
from tests.tolerances import assert_float32_close

TEXTS = ["short", "a somewhat longer sentence about embeddings", "x y z " * 20]

POOLERS: dict[Pooling, Callable[[Matrix], Matrix]] = {
    Pooling.MEAN: lambda t: t.mean(axis=0),
    Pooling.CLS: lambda t: t[0],
    Pooling.LAST: lambda t: t[-1],
    Pooling.MAX: lambda t: t.max(axis=0),
    Pooling.MEAN_SQRT: lambda t: t.sum(axis=0) / np.sqrt(len(t)),
}


@pytest.fixture(scope="module")
def per_token(engine: EmbeddingEngine) -> list[Matrix]:
    return engine.embed_per_token(TEXTS)


def test_per_token_shapes(engine: EmbeddingEngine, per_token: list[Matrix]) -> None:
    assert [len(t) for t in per_token] == engine.count_tokens(TEXTS)
    assert all(t.shape[1] == 384 and t.dtype == np.float32 for t in per_token)


@pytest.mark.parametrize("pooling", list(POOLERS))
def test_pooling_modes(minilm_gguf: Path, per_token: list[Matrix], pooling: Pooling) -> None:
    with EmbeddingEngine.from_path(minilm_gguf, pooling=pooling, normalization="none") as eng:
        assert eng.model_info().pooling is pooling
        ours = eng.embed(TEXTS)
    expected = np.stack([POOLERS[pooling](t) for t in per_token])
    assert_float32_close(ours, expected)


@pytest.mark.parametrize(
    ("normalization", "p", "divisor"),
    [
        (Normalization.L2, 2.0, lambda v: np.linalg.norm(v, axis=1, keepdims=True)),
        (Normalization.MAX_ABS, 2.0, lambda v: np.abs(v).max(axis=1, keepdims=True)),
        (
            Normalization.P_NORM,
            3.0,
            lambda v: (np.abs(v) ** 3).sum(axis=1, keepdims=True) ** (1 / 3),
        ),
    ],
)
def test_normalization_modes(
    minilm_gguf: Path,
    per_token: list[Matrix],
    normalization: Normalization,
    p: float,
    divisor: Callable[[Matrix], Matrix],
) -> None:
    with EmbeddingEngine.from_path(minilm_gguf, normalization=normalization, norm_p=p) as eng:
        ours = eng.embed(TEXTS)
        raw = eng.embed(TEXTS, normalize=False)
    pooled = np.stack([t.mean(axis=0) for t in per_token])
    assert_float32_close(raw, pooled)
    assert_float32_close(ours, pooled / divisor(pooled))


def test_dimensions_truncate_then_renormalize(engine: EmbeddingEngine) -> None:
    full = engine.embed(TEXTS)
    short = engine.embed(TEXTS, dimensions=64)
    assert short.shape == (3, 64)
    expected = full[:, :64] / np.linalg.norm(full[:, :64], axis=1, keepdims=True)
    assert_float32_close(short, expected)
    unnormalized = engine.embed(TEXTS, dimensions=64, normalize=False)
    # Cutting is slicing: the same bits as the full vector's first 64.
    np.testing.assert_array_equal(unnormalized, engine.embed(TEXTS, normalize=False)[:, :64])


def test_header_pooling_is_the_default(engine: EmbeddingEngine) -> None:
    assert engine.model_info().pooling is Pooling.MEAN
