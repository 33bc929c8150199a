"""Pooling, normalization and truncation math against direct numpy formulas."""

from __future__ import annotations

import numpy as np
import pytest

from embellama import InvalidDimensionsError, Normalization, Pooling
from embellama.vectors import normalize, pool, truncate_dimensions
from tests.tolerances import assert_float32_close

RNG = np.random.default_rng(0)
TOKENS = RNG.normal(size=(7, 5)).astype(np.float32)


@pytest.mark.parametrize(
    ("pooling", "expected"),
    [
        (Pooling.MEAN, TOKENS.mean(axis=0)),
        (Pooling.CLS, TOKENS[0]),
        (Pooling.LAST, TOKENS[-1]),
        (Pooling.MAX, TOKENS.max(axis=0)),
        (Pooling.MEAN_SQRT, TOKENS.sum(axis=0) / np.sqrt(7)),
    ],
)
def test_pool_matches_formula(pooling: Pooling, expected: np.ndarray) -> None:
    result = pool(TOKENS, pooling)
    assert result.dtype == np.float32
    assert_float32_close(result, expected)


def test_pool_none_is_rejected() -> None:
    with pytest.raises(ValueError, match="none"):
        pool(TOKENS, Pooling.NONE)


def test_normalizations() -> None:
    rows = np.array([[3.0, -4.0], [0.0, 0.0]], dtype=np.float32)
    assert_float32_close(normalize(rows, Normalization.L2)[0], [0.6, -0.8])
    assert_float32_close(normalize(rows, Normalization.MAX_ABS)[0], [0.75, -1.0])
    assert_float32_close(normalize(rows, Normalization.P_NORM, 1.0)[0], [3 / 7, -4 / 7])
    assert normalize(rows, Normalization.NONE) is rows
    # A zero vector stays zero rather than turning into NaN.
    assert np.all(normalize(rows, Normalization.L2)[1] == 0)


def test_truncate_dimensions() -> None:
    matrix = RNG.normal(size=(3, 8)).astype(np.float32)
    assert truncate_dimensions(matrix, 3).shape == (3, 3)
    assert truncate_dimensions(matrix, None) is matrix
    for bad in (0, 9, -1, True, 2.5):
        with pytest.raises(InvalidDimensionsError, match="between 1 and 8"):
            truncate_dimensions(matrix, bad)  # type: ignore[arg-type]
