"""Fixtures shared by every test tier: the real default GGUF model and engines on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from embellama import EmbeddingEngine, prepare_default_model


@pytest.fixture(scope="session")
def minilm_gguf() -> Path:
    """The built-in default model, converted once per cache (idempotent, ~3 s the first time)."""
    return prepare_default_model().path


@pytest.fixture(scope="module")
def engine(minilm_gguf: Path) -> Iterator[EmbeddingEngine]:
    with EmbeddingEngine.from_path(minilm_gguf, name="minilm", aliases=("default",)) as eng:
        yield eng


@pytest.fixture(scope="session")
def server_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("server-logs")
