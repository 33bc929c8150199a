"""A decoder (Llama) model through embellama gives what transformers gives.

The model is tiny and random (see `tests/fixtures/tiny_llama.py`), built once per
module. Transformers is fed exactly the token ids llama.cpp used, so these tests
check the network and the pooling, not tokenizer differences; the tokenizers are
compared in a test of their own.

Measured (2-core CPU, llama-cpp-python 0.3.36, transformers 5.24): the last-token
vector differs from transformers by up to ~1.5e-3 (at most ~6e-4 of its largest
value), cosine >= 0.9999998. The error is the F16 KV cache (K and V rounded to half
precision); with an F32 cache and plain attention it was 1.5e-6. The value test
therefore allows 1e-3 of the vector's largest value (`tests/tolerances.py`). Causal models run with plain
attention in every decode (see model/native.py), so batching changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest
import sentencepiece
import torch
import transformers

import embellama
from embellama import (
    BatchingConfig,
    EmbeddingEngine,
    InputTooLongError,
    ModelFileError,
    Pooling,
    read_gguf_info,
)
from tests.fixtures.tiny_llama import TinyLlama, build_tiny_llama
from tests.tolerances import (
    DECODER_REFERENCE_RELATIVE_ATOL,
    REFERENCE_MIN_COSINE,
    assert_batch_invariant,
)

pytestmark = pytest.mark.slow

TEXTS = (
    "Hello world",
    "the quick brown fox jumps over the lazy dog",
    "Seven running networks; attention memory 12345!",
    "café déjà vu, 日本語 and ünïcode 42",
    "a  b\n c\tdouble  spaces",
    "x",
)
# llama.cpp, like SentencePiece itself, prepends "▁" to every text, so a leading space
# becomes "▁▁"; transformers' Metaspace pre-tokenizer (prepend_scheme "first") does not
# prepend when the text already starts with one. Such texts are compared only with
# SentencePiece, never with the transformers tokenizer.
LEADING_SPACE_TEXTS = (" leading space", "  two leading spaces")


Vector = npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> TinyLlama:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny_llama"))


@pytest.fixture(scope="module")
def llama_engine(tiny_llama: TinyLlama) -> Iterator[EmbeddingEngine]:
    with EmbeddingEngine.from_path(tiny_llama.gguf, normalization="none") as engine:
        yield engine


@pytest.fixture(scope="module")
def hf_model(tiny_llama: TinyLlama) -> transformers.LlamaModel:
    model: transformers.LlamaModel = transformers.LlamaModel.from_pretrained(
        str(tiny_llama.hf_dir), dtype=torch.float32
    )
    model.train(False)  # eval mode; mypy sees `.eval()` as untyped here
    return model


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_llama: TinyLlama) -> transformers.PreTrainedTokenizerBase:
    return transformers.AutoTokenizer.from_pretrained(str(tiny_llama.hf_dir))


def reference(model: transformers.LlamaModel, ids: list[int]) -> Vector:
    """Transformers' last-token hidden state (after the final norm) for these exact ids."""
    with torch.no_grad():
        hidden = model(input_ids=torch.tensor([ids])).last_hidden_state
    return np.asarray(hidden[0, -1].numpy(), dtype=np.float32)


def cosine(a: Vector, b: Vector) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_header_and_default_pooling(tiny_llama: TinyLlama, llama_engine: EmbeddingEngine) -> None:
    info = embellama.read_gguf_info(tiny_llama.gguf)
    assert info.architecture == "llama"
    assert info.causal_attention is True
    assert info.pooling_type is None
    assert info.tokenizer_model == "llama"
    model = llama_engine.model_info()
    assert model.pooling == Pooling.LAST
    assert model.dimensions == 64
    assert model.vocab_size == info.vocab_size


