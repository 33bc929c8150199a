"""Several models side by side, aliases, load/unload/info, and the token helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embellama import ConfigError, EmbeddingEngine, ModelConfig, ModelNotFoundError, Pooling


def test_two_models_side_by_side(minilm_gguf: Path) -> None:
    with EmbeddingEngine() as engine:
        engine.load_model(ModelConfig(path=minilm_gguf, name="mean", aliases=("m",)))
        engine.load_model(ModelConfig(path=minilm_gguf, name="cls", pooling=Pooling.CLS))
        assert [info.name for info in engine.list_models()] == ["mean", "cls"]
        mean, alias, cls = (
            engine.embed("hi", "mean"),
            engine.embed("hi", "m"),
            engine.embed("hi", "cls"),
        )
        np.testing.assert_array_equal(mean, alias)
        assert np.abs(mean - cls).max() > 1e-2
        np.testing.assert_array_equal(engine.embed("hi"), mean)  # first loaded is the default

        with pytest.raises(ConfigError, match="already loaded"):
            engine.load_model(ModelConfig(path=minilm_gguf, name="other", aliases=("m",)))

        engine.unload_model("m")
        with pytest.raises(ModelNotFoundError, match="available: cls"):
            engine.embed("hi", "mean")
        np.testing.assert_array_equal(engine.embed("hi"), cls)  # default moved on


def test_info(engine: EmbeddingEngine, minilm_gguf: Path) -> None:
    info = engine.model_info("default")
    assert (info.name, info.aliases, info.dimensions, info.context_length) == (
        "minilm",
        ("default",),
        384,
        512,
    )
    assert info.architecture == "bert"
    assert info.vocab_size == 30522
    assert info.file_size == minilm_gguf.stat().st_size
    assert info.sha256 is not None and len(info.sha256) == 64


def test_token_helpers(engine: EmbeddingEngine) -> None:
    ids = engine.tokenize("Hello world")
    assert ids == [101, 7592, 2088, 102]
    assert engine.tokenize("Hello world", add_special=False) == [7592, 2088]
    assert engine.detokenize(ids).strip() == "hello world"  # WPM pieces keep a leading space
    assert engine.count_tokens(["Hello world", "a"]) == [4, 3]
    assert engine.count_tokens([[1, 2, 3]]) == [3]


def test_one_input_gives_one_value_a_list_gives_a_list(engine: EmbeddingEngine) -> None:
    """As `embed` does: a string (or one token list) in, one value out; a list in, a list."""
    ids = engine.tokenize("hello world")
    assert engine.count_tokens("hello world") == len(ids)
    assert engine.count_tokens(ids) == len(ids)
    assert engine.count_tokens(["hello world"]) == [len(ids)]
    one = engine.embed_per_token("hello world")
    assert isinstance(one, np.ndarray) and one.shape == (len(ids), 384)
    many = engine.embed_per_token(["hello world", "a"])
    assert isinstance(many, list) and [m.shape for m in many] == [(len(ids), 384), (3, 384)]
    np.testing.assert_array_equal(many[0], one)
    assert engine.embed_per_token(ids).shape == one.shape
    # No cache in the library by default: one False per input, not an empty tuple.
    result = engine.embed_with_details(["a", "b"], use_cache=False)
    assert result.cached == (False, False) and result.cache_hits == 0


def test_default_model_not_prepared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EMBELLAMA_HOME", str(tmp_path))
    with pytest.raises(Exception, match="run: embellama models prepare-default") as caught:
        EmbeddingEngine.default()
    assert "\n" not in str(caught.value)
