"""Pooling, normalization, Matryoshka truncation and quantization as plain numpy functions.

Pure math on arrays: no llama.cpp, no model state. Pooling works on one sequence's
per-token outputs; normalization, truncation and quantization work on a `(n, dim)`
matrix. Every integer form of a vector (library, corpus job, server) is computed here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from embellama.config import Normalization, Pooling
from embellama.errors import InvalidDimensionsError

__all__ = [
    "Codes",
    "Matrix",
    "Quantization",
    "Ranges",
    "check_dimensions",
    "finish",
    "normalize",
    "pool",
    "quantize",
    "resolve_normalization",
    "truncate_dimensions",
]

Matrix = npt.NDArray[np.float32]
Vector = npt.NDArray[np.float32]
# Quantized rows: int8 or uint8, (n, dim) for the scalar forms, (n, ceil(dim/8)) packed.
Codes = npt.NDArray[np.int8] | npt.NDArray[np.uint8]


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


class Quantization(enum.StrEnum):
    """The integer forms of a finished vector (Cohere's `embedding_types`, and
    sentence-transformers' `quantize_embeddings` precisions of the same names)."""

    INT8 = "int8"
    UINT8 = "uint8"
    # Sign bits, 8 per byte, big-endian bit order: `binary` as int8 (byte - 128).
    BINARY = "binary"
    UBINARY = "ubinary"

    @property
    def scalar(self) -> bool:
        """Needs per-dimension ranges (int8, uint8); the binary forms need none."""
        return self in (Quantization.INT8, Quantization.UINT8)

    def bytes_per_vector(self, dimensions: int) -> int:
        return dimensions if self.scalar else (dimensions + 7) // 8


@dataclass(frozen=True)
class Ranges:
    """Per-dimension [low, high] that int8/uint8 map onto 256 steps, the same for every
    vector of one model and output shape."""

    low: Vector
    high: Vector

    @classmethod
    def of(cls, calibration: Matrix) -> Ranges:
        """A model's ranges: one symmetric range, [-m, m] with m the largest |value| of
        the finished calibration vectors, for every dimension. With one step for all
        dimensions an integer dot product is the float one scaled (plus rounding), so it
        ranks alike; per-dimension min/max (`min_max`) weights each dimension's products
        by 1/step² instead, and ranked measurably worse (bench/quantization.md)."""
        widest = float(np.abs(_checked(calibration)).max())
        bound = np.full(calibration.shape[1], widest, np.float32)
        return cls(-bound, bound)

    @classmethod
    def min_max(cls, calibration: Matrix) -> Ranges:
        """Each dimension's own min and max: sentence-transformers' calibration, for a
        caller that decodes codes back to floats rather than multiplying them."""
        wide = _checked(calibration)
        return cls(wide.min(axis=0), wide.max(axis=0))


def _checked(calibration: Matrix) -> Matrix:
    if calibration.ndim != 2 or len(calibration) == 0:
        raise ValueError("calibration needs at least one vector")
    return calibration.astype(np.float32, copy=False)


def quantize(vectors: Matrix, kind: Quantization, ranges: Ranges | None = None) -> Codes:
    """`vectors` (n, dim) as `kind`: (n, dim) int8/uint8, or (n, ceil(dim/8)) packed bits.

    A value outside the calibrated range is clipped to its end (0 or 255); a dimension
    whose range is empty gets a step of 1, so nothing divides by zero."""
    if kind.scalar:
        if ranges is None:
            raise ValueError(f"{kind.value} quantization needs calibrated ranges")
        if ranges.low.shape[0] != vectors.shape[1]:
            raise ValueError(
                f"ranges are for {ranges.low.shape[0]} dimensions, vectors have {vectors.shape[1]}"
            )
        return _scalar(vectors.astype(np.float32, copy=False), ranges, kind is Quantization.INT8)
    packed = np.packbits(vectors > 0, axis=-1)  # big-endian: dimension 0 is the high bit
    if kind is Quantization.BINARY:
        return (packed.astype(np.int16) - 128).astype(np.int8)
    return packed


def _scalar(vectors: Matrix, ranges: Ranges, signed: bool) -> Codes:
    steps = (ranges.high - ranges.low) / np.float32(255)
    steps = np.where(steps == 0, np.float32(1), steps).astype(np.float32)
    codes = np.clip(np.floor((vectors - ranges.low) / steps), 0, 255)
    if signed:
        return (codes - 128).astype(np.int8)
    return codes.astype(np.uint8)
