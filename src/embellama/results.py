"""The result shapes of embedding and rerank calls.

Vectors are always a `(n, dim)` float32 matrix in input order; the single-string
convenience of `EmbeddingEngine.embed` is applied by the engine, not here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from embellama.errors import InputError
from embellama.vectors import Codes, Matrix, Quantization

__all__ = ["EmbeddingResult", "RerankHit", "RerankResult", "Timings"]


@dataclass(frozen=True)
class Timings:
    """Seconds spent in each stage of one call; they feed headers and metrics."""

    tokenize: float = 0.0
    queue: float = 0.0
    inference: float = 0.0
    postprocess: float = 0.0

    @property
    def total(self) -> float:
        return self.tokenize + self.queue + self.inference + self.postprocess


@dataclass(frozen=True)
class EmbeddingResult:
    """Vectors plus what a caller needs to bill and debug the call."""

    model: str
    vectors: Matrix
    token_counts: tuple[int, ...]
    truncated: tuple[bool, ...]
    timings: Timings
    # Per input: served from the cache (all False when no cache was consulted).
    cached: tuple[bool, ...] = ()
    # The prefix put in front of the texts: None when no input_type was given, "" when
    # one was but the model has no prefix for it (the texts were embedded unchanged).
    prefix: str | None = None
    # The integer forms the call asked for (`quantize=`), each computed from `vectors`.
    quantized: Mapping[Quantization, Codes] = field(default_factory=dict)

    def codes(self, kind: str | Quantization) -> Codes:
        """The vectors as `kind` ("int8", "uint8", "binary", "ubinary"); the call must
        have asked for it with `quantize=`."""
        found = self.quantized.get(Quantization(kind)) if kind in tuple(Quantization) else None
        if found is None:
            raise InputError(
                f"no {kind!r} codes in this result: embed with quantize={kind!r}",
                param="quantize",
            )
        return found

    @property
    def total_tokens(self) -> int:
        return sum(self.token_counts)

    @property
    def cache_hits(self) -> int:
        return sum(self.cached)

    @property
    def cached_tokens(self) -> int:
        return sum(n for n, hit in zip(self.token_counts, self.cached, strict=False) if hit)

    @property
    def dimensions(self) -> int:
        return int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.token_counts)


@dataclass(frozen=True)
class RerankHit:
    """One document's score. `relevance_score` is the sigmoid of the classifier's logit,
    what sentence-transformers' `CrossEncoder.predict` returns for a one-logit head."""

    index: int
    relevance_score: float
    logit: float
    document: str
    tokens: int
    truncated: bool


@dataclass(frozen=True)
class RerankResult:
    """Hits sorted by score, best first (ties keep input order), cut to `top_n`."""

    model: str
    hits: tuple[RerankHit, ...]
    # Tokens of every scored pair, including those `top_n` left out.
    total_tokens: int
    timings: Timings

    def __len__(self) -> int:
        return len(self.hits)
