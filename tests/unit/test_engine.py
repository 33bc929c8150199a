"""The engine's one keyword -> options path and its model lifecycle, over fake backends."""

from __future__ import annotations

import asyncio
import dataclasses
import typing
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
import pytest

from embellama import AsyncEmbeddingEngine, EmbeddingEngine
from embellama.config import EngineConfig, ModelConfig, Truncation
from embellama.errors import (
    ConfigError,
    EngineClosedError,
    InputError,
    ModelNotFoundError,
    NoWorkerError,
)
from embellama.inputs import InputItem
from embellama.options import EmbedKeywords, EmbedOptions, RerankKeywords, RerankOptions
from embellama.prompts import InputType
from tests.unit.fake_backend import FakeBackends


def with_engine(
    minilm_gguf: Path,
    test: Callable[[AsyncEmbeddingEngine], Awaitable[None]],
    backends: FakeBackends | None = None,
) -> None:
    async def body() -> None:
        async with AsyncEmbeddingEngine(backends=backends or FakeBackends()) as engine:
            await engine.load_model(ModelConfig(path=minilm_gguf, name="a", aliases=("first",)))
            await test(engine)

    asyncio.run(body())


# -- the keyword forms --------------------------------------------------------------


def test_the_keyword_types_name_exactly_the_options_fields() -> None:
    fields = {field.name for field in dataclasses.fields(EmbedOptions)}
    assert set(typing.get_type_hints(EmbedKeywords)) == fields
    rerank_fields = {field.name for field in dataclasses.fields(RerankOptions)}
    # top_n is rerank()'s positional parameter, not a keyword option.
    assert set(typing.get_type_hints(RerankKeywords)) | {"top_n"} == rerank_fields


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (False, Truncation.NONE),
        (None, Truncation.NONE),
        (True, Truncation.END),
        ("end", Truncation.END),
        ("START", Truncation.START),
        (Truncation.CHUNK, Truncation.CHUNK),
    ],
)
def test_every_truncate_form_parses(
    given: bool | str | Truncation | None, expected: Truncation
) -> None:
    assert EmbedOptions.from_keywords({"truncate": given}).truncate is expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("query", InputType.QUERY),
        ("search_query", InputType.QUERY),
        ("passage", InputType.DOCUMENT),
        (InputType.DOCUMENT, InputType.DOCUMENT),
        (None, None),
    ],
)
def test_every_input_type_form_parses(
    given: str | InputType | None, expected: InputType | None
) -> None:
    assert EmbedOptions.from_keywords({"input_type": given}).input_type is expected


def test_no_keywords_give_the_defaults() -> None:
    assert EmbedOptions.from_keywords({}) == EmbedOptions()
    assert RerankOptions.from_keywords({}) == RerankOptions()
    assert RerankOptions.from_keywords({"truncate": False}, 3) == RerankOptions(3, Truncation.NONE)


def test_bad_keyword_values_are_refused_with_their_messages() -> None:
    with pytest.raises(ConfigError, match="invalid truncate 'sideways'"):
        EmbedOptions.from_keywords({"truncate": "sideways"})
    with pytest.raises(InputError, match="input_type must be one of"):
        EmbedOptions.from_keywords({"input_type": "question"})
    with pytest.raises(InputError, match="chunk_overlap must be >= 0, got -1"):
        EmbedOptions.from_keywords({"chunk_overlap": -1, "truncate": "chunk"})
    with pytest.raises(InputError, match="needs input_type='query'") as caught:
        EmbedOptions.from_keywords({"instruction": "find"})
    assert caught.value.param == "instruction"
    with pytest.raises(InputError, match="does not apply to rerank"):
        RerankOptions.from_keywords({"truncate": "start"})


