"""`input_type` on the real model: the prefix is exactly a prefix of the text, counted in
the tokens, never cut by truncation, never applied to token ids or absent prompts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from embellama import EmbeddingEngine

TEXTS = ["how do vector databases work", "a passage about approximate nearest neighbours"]


@pytest.fixture(scope="module")
def prefixed(minilm_gguf: Path) -> Iterator[EmbeddingEngine]:
    with EmbeddingEngine.from_path(
        minilm_gguf, query_prefix="query: ", document_prefix="passage: "
    ) as engine:
        yield engine


@pytest.mark.parametrize(("input_type", "prefix"), [("query", "query: "), ("passage", "passage: ")])
def test_the_prefix_is_put_in_front(
    prefixed: EmbeddingEngine, input_type: str, prefix: str
) -> None:
    typed = prefixed.embed_with_details(TEXTS, input_type=input_type)
    glued = prefixed.embed_with_details([prefix + text for text in TEXTS])
    assert typed.vectors.tobytes() == glued.vectors.tobytes()
    assert typed.token_counts == glued.token_counts  # usage counts the prefix tokens
    assert typed.prefix == prefix and glued.prefix is None


def test_a_model_without_prompts_is_served_unchanged(engine: EmbeddingEngine) -> None:
    typed = engine.embed_with_details(TEXTS, input_type="query")
    plain = engine.embed_with_details(TEXTS)
    assert typed.vectors.tobytes() == plain.vectors.tobytes()
    assert typed.prefix == ""  # asked for, none applied


def test_token_ids_are_never_prefixed(prefixed: EmbeddingEngine) -> None:
    ids = prefixed.tokenize(TEXTS[0])
    typed = prefixed.embed_with_details([ids], input_type="query")
    assert typed.vectors.tobytes() == prefixed.embed_with_details([ids]).vectors.tobytes()


def test_truncation_keeps_the_prefix(prefixed: EmbeddingEngine) -> None:
    long_text = "words and more words " * 200
    full = prefixed.tokenize("query: " + long_text)  # [CLS] query : words ... [SEP]
    prefix_len = len(prefixed.tokenize("query: ", add_special=False))
    head, body, tail = full[: 1 + prefix_len], full[1 + prefix_len : -1], full[-1:]
    room = 512 - len(head) - len(tail)
    expected = {"end": head + body[:room] + tail, "start": head + body[-room:] + tail}
    for mode, ids in expected.items():
        typed = prefixed.embed_with_details([long_text], input_type="query", truncate=mode)
        assert typed.token_counts == (512,) and typed.truncated == (True,)
        by_ids = prefixed.embed_with_details([ids])
        assert typed.vectors.tobytes() == by_ids.vectors.tobytes(), mode


def test_unknown_input_type_is_an_input_error(prefixed: EmbeddingEngine) -> None:
    with pytest.raises(ValueError, match="input_type"):
        prefixed.embed("x", input_type="classification")
