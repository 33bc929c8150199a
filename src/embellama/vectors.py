"""Pooling, normalization and Matryoshka truncation as plain numpy functions.

Pure math on arrays: no llama.cpp, no model state. Pooling works on one sequence's
per-token outputs; normalization and truncation work on a `(n, dim)` matrix.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from embellama.config import Normalization, Pooling
from embellama.errors import InvalidDimensionsError

__all__ = [
    "Matrix",
    "check_dimensions",
    "finish",
    "normalize",
    "pool",
    "resolve_normalization",
    "truncate_dimensions",
]

Matrix = npt.NDArray[np.float32]


def pool(token_vectors: Matrix, pooling: Pooling) -> Matrix:
    """Reduce `(n_tokens, dim)` per-token outputs to one `(dim,)` vector.

    Sums run in float64 so the result does not depend on how many tokens there are
    in ways float32 accumulation would add.
    """
    result: Matrix
    if pooling is Pooling.MEAN:
        result = token_vectors.mean(axis=0, dtype=np.float64).astype(np.float32)
    elif pooling is Pooling.CLS:
        result = token_vectors[0].copy()
    elif pooling is Pooling.LAST:
        result = token_vectors[-1].copy()
    elif pooling is Pooling.MAX:
        result = token_vectors.max(axis=0)
    elif pooling is Pooling.MEAN_SQRT:
        total = token_vectors.sum(axis=0, dtype=np.float64)
        result = (total / np.sqrt(len(token_vectors))).astype(np.float32)
    else:
        raise ValueError(f"pooling {pooling.value!r} does not produce one vector per input")
    return result


def normalize(vectors: Matrix, normalization: Normalization, p: float = 2.0) -> Matrix:
    """Scale each row; a zero row stays zero instead of becoming NaN."""
    if normalization is Normalization.NONE:
        return vectors
    wide = vectors.astype(np.float64)
    if normalization is Normalization.L2:
        norms = np.linalg.norm(wide, axis=1, keepdims=True)
    elif normalization is Normalization.MAX_ABS:
        norms = np.abs(wide).max(axis=1, keepdims=True)
    else:
        norms = (np.abs(wide) ** p).sum(axis=1, keepdims=True) ** (1.0 / p)
    norms[norms == 0] = 1.0
    result: Matrix = (wide / norms).astype(np.float32)
    return result


def truncate_dimensions(vectors: Matrix, dimensions: int | None) -> Matrix:
    """Keep the first `dimensions` components (Matryoshka); the caller renormalizes."""
    check_dimensions(dimensions, vectors.shape[1])
    if dimensions is None or dimensions == vectors.shape[1]:
        return vectors
    return np.ascontiguousarray(vectors[:, :dimensions])


def check_dimensions(dimensions: int | None, dim: int) -> None:
    """Fail before any work is done when `dimensions` cannot be honoured."""
    if dimensions is None:
        return
    if (
        isinstance(dimensions, bool)
        or not isinstance(dimensions, int)
        or not 1 <= dimensions <= dim
    ):
        raise InvalidDimensionsError(
            f"dimensions must be an integer between 1 and {dim} for this model, got {dimensions!r}"
        )


def resolve_normalization(configured: Normalization, requested: bool | None) -> Normalization:
    """`normalize=None` keeps the model's setting; False turns it off; True forces one on."""
    if requested is False:
        return Normalization.NONE
    if requested is True and configured is Normalization.NONE:
        return Normalization.L2
    return configured


def finish(
    pooled: Matrix, normalization: Normalization, p: float, dimensions: int | None
) -> Matrix:
    """Normalize, then cut to `dimensions` and normalize again (Matryoshka)."""
    vectors = normalize(pooled, normalization, p)
    if dimensions is not None and dimensions != vectors.shape[1]:
        vectors = normalize(truncate_dimensions(vectors, dimensions), normalization, p)
    return vectors
