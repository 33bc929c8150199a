"""Cache identity from file content, in-process on the real MiniLM GGUF: one file at two
paths shares entries, a same-size same-mtime retune never does, `cache_version` names
the vectors instead, and a load refuses a file that is not the one expected."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest

from embellama import EmbeddingCache, EmbeddingEngine, EngineConfig, ModelConfig, ModelFileError
from embellama.model.gguf import read_gguf_info
from embellama.model.loaded import LoadedModel
from tests.fixtures.variants import retuned_copy

TEXT = "the same text through three files"


@pytest.fixture(scope="module")
def copies(minilm_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The model, the same bytes under another name elsewhere, and a retune of it."""
    root = tmp_path_factory.mktemp("identity")
    (root / "replica").mkdir()
    same = Path(shutil.copy2(minilm_gguf, root / "replica" / "other-name.gguf"))
    retuned = retuned_copy(minilm_gguf, root / "retuned.gguf")
    return {"original": minilm_gguf, "same": same, "retuned": retuned}


@pytest.fixture(scope="module")
def engine(copies: dict[str, Path]) -> Iterator[EmbeddingEngine]:
    models = tuple(ModelConfig(path, name=name) for name, path in copies.items())
    with EmbeddingEngine(EngineConfig(models), cache=EmbeddingCache.create("16MB")) as eng:
        yield eng


def _tag(engine: EmbeddingEngine, name: str) -> bytes:
    return engine.engine.registry.resolve(name).cache_tag.tag


def test_one_file_at_two_paths_shares_entries(engine: EmbeddingEngine) -> None:
    assert _tag(engine, "original") == _tag(engine, "same")
    fingerprints = {name: engine.model_info(name).fingerprint for name in ("original", "same")}
    assert fingerprints["original"] == fingerprints["same"] is not None
    assert engine.model_info("retuned").fingerprint != fingerprints["original"]
    first = engine.embed_with_details([TEXT + " shared"], model="original")
    second = engine.embed_with_details([TEXT + " shared"], model="same")
    assert (first.cache_hits, second.cache_hits) == (0, 1)
    np.testing.assert_array_equal(first.vectors, second.vectors)


def test_a_retune_with_the_same_size_and_mtime_never_hits(
    engine: EmbeddingEngine, copies: dict[str, Path]
) -> None:
    original, retuned = copies["original"].stat(), copies["retuned"].stat()
    assert (original.st_size, original.st_mtime_ns) == (retuned.st_size, retuned.st_mtime_ns)
    assert _tag(engine, "original") != _tag(engine, "retuned")
    first = engine.embed_with_details([TEXT + " stale"], model="original")
    other = engine.embed_with_details([TEXT + " stale"], model="retuned")
    assert other.cache_hits == 0
    # The retune's own vector, not the original's: they differ well beyond rounding.
    assert float(np.max(np.abs(first.vectors - other.vectors))) > 1e-3


def test_a_file_swapped_in_place_keeping_size_and_mtime_gets_a_new_tag(
    copies: dict[str, Path], tmp_path: Path
) -> None:
    """The case a path + size + mtime identity cannot see: same path, same stat."""
    served = Path(shutil.copy2(copies["original"], tmp_path / "served.gguf"))
    with EmbeddingEngine.from_path(served, name="m") as engine:
        before = _tag(engine, "m")
    stat = served.stat()
    os.replace(retuned_copy(served, tmp_path / "incoming.gguf"), served)
    assert (served.stat().st_size, served.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    with EmbeddingEngine.from_path(served, name="m") as engine:
        assert _tag(engine, "m") != before


def test_cache_version_names_the_vectors_instead(
    engine: EmbeddingEngine, copies: dict[str, Path]
) -> None:
    versioned = [
        ModelConfig(copies[which], name=f"v-{which}", cache_version="minilm-2024")
        for which in ("original", "retuned")
    ]
    for config in versioned:
        engine.load_model(config)
    try:
        assert _tag(engine, "v-original") == _tag(engine, "v-retuned")
        assert _tag(engine, "v-original") != _tag(engine, "original")
        engine.embed_with_details([TEXT + " versioned"], model="v-original")
        said = engine.embed_with_details([TEXT + " versioned"], model="v-retuned")
        assert said.cache_hits == 1  # the operator said these are the same vectors
    finally:
        for config in versioned:
            engine.unload_model(config.resolved_name)


def test_a_load_refuses_a_file_other_than_the_expected_one(copies: dict[str, Path]) -> None:
    expected = LoadedModel(ModelConfig(copies["original"]), inference=False)
    try:
        with pytest.raises(ModelFileError, match="is not the file this model was loaded from"):
            LoadedModel(
                ModelConfig(copies["retuned"]),
                inference=False,
                expect_fingerprint=expected.fingerprint,
            )
        same = LoadedModel(
            ModelConfig(copies["same"]), inference=False, expect_fingerprint=expected.fingerprint
        )
        same.close()
    finally:
        expected.close()


def test_tensor_extents_agree_with_the_gguf_package(minilm_gguf: Path) -> None:
    """The fingerprint samples where llama.cpp's own reader says each tensor lies."""
    ours = read_gguf_info(minilm_gguf)
    theirs = gguf.GGUFReader(minilm_gguf)
    assert ours.data_offset == theirs.data_offset
    assert ours.tensor_extents == tuple((t.data_offset, t.n_bytes) for t in theirs.tensors)
