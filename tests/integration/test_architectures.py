"""Every embedding architecture with a fixture here, against transformers, pooled the way
sentence-transformers pools that family. Tiny random models (fixed seed), converted with
the stock converter to F32 GGUF once per session; 8 varied texts each, through the
library (against transformers, token ids included) and through a server (against the
library). JinaBERT v2 has no transformers reference (remote code): it must be refused
unless unverified architectures are allowed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import numpy.typing as npt
import pytest
import torch
import transformers

from embellama import EmbeddingEngine, ModelFileError, Pooling
from tests.e2e.server import serving
from tests.fixtures.tiny_bpe import build_tiny_modernbert, build_tiny_qwen3
from tests.fixtures.tiny_encoders import build_tiny_encoder
from tests.fixtures.tiny_gemma import build_tiny_gemma
from tests.fixtures.tiny_llama import build_tiny_llama
from tests.fixtures.tiny_xlmr import build_tiny_xlmr
from tests.tolerances import (
    DECODER_REFERENCE_RELATIVE_ATOL,
    ENCODER_REFERENCE_ATOL,
    REFERENCE_MIN_COSINE,
    assert_batch_invariant,
    min_cosine,
)

pytestmark = pytest.mark.slow

TEXTS = (
    "Hello, world!",
    'Ünïcödé àccents and "quotes"',
    "日本語のテキスト 中文 русский",
    "emoji 🙂 and math ∑ √",
    "tabs\tand\nnewlines  double  spaces",
    "a",
    "numbers 3.14159 and 2026-11-26, a URL https://example.com/a?b=c&d=1",
    " ".join(["a paragraph about local embeddings and retrieval"] * 4),  # ~140 tokens
)

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Family:
    name: str
    pooling: Pooling
    build: Callable[[Path], tuple[Path, Path]]  # -> (hf_dir, gguf)
    # Runs transformers on exact ids and pools like sentence-transformers, unnormalized.
    reference: Callable[[Path, list[int]], Vector]
    normalization: str = "l2"


def _hidden(hf_dir: Path, ids: list[int]) -> torch.Tensor:
    model = transformers.AutoModel.from_pretrained(str(hf_dir), dtype=torch.float32)
    model.train(False)
    with torch.no_grad():
        hidden: torch.Tensor = model(input_ids=torch.tensor([ids])).last_hidden_state[0]
    return hidden


def _mean(hf_dir: Path, ids: list[int]) -> Vector:
    return np.asarray(_hidden(hf_dir, ids).mean(0).numpy())


def _last(hf_dir: Path, ids: list[int]) -> Vector:
    return np.asarray(_hidden(hf_dir, ids)[-1].numpy())


def _encoder(family: str) -> Callable[[Path], tuple[Path, Path]]:
    def build(directory: Path) -> tuple[Path, Path]:
        built = build_tiny_encoder(directory, family)
        return built.hf_dir, built.gguf

    return build


def _llama(directory: Path) -> tuple[Path, Path]:
    built = build_tiny_llama(directory)
    return built.hf_dir, built.gguf


_GEMMA_DENSE: dict[Path, tuple[torch.Tensor, torch.Tensor]] = {}


def _gemma(directory: Path) -> tuple[Path, Path]:
    built = build_tiny_gemma(directory)
    _GEMMA_DENSE[built.hf_dir] = built.dense
    return built.hf_dir, built.gguf


def _gemma_reference(hf_dir: Path, ids: list[int]) -> Vector:
    first, second = _GEMMA_DENSE[hf_dir]
    pooled = transformers.Gemma3TextModel.from_pretrained(str(hf_dir), dtype=torch.float32)
    pooled.train(False)
    with torch.no_grad():
        hidden = pooled(input_ids=torch.tensor([ids])).last_hidden_state[0].mean(0)
    return np.asarray((second @ (first @ hidden)).numpy())


def _xlmr(directory: Path) -> tuple[Path, Path]:
    built = build_tiny_xlmr(directory, classifier=False)
    return built.hf_dir, built.gguf


def _bpe(build: Callable[[Path], object]) -> Callable[[Path], tuple[Path, Path]]:
    def run(directory: Path) -> tuple[Path, Path]:
        built = build(directory)
        return built.hf_dir, built.gguf  # type: ignore[attr-defined]

    return run


FAMILIES = (
    Family("bert", Pooling.MEAN, _encoder("bert"), _mean),
    Family("distilbert", Pooling.MEAN, _encoder("distilbert"), _mean),
    Family("xlm-roberta", Pooling.MEAN, _xlmr, _mean),
    Family("modernbert", Pooling.MEAN, _bpe(build_tiny_modernbert), _mean),
    Family("nomic", Pooling.MEAN, _encoder("nomic"), _mean),
    Family("llama", Pooling.LAST, _llama, _last, normalization="none"),
    # Qwen3-Embedding: causal, last token, the tokenizer appends <|endoftext|>.
    Family("qwen3", Pooling.LAST, _bpe(build_tiny_qwen3), _last, normalization="none"),
    Family("gemma3+dense", Pooling.MEAN, _gemma, _gemma_reference),
)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    return {}


# Every family on llama.cpp, and those `auto` sends to ONNX Runtime on it too: each
# engine `auto` may pick is verified against transformers, family by family.
ONNX_FAMILIES = frozenset({"bert", "distilbert", "xlm-roberta", "nomic"})
ENGINE_CASES = [(family, "llama.cpp") for family in FAMILIES] + [
    (family, "onnxruntime") for family in FAMILIES if family.name in ONNX_FAMILIES
]


@pytest.mark.parametrize(
    ("family", "inference"), ENGINE_CASES, ids=[f"{f.name}-{e}" for f, e in ENGINE_CASES]
)
def test_family_matches_transformers(
    family: Family,
    inference: str,
    built: dict[str, tuple[Path, Path]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    hf_dir, gguf = _built(family, built, tmp_path_factory)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(hf_dir))
    normalization = family.normalization
    with EmbeddingEngine.from_path(gguf, engine=inference, normalization=normalization) as engine:
        info = engine.model_info()
        assert info.pooling is family.pooling and info.verified and info.engine == inference
        with EmbeddingEngine.from_path(gguf, normalization=normalization) as chosen:  # `auto`
            expected_engine = "onnxruntime" if family.name in ONNX_FAMILIES else "llama.cpp"
            assert chosen.model_info().engine == expected_engine
        vectors = engine.embed(list(TEXTS))
        for text, vector in zip(TEXTS, vectors, strict=True):
            ids = engine.tokenize(text)
            assert ids == tokenizer(text).input_ids, text
            expected = family.reference(hf_dir, ids)
            if family.normalization == "l2":
                expected = expected / np.linalg.norm(expected)
                assert float(np.abs(vector - expected).max()) <= ENCODER_REFERENCE_ATOL, text
            else:  # decoders: F16 K/V, bounded relative to the largest element
                atol = DECODER_REFERENCE_RELATIVE_ATOL * float(np.abs(expected).max())
                assert float(np.abs(vector - expected).max()) <= atol, text
            assert min_cosine(vector, expected) >= REFERENCE_MIN_COSINE, text


def _built(
    family: Family,
    built: dict[str, tuple[Path, Path]],
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, Path]:
    if family.name not in built:
        built[family.name] = family.build(tmp_path_factory.mktemp(family.name))
    return built[family.name]


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_family_through_the_server_equals_the_library(
    family: Family,
    built: dict[str, tuple[Path, Path]],
    tmp_path_factory: pytest.TempPathFactory,
    server_logs: Path,
) -> None:
    _, gguf = _built(family, built, tmp_path_factory)
    with EmbeddingEngine.from_path(gguf, normalization=family.normalization) as engine:
        expected = engine.embed(list(TEXTS))
        architecture = engine.model_info().architecture
    args = ["--model-path", str(gguf), "--normalization", family.normalization]
    with serving([*args, "--workers", "1"], server_logs) as server:
        cards = httpx.get(server.url + "/v1/models").json()["data"]
        assert (cards[0]["architecture"], cards[0]["verified"]) == (architecture, True)
        response = httpx.post(
            server.url + "/v1/embeddings", json={"input": list(TEXTS)}, timeout=60
        )
    assert response.status_code == 200, response.text
    for item, vector in zip(response.json()["data"], expected, strict=True):
        assert_batch_invariant(item["embedding"], vector)


def test_unverified_architecture_is_refused_unless_allowed(
    tmp_path: Path, server_logs: Path
) -> None:
    """Qwen2 (gte-Qwen2's architecture) converts and loads, but no test here compares it
    with transformers: refused with the reason, served with a warning when allowed."""
    gguf = build_tiny_qwen3(tmp_path, qwen2=True).gguf
    with pytest.raises(ModelFileError, match=r"architecture 'qwen2'.*--allow-unverified"):
        EmbeddingEngine.from_path(gguf)
    with EmbeddingEngine.from_path(gguf, allow_unverified_architecture=True) as engine:
        assert not engine.model_info().verified
        assert engine.embed("text").shape == (64,)
    args = ["--model-path", str(gguf), "--allow-unverified-architecture", "--workers", "1"]
    with serving(args, server_logs) as server:
        card = httpx.get(server.url + "/v1/models").json()["data"][0]
        assert (card["architecture"], card["verified"]) == ("qwen2", False)
        response = httpx.post(server.url + "/v1/embeddings", json={"input": "x"}, timeout=60)
        assert response.status_code == 200
    assert "is not verified against its reference implementation" in server.log()
