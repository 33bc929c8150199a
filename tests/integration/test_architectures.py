"""Every embedding architecture with a fixture here, against transformers, pooled the way
sentence-transformers pools that family. Tiny random models (fixed seed), converted with
the stock converter to F32 GGUF once per session; 7 varied texts each."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
import transformers

from embellama import EmbeddingEngine, Pooling
from tests.fixtures.tiny_encoders import build_tiny_encoder
from tests.fixtures.tiny_gemma import build_tiny_gemma
from tests.fixtures.tiny_llama import build_tiny_llama
from tests.tolerances import (
    DECODER_REFERENCE_RELATIVE_ATOL,
    ENCODER_REFERENCE_ATOL,
    REFERENCE_MIN_COSINE,
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


FAMILIES = (
    Family("bert", Pooling.MEAN, _encoder("bert"), _mean),
    Family("distilbert", Pooling.MEAN, _encoder("distilbert"), _mean),
    Family("nomic", Pooling.MEAN, _encoder("nomic"), _mean),
    Family("llama", Pooling.LAST, _llama, _last, normalization="none"),
    Family("gemma3+dense", Pooling.MEAN, _gemma, _gemma_reference),
)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    return {}


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_family_matches_transformers(
    family: Family,
    built: dict[str, tuple[Path, Path]],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    if family.name not in built:
        built[family.name] = family.build(tmp_path_factory.mktemp(family.name))
    hf_dir, gguf = built[family.name]
    with EmbeddingEngine.from_path(gguf, normalization=family.normalization) as engine:
        assert engine.model_info().pooling is family.pooling
        vectors = engine.embed(list(TEXTS))
        for text, vector in zip(TEXTS, vectors, strict=True):
            expected = family.reference(hf_dir, engine.tokenize(text))
            if family.normalization == "l2":
                expected = expected / np.linalg.norm(expected)
                assert float(np.abs(vector - expected).max()) <= ENCODER_REFERENCE_ATOL, text
            else:  # decoders: F16 K/V, bounded relative to the largest element
                atol = DECODER_REFERENCE_RELATIVE_ATOL * float(np.abs(expected).max())
                assert float(np.abs(vector - expected).max()) <= atol, text
            assert min_cosine(vector, expected) >= REFERENCE_MIN_COSINE, text
