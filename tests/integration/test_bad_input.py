"""Every kind of bad input gets a typed error with a clear message, and the next call works.

llama.cpp aborts the process on some of these (out-of-vocabulary ids, malformed
files), so surviving to the follow-up call is part of what is tested.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from embellama import (
    ConfigError,
    EmbeddingEngine,
    EmptyInputError,
    InputError,
    InputTooLongError,
    InvalidDimensionsError,
    InvalidTextError,
    InvalidTokenError,
    ModelFileError,
    ModelNotFoundError,
)
from embellama.options import TruncateArg

LONG = "word " * 600


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda e: e.embed(""), EmptyInputError, "input 0 is an empty string"),
        (lambda e: e.embed(["ok", ""]), EmptyInputError, "input 1 is an empty string"),
        (lambda e: e.embed([]), EmptyInputError, "must not be empty"),
        (lambda e: e.embed([[1, 2], []]), EmptyInputError, "input 1 is an empty list"),
        (
            lambda e: e.embed(["ok", "bad \ud800 surrogate"]),
            InvalidTextError,
            "input 1 is not valid Unicode",
        ),
        (lambda e: e.embed([101, 99999, 102]), InvalidTokenError, "token id 99999 at position 1"),
        (lambda e: e.embed([[101, 102], [-1]]), InvalidTokenError, "input 1 has token id -1"),
        (
            lambda e: e.embed(["fine", LONG]),
            InputTooLongError,
            "input 1 has 602 tokens, more than the model's limit of 512",
        ),
        (lambda e: e.embed("x", dimensions=0), InvalidDimensionsError, "between 1 and 384"),
        (lambda e: e.embed("x", dimensions=385), InvalidDimensionsError, "between 1 and 384"),
        (lambda e: e.embed("x", model="nope"), ModelNotFoundError, "model 'nope' is not loaded"),
        (lambda e: e.embed(42), InputError, "input must be a string"),
        (lambda e: e.embed("x", truncate="middle"), ConfigError, "invalid truncate"),
    ],
)
def test_bad_input_then_good_call(
    engine: EmbeddingEngine, call: object, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        call(engine)  # type: ignore[operator]
    assert engine.embed("still working").shape == (384,)


def test_too_long_error_carries_numbers(engine: EmbeddingEngine) -> None:
    with pytest.raises(InputTooLongError) as caught:
        engine.embed(["a", "b", LONG])
    assert (caught.value.index, caught.value.n_tokens, caught.value.limit) == (2, 602, 512)


@pytest.mark.parametrize("truncate", [True, "end", "start"])
def test_truncation_fits_and_keeps_special_tokens(
    engine: EmbeddingEngine, truncate: TruncateArg
) -> None:
    result = engine.embed_with_details(["short", LONG], truncate=truncate)
    assert result.token_counts == (3, 512)
    assert result.truncated == (False, True)


def test_truncation_cuts_the_requested_end(engine: EmbeddingEngine) -> None:
    text = "alpha " * 300 + "omega " * 300
    ids = engine.tokenize(text)
    cls, body, sep = ids[0], ids[1:-1], ids[-1]
    np.testing.assert_array_equal(
        engine.embed(text, truncate="end"), engine.embed([cls, *body[:510], sep])
    )
    np.testing.assert_array_equal(
        engine.embed(text, truncate="start"), engine.embed([cls, *body[-510:], sep])
    )
    # A token list has no special tokens added, so it is cut plainly.
    np.testing.assert_array_equal(engine.embed(ids, truncate=True), engine.embed(ids[:512]))


def test_full_context_input_runs_in_one_decode(engine: EmbeddingEngine) -> None:
    # 512 tokens is twice the default batch budget: the budget groups inputs, never rejects them.
    ids = [101, *([7592] * 510), 102]
    assert engine.embed(ids).shape == (384,)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "model file not found"),
        (b"this is plainly not a gguf file, just text\n" * 3, "bad magic"),
        ("truncated", "truncated"),
    ],
)
def test_bad_model_files(
    tmp_path: Path, minilm_gguf: Path, engine: EmbeddingEngine, content: object, message: str
) -> None:
    path = tmp_path / "model.gguf"
    if content == "truncated":
        path.write_bytes(minilm_gguf.read_bytes()[: minilm_gguf.stat().st_size // 2])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ModelFileError, match=message):
        EmbeddingEngine.from_path(path)
    assert np.isfinite(engine.embed("after a bad file")).all()


def test_context_larger_than_trained_is_rejected(minilm_gguf: Path) -> None:
    with pytest.raises(ConfigError, match="exceeds the model's trained context of 512"):
        EmbeddingEngine.from_path(minilm_gguf, n_ctx=4096)


def test_too_long_names_every_way_out_and_each_works(engine: EmbeddingEngine) -> None:
    with pytest.raises(InputTooLongError) as caught:
        engine.embed(LONG)
    offered = re.findall(r"'(\w+)'", str(caught.value).split("truncate=", 1)[1])
    assert offered == ["end", "start", "chunk"]
    for mode in offered:
        assert engine.embed(LONG, truncate=mode).shape == (384,)