def test_tokenizer_matches_sentencepiece(
    tiny_llama: TinyLlama, llama_engine: EmbeddingEngine
) -> None:
    processor = sentencepiece.SentencePieceProcessor(
        model_file=str(tiny_llama.hf_dir / "tokenizer.model")
    )
    for text in (*TEXTS, *LEADING_SPACE_TEXTS):
        expected = [processor.bos_id(), *processor.encode(text)]
        assert llama_engine.tokenize(text) == expected, text


def test_tokenizer_matches_transformers(
    llama_engine: EmbeddingEngine, hf_tokenizer: transformers.PreTrainedTokenizerBase
) -> None:
    for text in TEXTS:
        assert llama_engine.tokenize(text) == hf_tokenizer(text)["input_ids"], text
    assert llama_engine.tokenize("Hello world")[0] == hf_tokenizer.bos_token_id


def test_last_token_direction_matches_transformers(
    llama_engine: EmbeddingEngine, hf_model: transformers.LlamaModel
) -> None:
    vectors = llama_engine.embed(list(TEXTS))
    for text, vector in zip(TEXTS, vectors, strict=True):
        expected = reference(hf_model, llama_engine.tokenize(text))
        assert cosine(vector, expected) >= REFERENCE_MIN_COSINE, text
    # The bar means something only if different texts are far apart (measured: <= 0.41).
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, 0.0)
    assert similarity.max() < 0.9


def test_last_token_values_match_transformers(
    llama_engine: EmbeddingEngine, hf_model: transformers.LlamaModel
) -> None:
    for text in TEXTS:
        vector = llama_engine.embed(text)
        expected = reference(hf_model, llama_engine.tokenize(text))
        atol = DECODER_REFERENCE_RELATIVE_ATOL * float(np.abs(expected).max())
        assert np.allclose(vector, expected, rtol=0.0, atol=atol), (
            text,
            float(np.abs(vector - expected).max()),
            atol,
        )


def test_batched_equals_alone(llama_engine: EmbeddingEngine) -> None:
    alone = np.stack([llama_engine.embed(text) for text in TEXTS])
    for order in (list(range(len(TEXTS))), list(reversed(range(len(TEXTS))))):
        batched = llama_engine.embed([TEXTS[i] for i in order])
        assert_batch_invariant(batched, alone[order])


def test_an_input_over_one_decode_call_is_the_model_s_vector(
    tiny_llama: TinyLlama, hf_model: transformers.LlamaModel, llama_engine: EmbeddingEngine
) -> None:
    """A causal model decodes an input longer than its batch budget in several
    llama_decode calls over its KV cache (model/memory.py), so buffers stay sized to
    the budget: the vector is still the model's, the same every time, and agrees with
    the one-call decode to the batch-invariance bound."""
    long_text = " ".join(TEXTS * 2)
    budget = BatchingConfig(max_batch_tokens=64)
    with EmbeddingEngine.from_path(
        tiny_llama.gguf, normalization="none", batching=budget
    ) as engine:
        ids = engine.tokenize(long_text)
        assert 3 * 64 < len(ids) <= 256  # four calls, within the context
        chunked = engine.embed(long_text)
        assert np.array_equal(chunked, engine.embed(long_text))
        expected = reference(hf_model, ids)
        atol = DECODER_REFERENCE_RELATIVE_ATOL * float(np.abs(expected).max())
        assert np.allclose(chunked, expected, rtol=0.0, atol=atol)
        assert cosine(chunked, expected) >= REFERENCE_MIN_COSINE
        one_call = llama_engine.embed(long_text)  # the default 256-token budget
        assert_batch_invariant(chunked, one_call)
        # Short texts packed under the small budget still equal themselves alone.
        alone = np.stack([engine.embed(text) for text in TEXTS])
        assert_batch_invariant(engine.embed(list(TEXTS)), alone)


