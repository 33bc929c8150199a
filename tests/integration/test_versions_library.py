"""The library's model versions: `model="name@v2"` pins, `model="name"` with `ab_key=`
picks by weight the way the server does, and `set_weights` moves keys at run time."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from embellama import EmbeddingEngine, ModelConfig, Normalization
from embellama.config import EngineConfig
from embellama.errors import ConfigError
from embellama.routing import choose
from tests.tolerances import assert_batch_invariant

TEXT = "a library call that names a version"


@pytest.fixture(scope="module")
def engine(minilm_gguf: Path) -> Iterator[EmbeddingEngine]:
    v1 = ModelConfig(path=minilm_gguf, name="m", version="v1", weight=50)
    v2 = ModelConfig(
        path=minilm_gguf, name="m", version="v2", weight=50, normalization=Normalization.NONE
    )
    with EmbeddingEngine(EngineConfig(models=(v1, v2))) as versioned:
        yield versioned


def test_a_pin_gives_that_versions_vectors(engine: EmbeddingEngine, minilm_gguf: Path) -> None:
    with EmbeddingEngine.from_path(minilm_gguf, normalization=Normalization.NONE) as raw:
        assert_batch_invariant(engine.embed(TEXT, model="m@v2"), raw.embed(TEXT))
    assert engine.embed_with_details([TEXT], model="m@v1").model == "m@v1"


def test_an_ab_key_picks_as_the_server_does_and_sticks(engine: EmbeddingEngine) -> None:
    keys = [f"key-{n}" for n in range(40)]
    got = {key: engine.embed_with_details([TEXT], model="m", ab_key=key).model for key in keys}
    weights = [("v1", 50.0), ("v2", 50.0)]
    assert got == {key: f"m@{choose(weights, key)}" for key in keys}
    assert set(got.values()) == {"m@v1", "m@v2"}
    assert engine.embed_with_details([TEXT], model="m", ab_key=keys[0]).model == got[keys[0]]


def test_set_weights_promotes_and_is_validated(engine: EmbeddingEngine) -> None:
    try:
        assert engine.set_weights("m", {"v2": 100}) == {"v1": 0.0, "v2": 100.0}
        assert engine.weights("m") == {"v1": 0.0, "v2": 100.0}
        models = {engine.embed_with_details([TEXT], "m", ab_key=str(n)).model for n in range(20)}
        assert models == {"m@v2"}
        with pytest.raises(ConfigError, match="has no version 'v9'"):
            engine.set_weights("m", {"v9": 1})
    finally:
        engine.set_weights("m", {"v1": 50, "v2": 50})
