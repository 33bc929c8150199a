"""Config objects validate on construction and parse the spellings users type."""

from __future__ import annotations

from pathlib import Path

import pytest

from embellama import (
    BatchingConfig,
    ConfigError,
    EngineConfig,
    ModelConfig,
    Normalization,
    Pooling,
    Truncation,
)


def test_parsing() -> None:
    assert Pooling.parse("mean-sqrt") is Pooling.MEAN_SQRT
    assert Normalization.parse("MAX_ABS") is Normalization.MAX_ABS
    assert Truncation.parse(True) is Truncation.END
    assert Truncation.parse(False) is Truncation.NONE
    assert Truncation.parse(None) is Truncation.NONE
    assert Truncation.parse("start") is Truncation.START
    config = ModelConfig(path=Path("x.gguf"), pooling="cls", normalization="none")  # type: ignore[arg-type]
    assert config.pooling is Pooling.CLS
    assert config.resolved_name == "x"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Pooling.parse("median"), "invalid pooling 'median'"),
        (lambda: Truncation.parse("middle"), "invalid truncate"),
        (lambda: BatchingConfig(max_batch_tokens=0), "max_batch_tokens"),
        (lambda: BatchingConfig(max_batch_sequences=300), "max_batch_sequences"),
        (lambda: ModelConfig(path=Path("x"), n_threads=0), "n_threads"),
        (lambda: ModelConfig(path=Path("x"), norm_p=0), "norm_p"),
        (lambda: ModelConfig(path=Path("x"), name=" "), "name"),
        (
            lambda: EngineConfig(
                models=(ModelConfig(path=Path("a")), ModelConfig(path=Path("b"), aliases=("a",)))
            ),
            "used twice",
        ),
    ],
)
def test_invalid(build: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build()  # type: ignore[operator]


def test_frozen() -> None:
    config = ModelConfig(path=Path("x"))
    with pytest.raises(AttributeError):
        config.name = "y"  # type: ignore[misc]
