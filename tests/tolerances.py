"""Every numeric bound a test compares vectors with, each with what it protects and its source.

Bounds are set from behaviour measured on every CPU this project meets (Intel Xeon with
AVX2, AMD EPYC with AVX-512), with a margin, never from one machine's lucky figure:
llama.cpp picks different SIMD kernels per CPU, and their float rounding differs.
Where a comparison must be exact, tests use `assert_array_equal` and no bound at all.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

# A text embedded alone vs. packed with others into one decode (F16 default model).
# Packing changes the matmul shapes and so the accumulation order; the vector must not
# change beyond that rounding. Measured max |alone - batched| over 400 texts of 8-40
# words: AMD EPYC AVX-512 1.78e-4 (1.46e-4 through the server; llama-server 1.8e-4),
# Intel Xeon AVX-512 9.5e-5 (README, "Batch invariance"). 3e-4 is ~1.7x the worst; a
# wrong pooled token, mask or position is off by 1e-2 or more.
BATCH_INVARIANCE_ATOL = 3e-4
# The same comparison as a cosine: an angle, independent of any one element.
BATCH_INVARIANCE_MIN_COSINE = 0.99999

# Our vectors vs. sentence-transformers (PyTorch, F32) on the same text: guards
# fidelity to the reference. Measured >= 0.99999 on both CPUs; never loosen it.
REFERENCE_MIN_COSINE = 0.9999
# A decoder model's last-token vector vs. transformers, relative to the vector's largest
# element: flash attention's F16 K/V cache rounds to ~6e-4 of it (measured); a wrong
# position encoding, norm epsilon or pooled token is off by far more.
DECODER_REFERENCE_RELATIVE_ATOL = 1e-3

# A tiny random encoder (F32 GGUF) vs. transformers on the same ids, pooled like
# sentence-transformers and L2-normalized: measured here (Intel) BERT 9.2e-5, DistilBERT
# 1.1e-4, XLM-R 4.6e-5, ModernBERT 3.2e-5, NomicBERT 5e-5, Gemma3 + Dense 1.5e-4;
# shared/notes (architectures) saw up to 5.6e-4 for Gemma3 with flash attention. A wrong
# layer, norm, pooling or Dense moves it by 1e-1 or more.
ENCODER_REFERENCE_ATOL = 1e-3

# A tiny random XLM-R cross-encoder's logit (F32 GGUF, llama.cpp rank pooling) vs.
# transformers' on the same pair: measured here (Intel) 1.8e-4; shared/notes
# (rerank) saw 0.8-1.8e-3 with flash attention on or off. A dropped head layer or a
# wrong token type moves a logit by 1e-1 or more (BERT with two types: up to 5.2).
RERANK_LOGIT_ATOL = 4e-3
# One pair scored alone vs. packed with others: the logit is a dot product of a
# batch-invariant hidden state (BATCH_INVARIANCE_ATOL per element, 64-768 wide) with the
# head's weights, so the bound is that of a vector element times a small factor.
# Measured here (Intel), 1 query x 200 documents: 1.1e-4.
RERANK_BATCH_INVARIANCE_ATOL = 1e-3

# The same float32 numbers run through numpy in another order (pooling, normalizing,
# truncating here vs. in the library): a few float32 ulps, nothing from llama.cpp.
FLOAT32_RTOL = 1e-5
FLOAT32_ATOL = 1e-6

Vectors = npt.NDArray[np.floating]


def assert_batch_invariant(got: npt.ArrayLike, expected: npt.ArrayLike) -> None:
    """`got` and `expected` are the same texts, possibly computed in different batches."""
    left = np.atleast_2d(np.asarray(got, dtype=np.float64))
    right = np.atleast_2d(np.asarray(expected, dtype=np.float64))
    assert left.shape == right.shape, (left.shape, right.shape)
    worst = float(np.abs(left - right).max())
    assert worst <= BATCH_INVARIANCE_ATOL, f"max |difference| {worst:.3g}"
    assert min_cosine(left, right) >= BATCH_INVARIANCE_MIN_COSINE


def assert_float32_close(got: npt.ArrayLike, expected: npt.ArrayLike) -> None:
    """The same numbers, only rearranged float32 arithmetic in between."""
    np.testing.assert_allclose(
        np.asarray(got, dtype=np.float64),
        np.asarray(expected, dtype=np.float64),
        rtol=FLOAT32_RTOL,
        atol=FLOAT32_ATOL,
    )


def min_cosine(left: npt.ArrayLike, right: npt.ArrayLike) -> float:
    a = np.atleast_2d(np.asarray(left, dtype=np.float64))
    b = np.atleast_2d(np.asarray(right, dtype=np.float64))
    cosines = (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return float(cosines.min())
