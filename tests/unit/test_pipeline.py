"""The pipeline (`ServedModel`) over a fake backend: real tokenizer, real scheduler,
real cache; vectors computed from token ids, so every stage's effect is checkable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import pytest

from embellama.cache import EmbeddingCache
from embellama.config import ModelConfig, Pooling, ServiceLimits, Truncation
from embellama.errors import (
    ConfigError,
    InferenceError,
    InputError,
    InternalError,
    InvalidDimensionsError,
    PoisonInputError,
    RequestTimeoutError,
    WrongModelKindError,
)
from embellama.inputs import InputItem
from embellama.model.native import TokenIds
from embellama.model.tokenizer import Chunking
from embellama.options import EmbedOptions, RerankOptions
from embellama.pipeline import ServedModel
from embellama.prompts import InputType
from embellama.vectors import Matrix
from tests.unit.fake_backend import FakeBackend, FakeBackends, expected_pooled, token_outputs

LONG = "the quick brown fox jumps over the lazy dog " * 150  # ~1350 tokens, context 512


@pytest.fixture(scope="module")
def config(minilm_gguf: Path) -> ModelConfig:
    return ModelConfig(path=minilm_gguf, name="fake")


@asynccontextmanager
async def serving(
    config: ModelConfig,
    limits: ServiceLimits | None = None,
    cache: EmbeddingCache | None = None,
    backends: FakeBackends | None = None,
) -> AsyncIterator[ServedModel]:
    served = ServedModel(
        config, limits or ServiceLimits(), cache, backends=backends or FakeBackends()
    )
    await served.start()
    try:
        yield served
    finally:
        await served.stop()
        if cache is not None:
            await cache.close()


def run(
    config: ModelConfig,
    test: Callable[[ServedModel, FakeBackend], Awaitable[None]],
    **kwargs: object,
) -> None:
    async def body() -> None:
        async with serving(config, **kwargs) as served:  # type: ignore[arg-type]
            assert isinstance(served.backend, FakeBackend)
            await test(served, served.backend)

    asyncio.run(body())


def ids_of(served: ServedModel, text: str) -> TokenIds:
    return served.model.tokenizer.encode_text(text)


def l2(vectors: Matrix) -> Matrix:
    norms: Matrix = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / norms


def test_vectors_are_the_backends_pooled_outputs_l2_normalized(config: ModelConfig) -> None:
    async def test(served: ServedModel, backend: FakeBackend) -> None:
        texts: list[InputItem] = ["hello world", "a longer sentence about foxes"]
        result = await served.embed(texts, EmbedOptions())
        expected = np.stack(
            [expected_pooled(ids_of(served, str(t)), 384, served.pooling) for t in texts]
        )
        np.testing.assert_allclose(result.vectors, l2(expected), rtol=1e-5, atol=1e-6)
        assert result.token_counts == tuple(len(ids_of(served, str(t))) for t in texts)
        assert result.vectors.dtype == np.float32

        raw = await served.embed(texts, EmbedOptions(normalize=False))
        np.testing.assert_allclose(raw.vectors, expected, rtol=1e-5, atol=1e-6)

    run(config, test)


def test_dimensions_cut_then_renormalize_and_too_many_are_refused(config: ModelConfig) -> None:
    async def test(served: ServedModel, backend: FakeBackend) -> None:
        result = await served.embed(["hello world"], EmbedOptions(dimensions=64))
        pooled = expected_pooled(ids_of(served, "hello world"), 384, served.pooling)
        np.testing.assert_allclose(result.vectors[0], l2(pooled[:64]), rtol=1e-5, atol=1e-6)
        with pytest.raises(InvalidDimensionsError):
            await served.embed(["hello world"], EmbedOptions(dimensions=385))
        assert len(backend.jobs) == 1  # refused before anything was decoded

    run(config, test)


def test_chunk_windows_are_combined_by_token_weighted_mean(config: ModelConfig) -> None:
    async def test(served: ServedModel, backend: FakeBackend) -> None:
        options = EmbedOptions(truncate=Truncation.CHUNK, chunk_overlap=16, normalize=False)
        result = await served.embed([LONG, "short"], options)
        (long_input,) = served.model.tokenizer.prepare(
            [LONG], Truncation.CHUNK, "", Chunking(16, served.limits.max_chunks_per_input)
        )
        windows = long_input.windows
        assert len(windows) >= 3
        weighted = sum(len(w) * expected_pooled(w, 384, served.pooling) for w in windows)
        expected = weighted / sum(len(w) for w in windows)
        np.testing.assert_allclose(result.vectors[0], expected, rtol=1e-4, atol=1e-6)
        assert result.token_counts[0] == len(long_input.ids)
        decoded = sum(len(job.sequences) for job in backend.jobs)
        assert decoded == len(windows) + 1  # each window once, and the short input

        with pytest.raises(InputError, match="token"):  # without chunking it is too long
            await served.embed([LONG], EmbedOptions())

    run(config, test)


def test_the_cache_serves_repeats_and_use_cache_false_bypasses_it(config: ModelConfig) -> None:
    async def test(served: ServedModel, backend: FakeBackend) -> None:
        first = await served.embed(["cached text", "other"], EmbedOptions())
        assert first.cached == (False, False)
        decodes = len(backend.jobs)
        again = await served.embed(["other", "cached text"], EmbedOptions(dimensions=32))
        assert again.cached == (True, True)
        assert len(backend.jobs) == decodes  # nothing decoded
        np.testing.assert_allclose(again.vectors[1], l2(first.vectors[0][:32]), rtol=1e-5)
        fresh = await served.embed(["cached text"], EmbedOptions(use_cache=False))
        assert fresh.cached == (False,)
        assert len(backend.jobs) == decodes + 1

    run(config, test, cache=EmbeddingCache.create("1MB"))


def test_concurrent_misses_of_one_text_decode_it_once(config: ModelConfig) -> None:
    async def test(served: ServedModel, backend: FakeBackend) -> None:
        backend.gate.clear()
        calls = [asyncio.create_task(served.embed(["same"], EmbedOptions())) for _ in range(5)]
        while not backend.jobs:
            await asyncio.sleep(0.001)
        backend.gate.set()
        results = await asyncio.gather(*calls)
        assert sum(len(job.sequences) for job in backend.jobs) == 1
        for result in results[1:]:
            np.testing.assert_array_equal(result.vectors, results[0].vectors)

    run(config, test, cache=EmbeddingCache.create("1MB"))


def test_an_input_type_puts_the_configured_prefix_in_front(config: ModelConfig) -> None:
    prefixed = ModelConfig(path=config.path, name="prefixed", query_prefix="query: ")

    async def test(served: ServedModel, backend: FakeBackend) -> None:
        result = await served.embed(["foxes"], EmbedOptions(input_type=InputType.QUERY))
        assert result.prefix == "query: "
        assert np.array_equal(backend.jobs[-1].sequences[0], ids_of(served, "query: foxes"))
        plain = await served.embed(["foxes"], EmbedOptions())
        assert plain.prefix is None
        assert np.array_equal(backend.jobs[-1].sequences[0], ids_of(served, "foxes"))
        assert served.prefix_for(EmbedOptions(input_type=InputType.DOCUMENT)) == ""

    run(prefixed, test)


def test_per_token_outputs_are_the_backends_token_rows(config: ModelConfig) -> None:
    async def test(served: ServedModel, backend: FakeBackend) -> None:
        (tokens,) = await served.embed_per_token(["hello world"], Truncation.NONE)
        ids = ids_of(served, "hello world")
        np.testing.assert_array_equal(tokens, token_outputs(ids, 384))
        assert backend.jobs[-1].pooling is Pooling.NONE
        matrices, counts = await served.embed_tokens(["hello world"], EmbedOptions(dimensions=16))
        assert counts == (len(ids),)
        np.testing.assert_allclose(matrices[0], l2(token_outputs(ids, 384)[:, :16]), rtol=1e-5)
        with pytest.raises(InputError, match="exceeds this server's limit"):
            await served.embed_tokens(["hello world"], EmbedOptions(), max_tokens=2)
        with pytest.raises(InputError, match="per-token output takes"):
            await served.embed_per_token(["hello"], Truncation.CHUNK)

    run(config, test)


def test_request_timeout_bounds_a_stalled_decode(config: ModelConfig) -> None:
    async def test(served: ServedModel, backend: FakeBackend) -> None:
        backend.gate.clear()
        with pytest.raises(RequestTimeoutError, match=r"within 0\.05 s"):
            await served.embed(["stalled"], EmbedOptions())
        assert served.stats().queued_requests == 0
        backend.gate.set()

    run(config, test, limits=ServiceLimits(request_timeout=0.05))


def test_request_timeout_bounds_the_whole_call_not_each_wait(config: ModelConfig) -> None:
    """A call that waited on another's in-flight result, then computed it itself once
    that one timed out, still ends within its own timeout (per wait: 1.5x here)."""

    async def test(served: ServedModel, backend: FakeBackend) -> None:
        backend.gate.clear()
        owner = asyncio.create_task(served.embed(["shared"], EmbedOptions()))
        await asyncio.sleep(0.25)
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(RequestTimeoutError):
            await served.embed(["shared"], EmbedOptions())
        assert loop.time() - started < 0.65
        with pytest.raises(RequestTimeoutError):
            await owner
        backend.gate.set()

    run(config, test, limits=ServiceLimits(request_timeout=0.5), cache=EmbeddingCache.create("1MB"))


def test_a_backend_error_fails_the_request_with_its_type(config: ModelConfig) -> None:
    async def test(served: ServedModel, backend: FakeBackend) -> None:
        backend.error = InferenceError("llama_decode returned -3")
        with pytest.raises(InferenceError, match="llama_decode returned -3"):
            await served.embed(["a", "b"], EmbedOptions())
        backend.error = ValueError("a bug")
        with pytest.raises(InternalError, match="a bug"):
            await served.embed(["a"], EmbedOptions())
        backend.error = None
        assert (await served.embed(["a"], EmbedOptions())).vectors.shape == (1, 384)

    run(config, test)


def test_an_input_that_crashed_the_worker_twice_is_refused_after(config: ModelConfig) -> None:
    backends = FakeBackends()

    async def test(served: ServedModel, backend: FakeBackend) -> None:
        poison = ids_of(served, "poison")
        backend.crash_token = int(poison[1])
        with pytest.raises(PoisonInputError, match=r"input\[1\] crashed the model's worker twice"):
            await served.embed(["fine", "poison"], EmbedOptions())
        assert backend.restarts == 2
        decodes = len(backend.jobs)
        with pytest.raises(PoisonInputError, match=r"input\[0\] crashed .* before and is refused"):
            await served.embed(["poison"], EmbedOptions())
        assert len(backend.jobs) == decodes
        assert served.stats().poison_refused == 1
        assert (await served.embed(["fine"], EmbedOptions())).vectors.shape == (1, 384)

    run(config, test, backends=backends)


def test_what_the_model_cannot_do_is_refused(config: ModelConfig) -> None:
    async def test(served: ServedModel, backend: FakeBackend) -> None:
        with pytest.raises(WrongModelKindError, match="is an embedding model"):
            await served.rerank("q", ["d"], RerankOptions())

    run(config, test)
    unpooled = ModelConfig(path=config.path, name="unpooled", pooling=Pooling.NONE)

    async def per_token_only(served: ServedModel, backend: FakeBackend) -> None:
        with pytest.raises(ConfigError, match="use embed_per_token"):
            await served.embed(["a"], EmbedOptions())

    run(unpooled, per_token_only)
