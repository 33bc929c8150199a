"""`truncate="chunk"`: a long input is the token-weighted mean of its windows' pooled
vectors, checked against a manual split -> embed -> weight -> normalize."""

from __future__ import annotations

import numpy as np
import pytest

from embellama import EmbeddingEngine, InputError, InputTooLongError
from tests.tolerances import assert_batch_invariant

LONG = " ".join(f"sentence {n} talks about topic {n % 17} in some detail." for n in range(300))


def manual(engine: EmbeddingEngine, text: str, overlap: int) -> np.ndarray:
    ids = engine.tokenize(text)
    head, body, tail = ids[:1], ids[1:-1], ids[-1:]
    room = 512 - 2
    starts = range(0, max(len(body) - overlap, 1), room - overlap)
    windows = [head + body[s : s + room] + tail for s in starts]
    pooled = engine.embed(windows, normalize=False)
    weights = np.array([len(w) for w in windows], dtype=np.float64)
    mean = (pooled * weights[:, None]).sum(axis=0) / weights.sum()
    return np.asarray(mean / np.linalg.norm(mean))


@pytest.mark.parametrize("overlap", [0, 64])
def test_chunks_are_the_weighted_mean_of_windows(engine: EmbeddingEngine, overlap: int) -> None:
    n_tokens = len(engine.tokenize(LONG))
    assert n_tokens > 3 * 512  # several windows
    result = engine.embed_with_details(
        ["short text", LONG], truncate="chunk", chunk_overlap=overlap
    )
    assert result.token_counts[1] == n_tokens  # usage counts every token of the input
    assert result.truncated == (False, True)
    assert_batch_invariant(result.vectors[1], manual(engine, LONG, overlap))
    assert result.vectors[0].tobytes() == engine.embed("short text").tobytes()


def test_chunking_differs_from_truncating(engine: EmbeddingEngine) -> None:
    chunked = engine.embed(LONG, truncate="chunk")
    cut = engine.embed(LONG, truncate="end")
    assert float(chunked @ cut) < 0.999


def test_overlap_must_leave_room(engine: EmbeddingEngine) -> None:
    with pytest.raises(InputError, match="chunk_overlap"):
        engine.embed(LONG, truncate="chunk", chunk_overlap=510)


def test_an_overlap_without_chunking_is_refused(engine: EmbeddingEngine) -> None:
    """It applies to windows only: under any other truncation it would do nothing."""
    for truncate in ("none", "end", "start"):
        with pytest.raises(InputError, match="chunk_overlap") as refused:
            engine.embed("short text", truncate=truncate, chunk_overlap=8)
        assert refused.value.param == "chunk_overlap"


def test_too_many_windows_and_per_token_refuse(engine: EmbeddingEngine) -> None:
    huge = LONG * 30  # ~ 90 windows > 64
    with pytest.raises(InputError, match="windows"):
        engine.embed(huge, truncate="chunk")
    with pytest.raises(InputError, match="per-token"):
        engine.embed_per_token(LONG, truncate="chunk")
    with pytest.raises(InputTooLongError):
        engine.embed(LONG)  # the default still refuses