def test_truncate_start_keeps_bos_and_the_end(
    tiny_llama: TinyLlama, hf_model: transformers.LlamaModel
) -> None:
    long_text = "Once upon a time " + " ".join(TEXTS) + " and that was the end of it"
    with EmbeddingEngine.from_path(tiny_llama.gguf, normalization="none", n_ctx=32) as engine:
        ids = engine.tokenize(long_text)
        assert len(ids) > 32
        with pytest.raises(InputTooLongError):
            engine.embed([long_text, "x"])

        result = engine.embed_with_details([long_text, "x"], truncate="start")
        assert result.vectors.shape == (2, 64)
        assert result.token_counts == (32, len(engine.tokenize("x")))
        assert result.truncated == (True, False)

        kept = [ids[0], *ids[-31:]]
        assert cosine(result.vectors[0], reference(hf_model, kept)) >= REFERENCE_MIN_COSINE
        # Alone, the truncated text and its kept ids are the very same computation.
        alone = engine.embed(long_text, truncate="start")
        assert np.array_equal(alone, engine.embed(kept))


def test_vocabulary_without_byte_tokens_is_refused(
    tiny_llama: TinyLlama, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """llama.cpp would abort the whole process on the first unknown character; we refuse
    the file up front, with a typed error, and the process lives on."""
    broken = build_tiny_llama(tmp_path_factory.mktemp("no_bytes"), byte_fallback=False)
    assert not read_gguf_info(broken.gguf).has_byte_tokens
    with pytest.raises(ModelFileError, match="without byte-fallback tokens"):
        EmbeddingEngine.from_path(broken.gguf)
    assert read_gguf_info(tiny_llama.gguf).has_byte_tokens


@pytest.fixture(scope="module")
def tiny_llama_eos(tmp_path_factory: pytest.TempPathFactory) -> TinyLlama:
    return build_tiny_llama(tmp_path_factory.mktemp("tiny_llama_eos"), add_eos=True)


EOS = 2  # </s> in the fixture's SentencePiece vocabulary


def test_a_gguf_add_eos_flag_is_honoured(tiny_llama_eos: TinyLlama) -> None:
    info = read_gguf_info(tiny_llama_eos.gguf)
    assert info.metadata.get("tokenizer.ggml.add_eos_token") is True
    hf_model = transformers.LlamaModel.from_pretrained(str(tiny_llama_eos.hf_dir))
    processor = sentencepiece.SentencePieceProcessor(
        model_file=str(tiny_llama_eos.hf_dir / "tokenizer.model")
    )
    with EmbeddingEngine.from_path(tiny_llama_eos.gguf, normalization="none") as eos_engine:
        for text in TEXTS:
            ids = eos_engine.tokenize(text)
            assert ids == [processor.bos_id(), *processor.encode(text), EOS], text
            expected = reference(hf_model, ids)
            assert cosine(eos_engine.embed(text), expected) >= REFERENCE_MIN_COSINE, text
    with EmbeddingEngine.from_path(tiny_llama_eos.gguf, add_eos=False) as without:
        assert without.tokenize(TEXTS[0])[-1] != EOS  # the override wins over the flag


def test_add_eos_override_appends_it_to_texts_only(
    tiny_llama: TinyLlama, llama_engine: EmbeddingEngine, hf_model: transformers.LlamaModel
) -> None:
    with EmbeddingEngine.from_path(tiny_llama.gguf, normalization="none", add_eos=True) as eos:
        for text in TEXTS:
            ids = eos.tokenize(text)
            assert ids == [*llama_engine.tokenize(text), EOS], text
            atol = DECODER_REFERENCE_RELATIVE_ATOL * float(np.abs(reference(hf_model, ids)).max())
            assert np.allclose(eos.embed(text), reference(hf_model, ids), rtol=0.0, atol=atol)
        # Token ids are the caller's own: never given an EOS.
        own = llama_engine.tokenize(TEXTS[1])
        assert eos.embed([own]).tobytes() == llama_engine.embed([own]).tobytes()
        # Truncation keeps the EOS at the end.
        long_text = " ".join(TEXTS) * 20
        cut = eos.embed_with_details([long_text], truncate="end")
        assert cut.token_counts == (256,)
