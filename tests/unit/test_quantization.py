"""Quantized forms (vectors.py) against sentence-transformers' `quantize_embeddings`,
the convention Cohere's int8/uint8/binary/ubinary outputs follow, and the pipeline's
calibration (once per model, the same ranges for every vector, cache hits included)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from sentence_transformers.util.quantization import quantize_embeddings

from embellama.cache import EmbeddingCache
from embellama.calibration import BUILTIN_TEXTS, MIN_CALIBRATION_TEXTS, calibration_set
from embellama.config import ModelConfig, Normalization, ServiceLimits
from embellama.errors import ConfigError, InputError
from embellama.options import EmbedOptions
from embellama.pipeline import ServedModel
from embellama.vectors import Matrix, Quantization, Ranges, finish, quantize
from tests.unit.fake_backend import FakeBackends


def _vectors(n: int, dim: int, seed: int) -> Matrix:
    rng = np.random.default_rng(seed)
    return finish(rng.standard_normal((n, dim)).astype(np.float32), Normalization.L2, 2.0, None)


@pytest.mark.parametrize("kind", ["binary", "ubinary"])
@pytest.mark.parametrize("dim", [384, 13, 8])
def test_binary_forms_are_sentence_transformers(kind: str, dim: int) -> None:
    vectors = _vectors(20, dim, 1)
    ours = quantize(vectors, Quantization(kind))
    theirs = np.asarray(quantize_embeddings(vectors, kind))  # type: ignore[arg-type]
    assert ours.dtype == theirs.dtype
    assert ours.shape == (20, (dim + 7) // 8)
    np.testing.assert_array_equal(ours, theirs)


def test_binary_bit_order_is_big_endian() -> None:
    vector = np.full((1, 16), -1.0, np.float32)
    vector[0, 0] = vector[0, 9] = 1.0  # dimension 0: the first byte's high bit
    np.testing.assert_array_equal(
        quantize(vector, Quantization.UBINARY), [[0b1000_0000, 0b0100_0000]]
    )
    np.testing.assert_array_equal(quantize(vector, Quantization.BINARY), [[0, 64 - 128]])


@pytest.mark.parametrize("kind", ["int8", "uint8"])
def test_scalar_forms_are_sentence_transformers_with_the_same_ranges(kind: str) -> None:
    calibration, vectors = _vectors(200, 64, 2), _vectors(50, 64, 3)
    ranges = Ranges.min_max(calibration)
    ours = quantize(vectors, Quantization(kind), ranges)
    theirs = np.asarray(
        quantize_embeddings(vectors, kind, calibration_embeddings=calibration)  # type: ignore[arg-type]
    )
    assert ours.dtype == theirs.dtype == (np.int8 if kind == "int8" else np.uint8)
    np.testing.assert_array_equal(ours, theirs)


def test_scalar_codes_clip_outside_the_calibrated_range() -> None:
    ranges = Ranges(np.array([-1.0, 0.0], np.float32), np.array([1.0, 0.0], np.float32))
    vectors = np.array([[5.0, 3.0], [-5.0, -3.0], [0.0, 0.0]], np.float32)
    np.testing.assert_array_equal(
        quantize(vectors, Quantization.UINT8, ranges), [[255, 3], [0, 0], [127, 0]]
    )
    np.testing.assert_array_equal(
        quantize(vectors, Quantization.INT8, ranges), [[127, -125], [-128, -128], [-1, -128]]
    )


def _int8_recall(corpus: Matrix, queries: Matrix, ranges: Ranges) -> float:
    codes = quantize(corpus, Quantization.INT8, ranges).astype(np.int32)
    asked = quantize(queries, Quantization.INT8, ranges).astype(np.int32)
    best_float = np.argsort(-(queries @ corpus.T), axis=1)[:, :10]
    best_int = np.argsort(-(asked @ codes.T), axis=1)[:, :10]
    return float(
        np.mean([len(set(a) & set(b)) / 10 for a, b in zip(best_float, best_int, strict=True)])
    )


def test_model_ranges_are_one_symmetric_range() -> None:
    calibration = _vectors(300, 64, 6)
    ranges = Ranges.of(calibration)
    widest = np.abs(calibration).max()
    np.testing.assert_array_equal(ranges.high, np.full(64, widest, np.float32))
    np.testing.assert_array_equal(ranges.low, -ranges.high)


def test_int8_dot_products_rank_like_floats() -> None:
    """Anisotropic vectors (dimensions of very different spread, as real embeddings
    have): one shared step keeps integer dot products proportional to the float ones;
    per-dimension steps reweight the dimensions and lose neighbours."""
    rng = np.random.default_rng(4)
    spread = np.geomspace(0.05, 3.0, 64).astype(np.float32)

    def draw(n: int) -> Matrix:
        raw = (rng.standard_normal((n, 64)) * spread + 0.5).astype(np.float32)
        return finish(raw, Normalization.L2, 2.0, None)

    corpus, queries, calibration = draw(1000), draw(30), draw(300)
    shared = _int8_recall(corpus, queries, Ranges.of(calibration))
    per_dimension = _int8_recall(corpus, queries, Ranges.min_max(calibration))
    assert shared >= 0.9, (shared, per_dimension)
    assert shared > per_dimension + 0.05, (shared, per_dimension)


def test_scalar_forms_need_ranges_of_the_right_width() -> None:
    with pytest.raises(ValueError, match="needs calibrated ranges"):
        quantize(_vectors(2, 8, 0), Quantization.INT8)
    with pytest.raises(ValueError, match="ranges are for 4 dimensions"):
        quantize(_vectors(2, 8, 0), Quantization.UINT8, Ranges.min_max(_vectors(3, 4, 0)))


def test_bytes_per_vector() -> None:
    assert Quantization.INT8.bytes_per_vector(384) == 384
    assert Quantization.BINARY.bytes_per_vector(384) == 48
    assert Quantization.UBINARY.bytes_per_vector(13) == 2


def test_quantize_option_parses_names_once_in_order() -> None:
    options = EmbedOptions.from_keywords({"quantize": ["binary", "int8", "binary"]})
    assert options.quantize == (Quantization.BINARY, Quantization.INT8)
    assert EmbedOptions.from_keywords({"quantize": "uint8"}).quantize == (Quantization.UINT8,)
    with pytest.raises(InputError, match="quantize must name int8, uint8, binary, ubinary"):
        EmbedOptions.from_keywords({"quantize": "int4"})


def test_calibration_file_is_read_at_load(tmp_path: Path) -> None:
    assert calibration_set(None).texts == BUILTIN_TEXTS
    assert len(set(BUILTIN_TEXTS)) == len(BUILTIN_TEXTS) >= 64
    good = tmp_path / "texts.txt"
    good.write_text("\n".join(f"text {n}" for n in range(MIN_CALIBRATION_TEXTS)) + "\n\n  \n")
    assert len(calibration_set(good).texts) == MIN_CALIBRATION_TEXTS
    few = tmp_path / "few.txt"
    few.write_text("one\ntwo\n")
    with pytest.raises(ConfigError, match="has 2 non-blank lines"):
        calibration_set(few)
    with pytest.raises(ConfigError, match="cannot be read"):
        calibration_set(tmp_path / "missing.txt")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="cannot be read"):
        calibration_set(binary)


@pytest.fixture(scope="module")
def config(minilm_gguf: Path) -> ModelConfig:
    return ModelConfig(path=minilm_gguf, name="fake")


def test_pipeline_quantizes_with_ranges_calibrated_once(config: ModelConfig) -> None:
    async def body() -> None:
        cache = EmbeddingCache.create("8MB")
        served = ServedModel(config, ServiceLimits(), cache, backends=FakeBackends())
        await served.start()
        try:
            assert served.known_ranges() is None
            texts = ["a first text", "another text entirely", "a third one"]
            kinds = tuple(Quantization)
            first = await served.embed(list(texts), EmbedOptions(quantize=kinds))
            ranges = served.known_ranges()
            assert ranges is not None
            calibration = await served.embed(list(BUILTIN_TEXTS), EmbedOptions(use_cache=False))
            expected = Ranges.of(calibration.vectors)
            np.testing.assert_array_equal(ranges.low, expected.low)
            np.testing.assert_array_equal(ranges.high, expected.high)
            for kind in kinds:
                want = quantize(first.vectors, kind, ranges if kind.scalar else None)
                np.testing.assert_array_equal(first.codes(kind), want)
            again = await served.embed(list(texts), EmbedOptions(quantize=kinds))
            assert again.cached == (True, True, True)
            for kind in kinds:  # a cache hit is quantized with the same ranges
                np.testing.assert_array_equal(again.codes(kind), first.codes(kind))
            assert served.known_ranges() is ranges  # not calibrated a second time
            cut = await served.embed(
                list(texts), EmbedOptions(quantize=(Quantization.INT8,), dimensions=64)
            )
            cut_ranges = Ranges.of(finish(calibration.vectors, Normalization.L2, 2.0, 64))
            np.testing.assert_array_equal(
                cut.codes("int8"), quantize(cut.vectors, Quantization.INT8, cut_ranges)
            )
            with pytest.raises(InputError, match="embed with quantize='uint8'"):
                cut.codes("uint8")
        finally:
            await served.stop()
            await cache.close()

    asyncio.run(body())


def test_concurrent_first_calls_calibrate_once(config: ModelConfig) -> None:
    async def body() -> None:
        backends = FakeBackends()
        served = ServedModel(config, ServiceLimits(), None, backends=backends)
        await served.start()
        try:
            options = EmbedOptions(quantize=(Quantization.UINT8,))
            results = await asyncio.gather(*(served.embed([f"t {n}"], options) for n in range(8)))
            assert all(r.codes("uint8").shape == (1, served.model.dimensions) for r in results)
            decoded = sum(len(job.sequences) for job in backends.built["fake"][0].jobs)
            assert decoded == len(BUILTIN_TEXTS) + 8  # one calibration, eight requests
        finally:
            await served.stop()

    asyncio.run(body())


def test_a_caller_leaving_does_not_cancel_calibration(config: ModelConfig) -> None:
    """The first int8 caller leaves (a client disconnect cancels it) while calibration
    waits on a stalled backend; the calibration goes on, and the next call uses it."""

    async def body() -> None:
        cache = EmbeddingCache.create("8MB")
        backends = FakeBackends()
        served = ServedModel(config, ServiceLimits(), cache, backends=backends)
        await served.start()
        backend = backends.built["fake"][0]
        int8 = EmbedOptions(quantize=(Quantization.INT8,))
        try:
            await served.embed(["cached text"], EmbedOptions())  # its vector is now cached
            backend.gate.clear()
            first = asyncio.create_task(served.embed(["cached text"], int8))
            await asyncio.sleep(0.2)
            assert not first.done()
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            backend.gate.set()
            result = await served.embed(["cached text"], int8)
            assert result.cached == (True,)
            decoded = sum(len(job.sequences) for job in backend.jobs)
            assert decoded == 1 + len(BUILTIN_TEXTS)  # one calibration, never restarted
        finally:
            await served.stop()
            await cache.close()

    asyncio.run(body())
