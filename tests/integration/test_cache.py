"""The library's cache on the real model: a hit is the miss's exact bits, for every
request shape; models and settings that change a vector never share an entry."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from embellama import EmbeddingCache, EmbeddingEngine, EngineConfig, ModelConfig, Pooling
from embellama.options import EmbedKeywords

TEXTS = ["a cached sentence", "another one, a bit longer than the first", "日本語のテキスト"]
LONG = "word " * 600


@pytest.fixture(scope="module")
def cached(minilm_gguf: Path) -> Iterator[EmbeddingEngine]:
    config = EngineConfig(
        models=(
            ModelConfig(path=minilm_gguf, name="mean"),
            ModelConfig(path=minilm_gguf, name="cls", pooling=Pooling.CLS),
        )
    )
    with EmbeddingEngine(config, cache=EmbeddingCache.create("64MB")) as engine:
        yield engine


def test_off_by_default_in_the_library(engine: EmbeddingEngine) -> None:
    assert engine.engine.cache is None
    result = engine.embed_with_details(TEXTS)
    assert result.cached == (False, False, False) and result.cache_hits == 0


@pytest.mark.parametrize(
    "options",
    [{}, {"dimensions": 64}, {"normalize": False}, {"dimensions": 32, "normalize": False}],
)
def test_a_hit_is_the_miss_bit_for_bit(cached: EmbeddingEngine, options: EmbedKeywords) -> None:
    cached.clear_cache()
    miss = cached.embed_with_details(TEXTS, "mean", **options)
    hit = cached.embed_with_details(TEXTS, "mean", **options)
    assert miss.cached == (False, False, False) and hit.cached == (True, True, True)
    assert hit.vectors.tobytes() == miss.vectors.tobytes()
    assert hit.cached_tokens == hit.total_tokens == miss.total_tokens


def test_one_stored_vector_serves_every_shape(cached: EmbeddingEngine) -> None:
    cached.clear_cache()
    cached.embed_with_details(TEXTS[0], "mean")
    short = cached.embed_with_details(TEXTS[0], "mean", dimensions=16)
    assert short.cached == (True,)
    computed = cached.embed_with_details(TEXTS[0], "mean", dimensions=16, use_cache=False)
    assert short.vectors.tobytes() == computed.vectors.tobytes()


def test_pooling_model_and_truncation_never_share_entries(cached: EmbeddingEngine) -> None:
    cached.clear_cache()
    mean = cached.embed_with_details(TEXTS, "mean")
    cls = cached.embed_with_details(TEXTS, "cls")  # same file, other pooling: other entries
    assert cls.cached == (False, False, False)
    assert np.abs(mean.vectors - cls.vectors).max() > 1e-2
    end = cached.embed_with_details([LONG + "end"], "mean", truncate="end")
    start = cached.embed_with_details([LONG + "end"], "mean", truncate="start")
    assert start.cached == (False,)  # other tokens survive the cut: another key
    assert end.vectors.tobytes() != start.vectors.tobytes()


def test_duplicates_in_one_call_and_bypass(cached: EmbeddingEngine) -> None:
    cached.clear_cache()
    result = cached.embed_with_details(["twice", "twice", "once"], "mean")
    assert result.vectors[0].tobytes() == result.vectors[1].tobytes()
    stats = cached.engine.cache.stats if cached.engine.cache else None
    assert stats is not None and stats.shared >= 1
    bypass = cached.embed_with_details(["twice"], "mean", use_cache=False)
    assert bypass.cached == (False,) and bypass.cached_tokens == 0


def test_clear_one_model(cached: EmbeddingEngine) -> None:
    cached.embed(TEXTS, "mean")
    cached.embed(TEXTS, "cls")
    removed = cached.clear_cache("cls")
    assert removed["memory"] == len(TEXTS)
    assert cached.embed_with_details(TEXTS, "mean").cached == (True, True, True)
    assert cached.embed_with_details(TEXTS, "cls").cached == (False, False, False)