def test_an_unknown_keyword_is_a_type_error_naming_it(minilm_gguf: Path) -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'normalise'"):
        EmbedOptions.from_keywords({"normalise": True})  # type: ignore[typeddict-unknown-key]

    async def test(engine: AsyncEmbeddingEngine) -> None:
        with pytest.raises(TypeError, match="'frobnicate'; the options are: normalize, "):
            await engine.embed("x", frobnicate=True)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="unexpected keyword argument 'top_k'"):
            await engine.rerank("q", ["d"], top_k=1)  # type: ignore[call-arg]

    with_engine(minilm_gguf, test)


def test_the_engine_passes_keyword_forms_as_parsed_options(minilm_gguf: Path) -> None:
    async def test(engine: AsyncEmbeddingEngine) -> None:
        served = engine.embedder(None)
        texts = ["alpha", "beta gamma"]
        direct = await served.embed(
            list[InputItem](texts),
            EmbedOptions(normalize=False, dimensions=8, truncate=Truncation.END),
        )
        by_keywords = await engine.embed(texts, normalize=False, dimensions=8, truncate=True)
        np.testing.assert_array_equal(by_keywords, direct.vectors)
        single = await engine.embed("alpha", "first", truncate="end", input_type="query")
        assert single.shape == (384,)
        details = await engine.embed_with_details(texts, use_cache=False, truncate="start")
        assert details.vectors.shape == (2, 384)
        assert details.token_counts == direct.token_counts

    with_engine(minilm_gguf, test)


# -- the model lifecycle ------------------------------------------------------------


def test_load_resolve_by_alias_and_unload(minilm_gguf: Path) -> None:
    backends = FakeBackends()

    async def test(engine: AsyncEmbeddingEngine) -> None:
        info = await engine.load_model(ModelConfig(path=minilm_gguf, name="b", aliases=("bee",)))
        assert info.name == "b" and info.dimensions == 384
        assert [m.name for m in engine.list_models()] == ["a", "b"]
        assert engine.embedder("bee").name == "b"
        assert engine.embedder(None).name == "a"  # the first loaded is the default
        with pytest.raises(ConfigError, match="'bee' is already loaded"):
            await engine.load_model(ModelConfig(path=minilm_gguf, name="c", aliases=("bee",)))
        await engine.unload_model("bee")
        assert backends.built["b"][0].stopped
        with pytest.raises(ModelNotFoundError):
            await engine.embed("x", "b")
        assert [m.name for m in engine.list_models()] == ["a"]

    with_engine(minilm_gguf, test, backends)


def test_a_model_whose_backend_cannot_start_is_not_registered(minilm_gguf: Path) -> None:
    backends = FakeBackends(failing={"broken"})

    async def test(engine: AsyncEmbeddingEngine) -> None:
        with pytest.raises(NoWorkerError, match="no worker for model 'broken' could start"):
            await engine.load_model(ModelConfig(path=minilm_gguf, name="broken"))
        assert [m.name for m in engine.list_models()] == ["a"]
        assert backends.built["broken"][0].stopped

    with_engine(minilm_gguf, test, backends)


def test_a_closed_engine_refuses_every_call(minilm_gguf: Path) -> None:
    backends = FakeBackends()

    async def body() -> None:
        engine = AsyncEmbeddingEngine(backends=backends)
        await engine.load_model(ModelConfig(path=minilm_gguf, name="a"))
        await engine.aclose()
        assert backends.built["a"][0].stopped
        with pytest.raises(EngineClosedError):
            await engine.embed("x")
        with pytest.raises(EngineClosedError):
            await engine.load_model(ModelConfig(path=minilm_gguf, name="b"))
        await engine.aclose()  # idempotent

    asyncio.run(body())


def test_the_blocking_engine_takes_the_same_keywords(minilm_gguf: Path) -> None:
    config = EngineConfig(models=(ModelConfig(path=minilm_gguf, name="a"),))
    with EmbeddingEngine(config, backends=FakeBackends()) as engine:
        assert engine.embed(["x", "y"], dimensions=4, truncate=True).shape == (2, 4)
        with pytest.raises(TypeError, match="unexpected keyword argument 'dims'"):
            engine.embed("x", dims=4)  # type: ignore[call-arg]
    with pytest.raises(EngineClosedError):
        engine.embed("x")
